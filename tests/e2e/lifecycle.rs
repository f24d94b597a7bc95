//! The mount's life, against a real OpenBao and real FUSE mounts: background
//! mount ready on return, every failure path, signals, stale-mount recovery,
//! `vaultfs unmount` and `status`, systemd notify, a normal user's mount
//! through fusermount3, and the bounded log file.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::*;
use serde_json::json;
use vaultfs::testing::exit::Exit;

fn bao() -> &'static Bao {
    static SEEDED: OnceLock<()> = OnceLock::new();
    let b = Bao::shared();
    SEEDED.get_or_init(|| {
        b.put("secret", "app/db", json!({"password": "s3cr3t"}));
    });
    b
}

#[test]
fn background_mount_is_ready_on_return_and_unmounts() {
    let h = Home::new();
    let mp = h.path().join("mnt");
    let o = run(
        h.cmd(bao(), ROOT_TOKEN, &["mount", mp.to_str().unwrap()]),
        40,
    );
    assert_ok(&o, "mount");
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{}", stderr(&o));
    // No polling: the very next line of a start script can read a secret.
    assert_eq!(read(mp.join("secret/app/db/password")), "s3cr3t");
    let pid = h.pid(&mp);
    assert!(alive(pid));
    assert!(h.log().contains("mounted and live"), "{}", h.log());

    let o = run(
        h.cmd(bao(), ROOT_TOKEN, &["unmount", mp.to_str().unwrap()]),
        20,
    );
    assert_ok(&o, "unmount");
    // unmount returns only once the daemon is gone, its pid file with it.
    assert!(!alive(pid), "daemon still running after unmount returned");
    assert!(!is_mounted(&mp));
    assert!(!h.pid_file(&mp).exists());

    let o = run(
        h.cmd(bao(), ROOT_TOKEN, &["unmount", mp.to_str().unwrap()]),
        20,
    );
    assert_fails(&o, "nothing is mounted at");
}

#[cfg(feature = "root_tests")]
#[test]
fn failures_exit_nonzero_with_one_line_and_mount_nothing() {
    let h = Home::new();
    let mp = h.path().join("mnt");
    let m = mp.to_str().unwrap();

    let o = run(h.cmd(bao(), "not-a-token", &["mount", m]), 40);
    assert_exit(&o, Exit::Token, "token from $VAULT_TOKEN was rejected");
    assert!(!is_mounted(&mp));

    let mut c = h.cmd(bao(), ROOT_TOKEN, &["mount", m]);
    c.env("VAULT_ADDR", format!("http://127.0.0.1:{}", free_port()));
    let o = run(c, 40);
    assert_exit(&o, Exit::Unreachable, "cannot reach Vault");
    assert!(!is_mounted(&mp));

    let mut c = h.cmd(bao(), "", &["mount", m]);
    c.env_remove("VAULT_TOKEN");
    assert_exit(&run(c, 20), Exit::Token, "no Vault token");

    let file = h.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let o = run(
        h.cmd(bao(), ROOT_TOKEN, &["mount", file.to_str().unwrap()]),
        20,
    );
    assert_exit(&o, Exit::Mountpoint, "not a directory");
    assert!(!is_mounted(&file));

    // Vault that accepts connections and never answers: --wait bounds us,
    // and the half-started daemon is stopped.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut c = h.cmd(bao(), ROOT_TOKEN, &["mount", m, "--wait", "1s"]);
    c.env(
        "VAULT_ADDR",
        format!("http://{}", hang.local_addr().unwrap()),
    );
    let t = std::time::Instant::now();
    let o = run(c, 20);
    assert_exit(&o, Exit::Timeout, "was not live within 1s");
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    assert!(!is_mounted(&mp));
    drop(hang);

    // A live mount is never stacked over.
    let o = run(h.cmd(bao(), ROOT_TOKEN, &["mount", m]), 40);
    assert_ok(&o, "mount");
    let pid = h.pid(&mp);
    let o = run(h.cmd(bao(), ROOT_TOKEN, &["mount", m]), 40);
    assert_exit(
        &o,
        Exit::Mountpoint,
        &format!("already mounted by vaultfs (pid {pid})"),
    );
    assert_eq!(mount_count(&mp), 1);
    assert_eq!(read(mp.join("secret/app/db/password")), "s3cr3t");
    assert!(alive(pid));

    // Another filesystem there: busy.
    let other = h.path().join("tmpfs");
    std::fs::create_dir(&other).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&other)
        .status()
        .unwrap()
        .success());
    let o = run(
        h.cmd(bao(), ROOT_TOKEN, &["mount", other.to_str().unwrap()]),
        20,
    );
    assert_exit(
        &o,
        Exit::Mountpoint,
        "busy: a tmpfs filesystem is mounted here",
    );
    let o = run(
        h.cmd(bao(), ROOT_TOKEN, &["unmount", other.to_str().unwrap()]),
        20,
    );
    assert_exit(&o, Exit::Mountpoint, "not a vaultfs mount (tmpfs)");
    assert_eq!(mount_count(&other), 1);
}

