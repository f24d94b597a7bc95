//! The host side of a mount: a stopped daemon does not hang `mount` or
//! `unmount`; `--allow-root` is refused and `--allow-other` lets only root
//! in; pid and log files do not follow planted symlinks; a normal user's
//! `unmount` finds its non-dumpable daemon. Real OpenBao, real FUSE mounts.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::*;
use serde_json::json;

fn bao() -> &'static Bao {
    static SEEDED: OnceLock<()> = OnceLock::new();
    let b = Bao::shared();
    SEEDED.get_or_init(|| {
        b.put("secret", "app/db", json!({"password": "s3cr3t"}));
    });
    b
}

/// A daemon stopped with SIGSTOP for the test; whatever happens, it is
/// continued and killed at the end so no mount or process is left waiting.
struct Stopped(i32);

impl Stopped {
    fn new(pid: i32) -> Stopped {
        signal(pid, Signal::SIGSTOP);
        Stopped(pid)
    }

    /// Continue it and let it finish on its own.
    fn resume(mut self) {
        signal(self.0, Signal::SIGCONT);
        self.0 = 0;
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.0 > 0 && alive(self.0) {
            signal(self.0, Signal::SIGCONT);
            signal(self.0, Signal::SIGKILL);
        }
    }
}

/// With the daemon stopped past the TTL, every stat of the mount point
/// waits for it. `mount --wait 3s` and `unmount --wait 3s` must still
/// return, within their bounds, with a message that says what is wrong.
#[test]
fn stopped_daemon_does_not_hang_mount_or_unmount() {
    let h = Home::new();
    let mp = h.path().join("mnt");
    let m = mp.to_str().unwrap();
    let o = run(h.cmd(bao(), ROOT_TOKEN, &["mount", m, "--ttl", "1s"]), 40);
    assert_ok(&o, "mount");
    let pid = h.pid(&mp);
    let stopped = Stopped::new(pid);
    // Past the TTL the kernel must ask the daemon about the root again.
    std::thread::sleep(Duration::from_millis(1500));

    let t = Instant::now();
    let o = run(h.cmd(bao(), ROOT_TOKEN, &["mount", m, "--wait", "3s"]), 30);
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_fails(&o, &format!("already mounted by vaultfs (pid {pid})"));
    assert!(stderr(&o).contains("does not answer"), "{}", stderr(&o));
    assert_eq!(mount_count(&mp), 1);

    // A process waiting on the stopped daemon keeps the mount busy: refused,
    // in bounded time, naming the cause and --lazy.
    let mut stat = std::process::Command::new("stat");
    stat.arg(&mp)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut waiter = spawn_kept(stat);
    let wchan = format!("/proc/{}/wchan", waiter.id());
    wait_until(
        "stat to wait for the daemon",
        Duration::from_secs(10),
        || std::fs::read_to_string(&wchan).is_ok_and(|w| w.contains("wait_answer")),
    );
    let t = Instant::now();
    let o = run(
        h.cmd(bao(), ROOT_TOKEN, &["unmount", m, "--wait", "3s"]),
        30,
    );
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert_fails(&o, "its daemon does not answer");
    assert!(stderr(&o).contains("--lazy"), "{}", stderr(&o));
    assert_eq!(mount_count(&mp), 1);
    let _ = waiter.kill();
    let _ = waiter.wait();

    let t = Instant::now();
    let o = run(
        h.cmd(bao(), ROOT_TOKEN, &["unmount", m, "--wait", "3s"]),
        30,
    );
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    // Unmounted; the daemon cannot exit while stopped, and the user is told.
    assert!(!is_mounted(&mp), "the mount must go: {}", stderr(&o));
    assert_fails(&o, &format!("its daemon (pid {pid}) is stopped"));

    stopped.resume();
    wait_until(
        "daemon exit once continued",
        Duration::from_secs(10),
        || !alive(pid),
    );
}

