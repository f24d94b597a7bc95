//! /etc/fstab and `mount -t fuse.vaultfs` through the real mount(8) and
//! umount(8), with the token from a file and every setting an `-o` option
//! (mount(8) clears the environment). Needs root: it links vaultfs as
//! /usr/sbin/mount.fuse.vaultfs for the test's duration.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::*;
use serde_json::json;

const HELPER: &str = "/usr/sbin/mount.fuse.vaultfs";

fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!(
            "tests/e2e/fstab.rs must run as root: it mounts through mount(8) and links vaultfs as \
             {HELPER} for its duration (CI runs as root; run `sudo -E cargo test --test fstab`)"
        );
    }
}

/// `/usr/sbin/mount.fuse.vaultfs` → the vaultfs under test, removed on drop.
/// Held by one test at a time: another's drop would remove it mid-mount.
struct HelperLink(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

static HELPER_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl HelperLink {
    fn install() -> HelperLink {
        let guard = HELPER_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let helper = Path::new(HELPER);
        match std::fs::read_link(helper) {
            // Left by an earlier run of this test that was killed.
            Ok(t) if t == vaultfs_bin() => std::fs::remove_file(helper).unwrap(),
            Ok(t) => panic!(
                "{HELPER} already exists (→ {}): not touching it",
                t.display()
            ),
            Err(_) if helper.exists() => panic!("{HELPER} already exists: not touching it"),
            Err(_) => {}
        }
        std::os::unix::fs::symlink(vaultfs_bin(), helper)
            .unwrap_or_else(|e| panic!("cannot link {HELPER}: {e}"));
        HelperLink(guard)
    }
}

impl Drop for HelperLink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(HELPER);
    }
}

/// The daemon serving `mp`: the process whose command line names it.
fn daemon_of(mp: &Path) -> Option<(i32, Vec<String>)> {
    let mp = mp.to_str().unwrap();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let raw = std::fs::read(e.path().join("cmdline")).ok()?;
        let args: Vec<String> = raw
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let ours = args
            .first()
            .is_some_and(|a| a.ends_with("mount.fuse.vaultfs") || Path::new(a) == vaultfs_bin());
        (ours && args.iter().any(|a| a == mp)).then_some((pid, args))
    })
}

/// Whatever happens, leave no mount and no daemon behind.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((pid, _)) = daemon_of(&self.0) {
            signal(pid, Signal::SIGKILL);
        }
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// (type, source, superblock options) of the mount at `mp`. The crate's
/// parser keeps no options: they are the line's last field.
fn mount_type(mp: &Path) -> Option<(String, String, String)> {
    // Lossy: another mount's path need not be UTF-8; `mp` is.
    String::from_utf8_lossy(&std::fs::read("/proc/self/mountinfo").unwrap())
        .lines()
        .find_map(|l| {
            let e =
                vaultfs::testing::mountpoint::parse_mountinfo_line(l).filter(|e| e.target == mp)?;
            Some((e.fstype, e.source, l.rsplit(' ').next()?.to_string()))
        })
}

/// The per-mount flags of the mount at `mp` (mountinfo's sixth field).
fn per_mount_flags(mp: &Path) -> String {
    // Lossy: another mount's path need not be UTF-8; `mp` is.
    String::from_utf8_lossy(&std::fs::read("/proc/self/mountinfo").unwrap())
        .lines()
        .find(|l| {
            vaultfs::testing::mountpoint::parse_mountinfo_line(l).is_some_and(|e| e.target == mp)
        })
        .and_then(|l| l.split(' ').nth(5).map(String::from))
        .unwrap_or_else(|| panic!("{} not in mountinfo", mp.display()))
}

fn umount_and_wait(mp: &Path, pid: i32) {
    let o = run(
        {
            let mut c = Command::new("umount");
            c.arg(mp);
            c
        },
        20,
    );
    assert_ok(&o, "umount");
    assert!(!is_mounted(mp));
    wait_until(
        "the daemon to exit after umount",
        Duration::from_secs(10),
        || !alive(pid),
    );
}