/// The statuses the other failures map to (docs/lifecycle.md, "Exit
/// status"): a bad command line or setting, and a host without FUSE (here a
/// mount namespace whose /dev/fuse is /dev/null).
#[cfg(feature = "root_tests")]
#[test]
fn usage_and_fuse_failures_have_their_own_exit_status() {
    let h = Home::new();
    let mp = h.path().join("mnt");
    let m = mp.to_str().unwrap();

    let o = run(
        h.cmd(bao(), ROOT_TOKEN, &["mount", m, "--no-such-flag"]),
        20,
    );
    assert_eq!(
        o.status.code(),
        Some(Exit::Usage.code().into()),
        "{}",
        stderr(&o)
    );
    let mut c = h.cmd(bao(), ROOT_TOKEN, &["mount", m]);
    c.env("VAULT_ADDR", "ftp://127.0.0.1:1");
    assert_exit(&run(c, 20), Exit::Usage, "invalid Vault address");
    assert!(!is_mounted(&mp));

    let real = h.cmd(bao(), ROOT_TOKEN, &["mount", m]);
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind /dev/null /dev/fuse && exec "$0" "$@""#)
        .arg(real.get_program())
        .args(real.get_args());
    for (k, v) in real.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let o = run(c, 40);
    assert_exit(&o, Exit::Fuse, "cannot mount at");
    assert!(!is_mounted(&mp));
}