/// `--allow-root` is refused before anything is mounted: it would mount with
/// the kernel's `allow_other` and leave the rest to fuser, whose check skips
/// reads and never sees lookups the kernel answers from its cache, so any
/// user could read a secret the owner had read.
#[cfg(feature = "root_tests")]
#[test]
fn allow_root_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let h = Home::new();
    // Let other users walk to the mount point: only the mount may stop them.
    std::fs::set_permissions(h.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mp = h.path().join("mnt");
    let m = mp.to_str().unwrap();
    let o = run(
        h.cmd(
            bao(),
            ROOT_TOKEN,
            &[
                "mount",
                m,
                "--allow-root",
                "--file-mode=0444",
                "--dir-mode=0555",
            ],
        ),
        40,
    );
    if o.status.success() {
        // What the flag did: the owner reads, then anybody reads.
        let f = mp.join("secret/app/db/password");
        assert_eq!(read(&f), "s3cr3t");
        let (ok, out) = as_nobody_cat(&f);
        let _ = run(h.cmd(bao(), ROOT_TOKEN, &["unmount", m]), 20);
        assert!(!ok, "--allow-root let user nobody read a secret: {out}");
    }
    assert_fails(&o, "--allow-root is not supported");
    assert!(stderr(&o).contains("--allow-other"), "{}", stderr(&o));
    assert!(!is_mounted(&mp));
}

#[cfg(feature = "root_tests")]
/// Run `body` (bash) as [`run_as_nobody`] does, with /etc/fuse.conf saying
/// `user_allow_other` and `as_other CMD` running CMD as uid 65533.
fn as_normal_user(body: &str) -> (bool, String) {
    let script = format!(
        r#"
echo user_allow_other > "$D/fuse.conf" && mount --bind "$D/fuse.conf" /etc/fuse.conf || exit 20
as_other() {{ setpriv --reuid=65533 --regid=65533 --clear-groups -- "$@"; }}
{body}"#
    );
    let env = [("ADDR", bao().addr.as_str()), ("TOKEN", ROOT_TOKEN)];
    let o = run_as_nobody(&script, &env, 90);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    (o.status.success(), out + &stderr(&o))
}

/// The safe way to let root in, which the `--allow-root` refusal points to:
/// `--allow-other` with the default owner-only modes. The kernel checks the
/// modes on every access, cached or not: root passes (its capabilities),
/// another user does not, even right after the owner read the file.
#[cfg(feature = "root_tests")]
#[test]
fn allow_other_with_owner_modes_lets_root_in_and_no_one_else() {
    let (ok, out) = as_normal_user(
        r#"
as_user "$BIN" mount --allow-other || exit 21
F="$H/secrets/secret/app/db/password"
echo "owner=$(as_user cat "$F")"
echo "root=$(cat "$F")"
as_other cat "$F" && echo other-read
as_other ls "$H/secrets/secret" && echo other-listed
as_user "$BIN" unmount || exit 23
echo done
"#,
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("owner=s3cr3t\n") && out.contains("root=s3cr3t\n"),
        "{out}"
    );
    assert!(
        !out.contains("other-read") && !out.contains("other-listed"),
        "{out}"
    );
    assert!(out.contains("Permission denied"), "{out}");
    assert!(out.contains("done\n"), "{out}");
}

