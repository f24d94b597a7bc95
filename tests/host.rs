//! Issue #10, the host side: a stopped daemon must not hang `mount` or
//! `unmount`; `--allow-root` is refused; pid and log files do not follow
//! planted symlinks; a normal user's `unmount` finds its non-dumpable daemon.
//! Real OpenBao, real FUSE mounts.

mod common;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
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
        // SAFETY: signalling the daemon this test started.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        Stopped(pid)
    }

    /// Continue it and let it finish on its own.
    fn resume(mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0, libc::SIGCONT) };
        self.0 = 0;
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.0 > 0 && alive(self.0) {
            // SAFETY: as above.
            unsafe {
                libc::kill(self.0, libc::SIGCONT);
                libc::kill(self.0, libc::SIGKILL);
            }
        }
    }
}

/// Defect 2: with the daemon stopped past the TTL, every stat of the mount
/// point waits for it. `mount --wait 3s` and `unmount --wait 3s` must still
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