/// A server that is not Vault, or one that takes the token but denies the
/// mount table: the status says which (Vault not usable, or the token).
#[test]
fn a_hostile_server_gets_the_status_of_what_it_answered() {
    use crate::harness::hostile::{self, Server};
    let h = Home::new();
    let mp = h.path().join("mnt");
    let m = mp.to_str().unwrap();
    let mount_at = |addr: &str| {
        let mut c = h.cmd(
            bao(),
            "hostile-test-token",
            &["mount", m, "--max-retries", "0"],
        );
        c.env("VAULT_ADDR", addr);
        run(c, 40)
    };
    let not_vault = Server::start(|_| hostile::status(200, "<html>captive portal</html>"));
    let o = mount_at(&not_vault.addr);
    assert_exit(&o, Exit::Unreachable, "unexpected response from Vault");
    assert!(!is_mounted(&mp));

    let denied = Server::start(|r| match r.target.as_str() {
        "/v1/auth/token/lookup-self" => hostile::basics(r),
        _ => hostile::status(403, r#"{"errors":["permission denied"]}"#),
    });
    let o = mount_at(&denied.addr);
    assert_exit(&o, Exit::Token, "cannot list KV mounts");
    assert!(!is_mounted(&mp));
}

#[test]
fn sigterm_unmounts_and_sigkill_is_recovered() {
    let h = Home::new();
    let mp = h.path().join("mnt");
    let m = mp.to_str().unwrap();
    assert_ok(&run(h.cmd(bao(), ROOT_TOKEN, &["mount", m]), 40), "mount");
    let pid = h.pid(&mp);
    signal(pid, Signal::SIGTERM);
    wait_until("daemon exit on SIGTERM", Duration::from_secs(10), || {
        !alive(pid)
    });
    assert!(!is_mounted(&mp), "SIGTERM must unmount");
    assert!(h.log().contains("signal received: unmounting"));

    assert_ok(&run(h.cmd(bao(), ROOT_TOKEN, &["mount", m]), 40), "mount");
    let pid = h.pid(&mp);
    signal(pid, Signal::SIGKILL);
    wait_until("daemon death", Duration::from_secs(10), || !alive(pid));
    // The dead mount users see: "Transport endpoint is not connected" (or,
    // when the kernel marked the connection aborted, ECONNABORTED).
    let e = errno_of(std::fs::metadata(&mp));
    assert!(e == libc::ENOTCONN || e == libc::ECONNABORTED, "errno {e}");

    let o = run(h.cmd(bao(), ROOT_TOKEN, &["mount", m]), 40);
    assert_ok(&o, "mount over a dead mount");
    assert_eq!(read(mp.join("secret/app/db/password")), "s3cr3t");
    assert_eq!(
        mount_count(&mp),
        1,
        "the dead mount must be gone, not stacked under"
    );
    assert_ok(
        &run(h.cmd(bao(), ROOT_TOKEN, &["unmount", m]), 20),
        "unmount",
    );
    assert!(!is_mounted(&mp));

    // `unmount` also cleans a dead mount on its own.
    assert_ok(&run(h.cmd(bao(), ROOT_TOKEN, &["mount", m]), 40), "mount");
    let pid = h.pid(&mp);
    signal(pid, Signal::SIGKILL);
    wait_until("daemon death", Duration::from_secs(10), || !alive(pid));
    assert_ok(
        &run(h.cmd(bao(), ROOT_TOKEN, &["unmount", m]), 20),
        "unmount dead",
    );
    assert!(!is_mounted(&mp));
}

/// A mount point that holds files is refused (mounting would hide them)
/// unless `--allow-non-empty`; a dead vaultfs mount is still recovered
/// first, and its emptiness judged on the directory underneath; a live
/// vaultfs mount is "already mounted", not "not empty".
#[test]
fn a_mount_point_holding_files_is_refused_unless_allowed() {
    let h = Home::new();
    let mp = h.path().join("mnt");
    let m = mp.to_str().unwrap();
    std::fs::create_dir(&mp).unwrap();
    std::fs::write(mp.join("notes.txt"), "mine").unwrap();

    let o = run(h.cmd(bao(), ROOT_TOKEN, &["mount", m]), 40);
    assert_fails(&o, "not empty");
    assert!(stderr(&o).contains("--allow-non-empty"), "{}", stderr(&o));
    assert!(!is_mounted(&mp));
    assert_eq!(read(mp.join("notes.txt")), "mine");

    let allowed = ["mount", m, "--allow-non-empty"];
    assert_ok(&run(h.cmd(bao(), ROOT_TOKEN, &allowed), 40), "mount");
    assert_eq!(read(mp.join("secret/app/db/password")), "s3cr3t");
    assert!(!mp.join("notes.txt").exists(), "hidden under the mount");
    // A live vaultfs mount: the usual refusal, whatever is underneath.
    let o = run(h.cmd(bao(), ROOT_TOKEN, &["mount", m]), 40);
    assert_fails(&o, "already mounted by vaultfs");
    // A live vaultfs mount: the usual refusal, whatever is underneath.
    // Killed: the dead mount is removed, then the files under it count.
    let pid = h.pid(&mp);
    signal(pid, Signal::SIGKILL);
    wait_until("daemon death", Duration::from_secs(10), || !alive(pid));
    let o = run(h.cmd(bao(), ROOT_TOKEN, &["mount", m]), 40);
    assert_fails(&o, "not empty");
    assert!(!is_mounted(&mp), "the dead mount must be recovered");
    assert_eq!(read(mp.join("notes.txt")), "mine");

    // The same after a kill, with the flag: recovered and mounted once.
    assert_ok(&run(h.cmd(bao(), ROOT_TOKEN, &allowed), 40), "mount");
    let pid = h.pid(&mp);
    signal(pid, Signal::SIGKILL);
    wait_until("daemon death", Duration::from_secs(10), || !alive(pid));
    assert_ok(&run(h.cmd(bao(), ROOT_TOKEN, &allowed), 40), "remount");
    assert_eq!(mount_count(&mp), 1);
    assert_eq!(read(mp.join("secret/app/db/password")), "s3cr3t");
    assert_ok(
        &run(h.cmd(bao(), ROOT_TOKEN, &["unmount", m]), 20),
        "unmount",
    );
    assert_eq!(read(mp.join("notes.txt")), "mine");
}

#[test]
fn default_mountpoint_and_busy_unmount() {
    let h = Home::new();
    assert_ok(&run(h.cmd(bao(), ROOT_TOKEN, &["mount"]), 40), "mount");
    let mp = h.secrets();
    assert_eq!(read(mp.join("secret/app/db/password")), "s3cr3t");
    let pid = h.pid(&mp);

    // An open file keeps it busy: refused, still mounted and serving.
    let f = std::fs::File::open(mp.join("secret/app/db/password")).unwrap();
    let o = run(h.cmd(bao(), ROOT_TOKEN, &["unmount"]), 20);
    assert_fails(&o, "pass --lazy");
    assert_eq!(read(mp.join("secret/app/db/password")), "s3cr3t");

    // --lazy detaches now; the daemon exits when the last file closes.
    assert_ok(
        &run(h.cmd(bao(), ROOT_TOKEN, &["unmount", "--lazy"]), 20),
        "lazy",
    );
    assert!(!is_mounted(&mp));
    drop(f);
    wait_until(
        "daemon exit after lazy unmount",
        Duration::from_secs(10),
        || !alive(pid),
    );

    assert_ok(&run(h.cmd(bao(), ROOT_TOKEN, &["mount"]), 40), "mount");
    assert_ok(&run(h.cmd(bao(), ROOT_TOKEN, &["unmount"]), 20), "unmount");
    assert!(!is_mounted(&mp));
    assert_fails(
        &run(h.cmd(bao(), ROOT_TOKEN, &["unmount"]), 20),
        "nothing is mounted",
    );
}

#[test]
fn parallel_mounts_on_one_mountpoint_mount_once() {
    let h = Home::new();
    let mp = h.path().join("mnt");
    let m = mp.to_str().unwrap().to_string();
    let cmds: Vec<Command> = (0..3)
        .map(|_| h.cmd(bao(), ROOT_TOKEN, &["mount", &m]))
        .collect();
    let outs: Vec<Output> = cmds
        .into_iter()
        .map(|c| std::thread::spawn(move || run(c, 40)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "exactly one mount wins");
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert_fails(o, "already mounted by vaultfs");
    }
    assert_eq!(mount_count(&mp), 1);
    assert_eq!(read(mp.join("secret/app/db/password")), "s3cr3t");
    assert_ok(
        &run(h.cmd(bao(), ROOT_TOKEN, &["unmount", &m]), 20),
        "unmount",
    );
}

#[test]
fn systemd_notify_ready_when_live() {
    let h = Home::new();
    let name = format!("vaultfs-test-notify-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mp = h.path().join("mnt");
    let mut c = h.cmd(
        bao(),
        ROOT_TOKEN,
        &["mount", "--foreground", mp.to_str().unwrap()],
    );
    c.env("NOTIFY_SOCKET", format!("@{name}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = spawn_kept(c);
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("READY=1 within 30s");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means live: no waiting.
    assert_eq!(read(mp.join("secret/app/db/password")), "s3cr3t");
    signal(child.id() as i32, Signal::SIGTERM);
    let n = sock.recv(&mut buf).expect("STOPPING=1");
    assert_eq!(&buf[..n], b"STOPPING=1");
    let st = child.wait().unwrap();
    assert!(st.success(), "SIGTERM must exit 0: {st}");
    assert!(!is_mounted(&mp));
}

/// A normal user mounts through the setuid fusermount3 (no AutoUnmount, no
/// allow_other), reads its secrets, and unmounts. This machine's /dev/fuse is
/// root-only, so the test runs in a private mount namespace where a 0666
/// node for the same device is bound over /dev/fuse, as on usual hosts.
#[cfg(feature = "root_tests")]
#[test]
fn normal_user_mounts_through_fusermount3() {
    let script = r#"
as_user "$BIN" mount || exit 21
echo "value=$(as_user cat "$H/secrets/secret/app/db/password")"
grep " $H/secrets " /proc/self/mountinfo | sed 's/.* - /type=/'
cat "$H/secrets/secret/app/db/password" 2>/dev/null && exit 22
as_user "$BIN" unmount || exit 23
grep -q " $H/secrets " /proc/self/mountinfo && exit 24
echo done
"#;
    let env = [("ADDR", bao().addr.as_str()), ("TOKEN", ROOT_TOKEN)];
    assert_mounted_as_nobody(&run_as_nobody(script, &env, 60), "s3cr3t");
}

/// `vaultfs status`: live, nothing mounted, stale (daemon killed), listed
/// without a mount point, and `--wait` that succeeds and one that times out.
#[test]
fn status_says_whether_a_live_vaultfs_is_mounted() {
    let h = Home::new();
    let mp = h.path().join("mnt");
    let m = mp.to_str().unwrap();
    let status = |args: &[&str]| run(h.cmd(bao(), ROOT_TOKEN, &[&["status"], args].concat()), 30);

    let o = status(&[m]);
    assert_fails(&o, "nothing is mounted at");
    let (o, took) = {
        let t = std::time::Instant::now();
        (status(&["--wait", "1s", m]), t.elapsed())
    };
    assert_fails(&o, "nothing is mounted at");
    assert!(took >= Duration::from_millis(900), "{took:?}");

    // A start-up script waits for a mount another script is bringing up.
    let waiter = h
        .cmd(bao(), ROOT_TOKEN, &["status", "--wait", "30s", m])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    assert_ok(
        &run(h.cmd(bao(), ROOT_TOKEN, &["mount", "--ttl", "1s", m]), 40),
        "mount",
    );
    let o = waiter.wait_with_output().unwrap();
    assert_ok(&o, "status --wait");
    let pid = h.pid(&mp);
    let line = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        line.contains(&format!("live (pid {pid}, {}/)", bao().addr)),
        "{line}"
    );

    let o = status(&[]);
    assert_ok(&o, "status");
    let list = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(list.contains(&format!("{m}: live (pid {pid}")), "{list}");

    // Stopped, past the TTL (so the kernel asks the daemon): not live,
    // and status does not hang on it.
    signal(pid, Signal::SIGSTOP);
    std::thread::sleep(Duration::from_millis(1500));
    let o = status(&[m]);
    signal(pid, Signal::SIGCONT);
    assert_fails(&o, &format!("vaultfs (pid {pid}) does not answer"));

    // Killed: the kernel's entry is left, and it is not live.
    signal(pid, Signal::SIGKILL);
    wait_until("the daemon's exit", Duration::from_secs(10), || !alive(pid));
    assert_fails(&status(&[m]), "stale");
    assert!(is_mounted(&mp));
    assert_ok(
        &run(h.cmd(bao(), ROOT_TOKEN, &["unmount", m]), 20),
        "unmount",
    );
    assert_fails(&status(&[m]), "nothing is mounted at");
}

/// The log file is bounded. Past --log-max-size it becomes
/// NAME.1 and a new file starts (the daemon's stderr moves with it); a file
/// moved away by logrotate is followed without a signal.
#[test]
fn log_file_is_capped_and_follows_logrotate() {
    let h = Home::new();
    let mp = h.path().join("mnt");
    let logs = h.path().join("logs");
    let log = logs.join("v.log");
    let mut c = h.cmd(
        bao(),
        ROOT_TOKEN,
        &[
            "mount",
            mp.to_str().unwrap(),
            "--log-file",
            log.to_str().unwrap(),
            "--log-max-size=8K",
            "--ttl=0s",
        ],
    );
    c.env("RUST_LOG", "debug");
    assert_ok(&run(c, 40), "mount");
    let pid = h.pid(&mp);
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    // Each new name is a lookup, so a request and a few log lines.
    for i in 0..300 {
        let _ = std::fs::metadata(mp.join(format!("secret/app/nope-{i}")));
        assert!(size(&log) <= 8192, "{} bytes", size(&log));
    }
    let old = logs.join("v.log.1");
    assert!(size(&old) > 4096 && size(&old) <= 8192, "{}", size(&old));
    let mut files: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["v.log", "v.log.1"]);
    // The daemon's stderr (where a panic would go) is the current file.
    let fd2 = std::fs::read_link(format!("/proc/{pid}/fd/2")).unwrap();
    assert_eq!(fd2, log, "stderr did not follow the rotation");

    // logrotate's default (create): rename, and vaultfs carries on in a new file.
    let rotated = logs.join("v.log-20250101");
    std::fs::rename(&log, &rotated).unwrap();
    let before = size(&rotated);
    let _ = std::fs::metadata(mp.join("secret/app/after-logrotate"));
    assert!(read(&log).contains("Vault answered"), "{}", read(&log));
    assert_eq!(size(&rotated), before, "still writing to the moved file");

    let o = run(
        h.cmd(bao(), ROOT_TOKEN, &["unmount", mp.to_str().unwrap()]),
        20,
    );
    assert_ok(&o, "unmount");
    assert!(read(&log).contains("unmounted"), "{}", read(&log));
}