#[test]
fn fstab_line_mounts_with_mount_and_umount() {
    require_root();
    let b = Bao::shared();
    b.put("secret", "fstab/app", json!({"password": "from-fstab"}));
    b.enable_kv("other", 2, None);
    b.put("other", "hidden", json!({"k": "v"}));
    let token = b.token_with_policy(
        "fstab",
        r#"path "*" { capabilities = ["read", "list"] }"#,
        &[],
    );
    let t = tempfile::tempdir().unwrap();
    let token_file = t.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mp = t.path().join("secrets");
    std::fs::create_dir(&mp).unwrap();
    let log = t.path().join("vaultfs.log");
    let _cleanup = Cleanup(mp.clone());
    let _helper = HelperLink::install();

    // The line of docs/lifecycle.md, with mount(8)'s generic options and
    // systemd's x-systemd.* thrown in. -T: this file instead of /etc/fstab.
    let fstab = t.path().join("fstab");
    let line = |extra: &str| {
        format!(
            "vaultfs {} fuse.vaultfs address={},token_file={},kv=secret,allow_other,_netdev,\
             nofail,noauto,defaults,x-systemd.requires=vault-agent.service,ttl=5s,log_file={}{extra} 0 0\n",
            mp.display(),
            b.addr,
            token_file.display(),
            log.display()
        )
    };
    std::fs::write(&fstab, line("")).unwrap();
    let mount_cmd = || {
        let mut c = Command::new("mount");
        c.arg("-T").arg(&fstab).arg(&mp);
        c
    };
    let o = run(mount_cmd(), 60);
    assert_ok(&o, "mount (fstab)");
    // mount(8) returned: the mount is already live.
    assert_eq!(read(mp.join("secret/fstab/app/password")), "from-fstab");
    assert_eq!(names(&mp), ["secret"], "kv=secret was not applied");
    let (fstype, source, opts) = mount_type(&mp).expect("in mountinfo");
    // As root, fuser calls mount(2) itself, with the type `fuse` (through
    // fusermount3 it would be fuse.vaultfs); the source names vaultfs.
    assert!(
        matches!(fstype.as_str(), "fuse" | "fuse.vaultfs"),
        "{fstype}"
    );
    assert_eq!(source, "vaultfs");
    assert!(opts.contains("allow_other"), "{opts}");
    let (pid, args) = daemon_of(&mp).expect("the daemon");
    // Started as mount.fuse.vaultfs, it runs itself again as `vaultfs
    // mount` with the flags the -o options name (src/cmdline.rs).
    assert_eq!(Path::new(&args[0]), vaultfs_bin(), "{args:?}");
    assert_eq!(args[1], "mount", "{args:?}");
    assert!(
        args.iter().any(|a| a == "--kv=secret")
            && args.ends_with(&["--".into(), mp.display().to_string()]),
        "{args:?}"
    );
    assert!(read(&log).contains("mounted and live"), "{}", read(&log));
    umount_and_wait(&mp, pid);

    // A bad option: mount(8) fails with vaultfs's one line; nothing mounted.
    std::fs::write(&fstab, line(",bogus_option=1")).unwrap();
    let o = run(mount_cmd(), 30);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unknown mount option \"bogus_option\" (its value is not shown)"),
        "{}",
        stderr(&o)
    );
    assert!(!is_mounted(&mp));
}

/// fuse3's mount.fuse3 form: `vaultfs SOURCE DIR -o OPTS`. Run here through
/// `-t fuse` with the program named in the source (`PROGRAM#SOURCE`), which
/// mount.fuse3 runs exactly as it runs `vaultfs` from PATH for
/// `-t fuse.vaultfs` when there is no mount.fuse.vaultfs.
#[test]
fn mount_fuse3_runs_vaultfs_with_o_options() {
    require_root();
    let b = Bao::shared();
    b.put(
        "secret",
        "fuse3/app",
        json!({"password": "via-mount.fuse3"}),
    );
    let t = tempfile::tempdir().unwrap();
    let token_file = t.path().join("token");
    std::fs::write(&token_file, ROOT_TOKEN).unwrap();
    let mp = t.path().join("secrets");
    std::fs::create_dir(&mp).unwrap();
    let _cleanup = Cleanup(mp.clone());
    let o = run(
        {
            let mut c = Command::new("mount");
            c.args(["-t", "fuse", "-o"])
                .arg(format!(
                    "address={},token_file={},kv=secret,file_mode=0440,no_mlock",
                    b.addr,
                    token_file.display()
                ))
                .arg(format!("{}#vaultfs", vaultfs_bin().display()))
                .arg(&mp);
            c
        },
        60,
    );
    assert_ok(&o, "mount -t fuse");
    let f = mp.join("secret/fuse3/app/password");
    assert_eq!(read(&f), "via-mount.fuse3");
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o440
    );
    let (pid, args) = daemon_of(&mp).expect("the daemon");
    assert_eq!(Path::new(&args[0]), vaultfs_bin(), "{args:?}");
    assert_eq!(args[1], "mount", "{args:?}");
    umount_and_wait(&mp, pid);
}

