//! Signals a running daemon gets, against a real OpenBao and real mounts:
//! none kills it silently (a dead mount, "Transport endpoint is not
//! connected"). SIGHUP drops every cached answer, the kernel's copies
//! included, and reopens the log; the others either stop it cleanly, as
//! SIGTERM does, or are ignored, each with a log line.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::harness::*;
use serde_json::json;

fn bao() -> &'static Bao {
    static SEEDED: OnceLock<()> = OnceLock::new();
    let b = Bao::shared();
    SEEDED.get_or_init(|| {
        b.put("secret", "sig/db", json!({"password": "p1"}));
    });
    b
}

/// Sends `sig` by number: the ignored set includes the realtime signals,
/// which neither nix's `Signal` nor rustix's safe API can name.
fn kill(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) takes no pointers and touches no memory of ours; any
    // signal number is sound to pass (a bad one is EINVAL, asserted against).
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

/// Signals whose default action ends the process and that the daemon
/// ignores, by name as the log names them.
fn ignored() -> Vec<(libc::c_int, String)> {
    let mut v: Vec<(libc::c_int, String)> = [
        (libc::SIGUSR1, "SIGUSR1"),
        (libc::SIGUSR2, "SIGUSR2"),
        (libc::SIGALRM, "SIGALRM"),
        (libc::SIGVTALRM, "SIGVTALRM"),
        (libc::SIGPROF, "SIGPROF"),
        (libc::SIGIO, "SIGIO"),
        (libc::SIGPIPE, "SIGPIPE"),
        (libc::SIGXFSZ, "SIGXFSZ"),
        (libc::SIGSTKFLT, "SIGSTKFLT"),
    ]
    .iter()
    .map(|&(n, s)| (n, s.to_string()))
    .collect();
    v.push((libc::SIGRTMIN(), "SIGRTMIN+0".into()));
    v.push((
        libc::SIGRTMAX(),
        format!("SIGRTMIN+{}", libc::SIGRTMAX() - libc::SIGRTMIN()),
    ));
    v
}

/// The mount answers: a secret reads and the root is no dead mount.
fn serving(m: &Mount) {
    let e = errno_of(std::fs::metadata(m.path()));
    assert!(e != libc::ENOTCONN && e != libc::ECONNABORTED, "dead mount");
    assert_eq!(read(m.p("secret/sig/db/password")), "p1");
}

#[test]
fn ignored_signals_leave_the_mount_serving_with_a_log_line() {
    let m = Mount::new(bao(), ROOT_TOKEN);
    serving(&m);
    for (n, name) in ignored() {
        kill(m.pid(), n);
        wait_until(
            &format!("a log line for {name}"),
            Duration::from_secs(5),
            || {
                m.log_text()
                    .lines()
                    .any(|l| l.contains("signal received and ignored") && l.contains(&name))
            },
        );
        serving(&m);
    }
}

#[test]
fn stopping_signals_unmount_and_exit_zero_with_a_log_line() {
    stops_cleanly(&[
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGQUIT, "SIGQUIT"),
        (libc::SIGXCPU, "SIGXCPU"),
        (libc::SIGPWR, "SIGPWR"),
    ]);
}

/// A fault signal sent with `kill` is no fault: it stops the daemon as
/// SIGTERM does, logged by name, instead of a silent death and a dead
/// mount. SIGSEGV and SIGBUS twice: the first must not have disarmed it.
#[test]
fn fault_signals_sent_by_kill_unmount_and_exit_zero_with_a_log_line() {
    stops_cleanly(&[
        (libc::SIGILL, "SIGILL"),
        (libc::SIGTRAP, "SIGTRAP"),
        (libc::SIGABRT, "SIGABRT"),
        (libc::SIGFPE, "SIGFPE"),
        (libc::SIGSYS, "SIGSYS"),
        (libc::SIGSEGV, "SIGSEGV"),
        (libc::SIGBUS, "SIGBUS"),
    ]);
    stops_cleanly_after(2, &[(libc::SIGSEGV, "SIGSEGV"), (libc::SIGBUS, "SIGBUS")]);
}

/// Each signal, sent to a mount of its own, unmounts it and ends its
/// daemon with status 0 and a log line naming the signal.
fn stops_cleanly(signals: &[(libc::c_int, &str)]) {
    stops_cleanly_after(1, signals)
}