fn mode_of(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// With XDG_RUNTIME_DIR and XDG_STATE_HOME in a shared place, another user
/// may make `vaultfs/` there first and plant symlinks in it, so that a mount
/// truncates a victim file to the pid or appends log lines to another. Such
/// directories are refused, symlinks are never followed, and the files
/// vaultfs makes itself are 0600 in 0700 directories.
#[test]
fn pid_and_log_files_do_not_follow_planted_symlinks() {
    use std::os::unix::fs::{symlink, PermissionsExt};
    let h = Home::new();
    let mp = h.path().join("mnt");
    let m = mp.to_str().unwrap();
    let shared = h.path().join("shared");
    let (run_dir, state_dir) = (shared.join("run"), shared.join("state"));
    let dirs = StateDirs::of(&[
        ("HOME", h.path()),
        ("XDG_RUNTIME_DIR", &run_dir),
        ("XDG_STATE_HOME", &state_dir),
    ]);
    let victim_pid = h.path().join("victim-pid");
    let victim_log = h.path().join("victim-log");
    std::fs::write(&victim_pid, "precious\n").unwrap();
    std::fs::write(&victim_log, "").unwrap();
    for d in [&dirs.run, &dirs.state] {
        // Made by the other user, for everyone to write in.
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::chown(d, Some(65534), Some(65534)).unwrap();
    }
    let pid_file = dirs.pid_file(&mp);
    symlink(&victim_pid, &pid_file).unwrap();
    symlink(&victim_pid, pid_file.with_extension("tmp")).unwrap();
    symlink(&victim_pid, pid_file.with_extension("lock")).unwrap();
    symlink(&victim_log, dirs.log()).unwrap();

    let xdg = |args: &[&str]| {
        let mut c = h.cmd(bao(), ROOT_TOKEN, args);
        c.env("XDG_RUNTIME_DIR", &run_dir)
            .env("XDG_STATE_HOME", &state_dir);
        c
    };
    let o = run(xdg(&["mount", m]), 40);
    if o.status.success() {
        let _ = run(xdg(&["unmount", m]), 20);
    }
    assert_fails(&o, "belongs to uid 65534");
    assert!(!is_mounted(&mp));
    assert_eq!(
        read(&victim_pid),
        "precious\n",
        "the pid file followed a symlink"
    );
    assert_eq!(read(&victim_log), "", "the log followed a symlink");

    // Our own directory, but writable by others: refused too.
    for d in [&dirs.run, &dirs.state] {
        std::fs::remove_dir_all(d).unwrap();
        std::fs::create_dir(d).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    assert_fails(&run(xdg(&["mount", m]), 40), "writable by other users");
    assert!(!is_mounted(&mp));

    // A symlink in a private directory (here --log-file) is not followed.
    for d in [&dirs.run, &dirs.state] {
        std::fs::remove_dir_all(d).unwrap();
    }
    let link = h.path().join("log-link");
    symlink(&victim_log, &link).unwrap();
    let o = run(xdg(&["mount", m, "--log-file", link.to_str().unwrap()]), 40);
    if o.status.success() {
        let _ = run(xdg(&["unmount", m]), 20);
    }
    assert_fails(&o, "is a symlink");
    assert_eq!(read(&victim_log), "", "--log-file followed a symlink");

    // Missing directories are made 0700, files 0600; all is removed after.
    let o = run(xdg(&["mount", m]), 40);
    assert_ok(&o, "mount");
    assert_eq!(mode_of(&dirs.run), 0o700);
    assert_eq!(mode_of(&dirs.state), 0o700);
    assert_eq!(mode_of(&pid_file), 0o600);
    assert_eq!(mode_of(&pid_file.with_extension("lock")), 0o600);
    assert_eq!(mode_of(&dirs.log()), 0o600);
    let pid: i32 = read(&pid_file).lines().next().unwrap().parse().unwrap();
    assert_ok(&run(xdg(&["unmount", m]), 20), "unmount");
    assert!(!alive(pid) && !pid_file.exists());
}

/// The daemon is not dumpable, so a normal user cannot look into its
/// /proc/PID/fd to tell that the pid in the pid file is a live vaultfs
/// daemon. Through fusermount3 as a normal user: a second `mount` names the
/// pid, `unmount` returns once the daemon is gone, and a stopped daemon's
/// `unmount` is bounded and names it.
#[cfg(feature = "root_tests")]
#[test]
fn normal_user_unmount_finds_its_daemon() {
    let (ok, out) = as_normal_user(
        r#"
state() { sed 's/.*) //' /proc/$1/stat 2>/dev/null | cut -c1; }
as_user "$BIN" mount || exit 21
P=$(head -n1 "$PIDS"/*.pid)
echo "pid=$P"
as_user "$BIN" mount 2>&1 | sed 's/^/second: /'
as_user "$BIN" unmount || exit 23
s=$(state $P); case "$s" in ""|Z|X) ;; *) echo "alive-after-unmount=$s";; esac

as_user "$BIN" mount --ttl 1s || exit 24
P=$(head -n1 "$PIDS"/*.pid)
echo "pid2=$P"
kill -STOP $P
sleep 1.5
timeout 30 setpriv --reuid=65534 --regid=65534 --clear-groups -- env -i PATH=/usr/bin:/bin HOME="$H" "$BIN" unmount --wait 2s 2>&1 | sed 's/^/stopped: /'
grep -q " $H/secrets " /proc/self/mountinfo && echo still-mounted
kill -CONT $P
echo done
"#,
    );
    assert!(ok, "{out}");
    let pid = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {out}"))
            .to_string()
    };
    let (p1, p2) = (pid("pid="), pid("pid2="));
    assert!(
        out.contains(&format!("already mounted by vaultfs (pid {p1})")),
        "{out}"
    );
    assert!(!out.contains("alive-after-unmount"), "{out}");
    assert!(
        out.contains(&format!("its daemon (pid {p2}) is stopped")),
        "{out}"
    );
    assert!(!out.contains("still-mounted"), "{out}");
    assert!(out.contains("done\n"), "{out}");
}