/// What every user can read of the daemon: its command line. A password in
/// the address and a secret in an option mount(8) ignores (`-s`) stay out
/// of it, through mount.fuse.vaultfs and through mount.fuse3; a `token=`
/// option is refused without its value. The daemon's environment, where
/// the address goes, is not readable by another user.
#[test]
fn no_secret_in_the_daemons_command_line() {
    require_root();
    let b = Bao::shared();
    b.put("secret", "argv/app", json!({"k": "argv-value"}));
    let t = tempfile::tempdir().unwrap();
    let token_file = t.path().join("token");
    std::fs::write(&token_file, ROOT_TOKEN).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mp = t.path().join("secrets");
    std::fs::create_dir(&mp).unwrap();
    let _cleanup = Cleanup(mp.clone());
    let _helper = HelperLink::install();
    const PASSWORD: &str = "PASSWORD-1c9e";
    const SLOPPY: &str = "SLOPPY-3d1f";
    const TOKEN: &str = "hvs.TOKEN-77f2";
    let addr = b
        .addr
        .replacen("://", &format!("://vaultfs:{PASSWORD}@"), 1);
    let mount = |fstype: &str, opts: &str, source: &str| {
        let mut c = Command::new("mount");
        c.args(["-s", "-t", fstype, "-o", opts, source]).arg(&mp);
        run(c, 60)
    };

    let o = mount(
        "fuse.vaultfs",
        &format!("kv=secret,token={TOKEN}"),
        "vaultfs",
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("mount option token is refused") && err.contains("token_file=PATH"),
        "{err}"
    );
    assert!(!err.contains("TOKEN-77f2"), "the token echoed: {err}");
    assert!(!is_mounted(&mp));

    // Whoever writes the options cannot make the mount writable, setuid,
    // device-bearing or executable.
    let opts = |addr: &str| {
        format!(
            "rw,suid,dev,exec,address={addr},token_file={},kv=secret,no_mlock",
            token_file.display()
        )
    };
    // mount.fuse3 passes no -s on: the ignored option only for our helper.
    let sloppy_opts = format!("{},pw={SLOPPY}", opts(&addr));
    // One slash: the URL parser still reads userinfo.
    let one_slash = b.addr.replacen("://", &format!(":/vaultfs:{PASSWORD}@"), 1);
    let fuse3_opts = opts(&one_slash);
    let fuse3_source = format!("{}#vaultfs", vaultfs_bin().display());
    for (fstype, opts, source) in [
        ("fuse.vaultfs", &sloppy_opts, "vaultfs"),
        ("fuse", &fuse3_opts, fuse3_source.as_str()),
    ] {
        let o = mount(fstype, opts, source);
        assert_ok(&o, fstype);
        assert!(!stderr(&o).contains(SLOPPY), "{}", stderr(&o));
        assert_eq!(read(mp.join("secret/argv/app/k")), "argv-value");
        let flags = per_mount_flags(&mp);
        for f in ["ro", "nosuid", "nodev", "noexec"] {
            assert!(flags.split(',').any(|x| x == f), "{fstype}: {flags}");
        }
        let (pid, args) = daemon_of(&mp).expect("the daemon");
        let cmdline = format!("/proc/{pid}/cmdline");
        let (ok, seen) = as_nobody_cat(Path::new(&cmdline));
        assert!(ok, "{seen}");
        assert!(seen.contains("mount"), "{seen:?}");
        for secret in [PASSWORD, SLOPPY] {
            assert!(!seen.contains(secret), "{fstype}: {secret} in {seen:?}");
            assert!(!args.iter().any(|a| a.contains(secret)), "{args:?}");
        }
        let (ok, env) = as_nobody_cat(Path::new(&format!("/proc/{pid}/environ")));
        assert!(
            !ok && !env.contains(PASSWORD),
            "another user read the environment: {env:?}"
        );
        umount_and_wait(&mp, pid);
    }
}