/// [`stops_cleanly`], each signal sent `times` times at once.
fn stops_cleanly_after(times: usize, signals: &[(libc::c_int, &str)]) {
    for &(n, name) in signals {
        let mut m = Mount::new(bao(), ROOT_TOKEN);
        serving(&m);
        for _ in 0..times {
            kill(m.pid(), n);
        }
        let mut child = m.child.take().unwrap();
        let mut status = None;
        wait_until(&format!("exit on {name}"), Duration::from_secs(10), || {
            status = child.try_wait().unwrap();
            status.is_some()
        });
        assert!(status.unwrap().success(), "{name}: {:?}", status);
        assert!(!is_mounted(m.path()), "{name} left the mount");
        let log = m.log_text();
        assert!(
            log.lines()
                .any(|l| l.contains("signal received: unmounting") && l.contains(name)),
            "{name}: {log}"
        );
    }
}

/// With a long TTL a changed secret is served from the caches (the
/// daemon's and the kernel's) until SIGHUP, then at once.
#[test]
fn sighup_shows_a_rotated_secret_at_once() {
    let b = bao();
    b.put("secret", "sig/rot", json!({"password": "old", "user": "u"}));
    let m = Mount::with(b, MountOpts::new(ROOT_TOKEN).arg("--ttl").arg("1h"));
    let f = m.p("secret/sig/rot/password");
    assert_eq!(read(&f), "old");
    assert_eq!(
        names(m.p("secret/sig/rot")),
        [".env", ".json", ".sh", "password", "user"]
    );
    b.put(
        "secret",
        "sig/rot",
        json!({"password": "rotated", "extra": "x"}),
    );
    // Cached: the change does not show yet.
    assert_eq!(read(&f), "old");
    kill(m.pid(), libc::SIGHUP);
    wait_until("the SIGHUP log line", Duration::from_secs(5), || {
        m.log_text().contains("SIGHUP: the kernel's cached names")
    });
    assert_eq!(read(&f), "rotated");
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 7);
    assert_eq!(
        names(m.p("secret/sig/rot")),
        [".env", ".json", ".sh", "extra", "password"]
    );
    let log = m.log_text();
    assert!(log.contains("SIGHUP: cached answers dropped"), "{log}");
    serving(&m);
}

/// In the background the log goes to a file: SIGHUP reopens it by name, so
/// a file put in its place (logrotate's copy mode) gets the next lines.
#[test]
fn sighup_reopens_the_log_file() {
    let h = Home::new();
    let mp = h.path().join("mnt");
    let mps = mp.to_str().unwrap();
    assert_ok(&run(h.cmd(bao(), ROOT_TOKEN, &["mount", mps]), 40), "mount");
    let pid = h.pid(&mp) as u32;
    let log = h.dirs().log();
    kill(pid, libc::SIGHUP);
    wait_until("the reopen log line", Duration::from_secs(5), || {
        h.log().contains("SIGHUP: log file reopened")
    });
    assert_eq!(read(mp.join("secret/sig/db/password")), "p1");
    assert!(alive(pid as i32));
    assert!(log.exists());
    assert_ok(
        &run(h.cmd(bao(), ROOT_TOKEN, &["unmount", mps]), 20),
        "unmount",
    );
}

/// While the daemon waits for Vault before mounting, SIGHUP does not kill
/// it and SIGTERM ends it at once, each with a log line.
#[test]
fn signals_during_start_up() {
    // A "Vault" that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", silent.local_addr().unwrap());
    let asked = Arc::new(AtomicUsize::new(0));
    let counted = asked.clone();
    let held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for c in silent.incoming().take(8) {
            kept.push(c);
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mp = dir.path().join("mnt");
    let mut cmd = vaultfs_cmd_at(&addr, ROOT_TOKEN);
    cmd.args(["mount", "--foreground"])
        .arg(&mp)
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = spawn_kept(cmd);
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    // Its first request to Vault comes after its signal handlers are in.
    wait_until(
        "the daemon's first request",
        Duration::from_secs(10),
        || asked.load(Ordering::SeqCst) > 0,
    );
    kill(child.id(), libc::SIGHUP);
    wait_until("the SIGHUP line", Duration::from_secs(5), || {
        text().contains("SIGHUP")
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP ended it: {}",
        text()
    );
    kill(child.id(), libc::SIGTERM);
    let mut status = None;
    wait_until("exit on SIGTERM", Duration::from_secs(3), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success());
    assert!(
        text().contains("signal received before mounting"),
        "{}",
        text()
    );
    assert!(!is_mounted(&mp));
    drop(held);
}
