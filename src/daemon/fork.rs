//! Into the background: fork *before* any thread exists (the tokio runtime
//! is built in the child). The child reports its outcome on a pipe, and the
//! parent exits 0 only after the child has listed the mount's root; on a
//! failure or timeout it reaps the child and leaves nothing mounted.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use super::{run_daemon, MountError, Prepared};
use crate::exit::Exit;
use crate::mountpoint::{self, State};
use crate::readiness::{self, Outcome, Reporter};

/// `lock` is released when the parent exits, after the mount is live.
pub(super) fn background(
    p: Prepared,
    log_f: Option<std::fs::File>,
    lock: Option<std::fs::File>,
) -> Result<(), MountError> {
    let wait = p.settings.wait;
    let mp = p.settings.mountpoint.clone();
    let log = p.settings.log.file.as_ref().map(|l| l.path.clone());
    let (rx, tx) = readiness::pipe().map_err(|e| MountError::Other(format!("pipe: {e}")))?;
    // SAFETY: no other thread exists yet (the runtime is built in the child).
    match unsafe { libc::fork() } {
        -1 => Err(MountError::Other(format!(
            "fork: {}",
            io::Error::last_os_error()
        ))),
        0 => {
            drop((rx, lock));
            let code = child(p, tx, log_f);
            std::process::exit(code)
        }
        pid => {
            drop(tx);
            parent(pid, rx, wait, &mp, log.as_deref())
        }
    }
}

/// The daemon: detach from the terminal and the caller's pipes (a start
/// script's output must not stay open because of us), then run.
fn child(p: Prepared, tx: OwnedFd, log: Option<std::fs::File>) -> i32 {
    // SAFETY: plain syscalls on fds we own.
    unsafe {
        libc::setsid();
        let _ = libc::chdir(c"/".as_ptr());
    }
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null");
    let err = log.or_else(|| null.as_ref().ok().and_then(|f| f.try_clone().ok()));
    if let (Ok(null), Some(err)) = (&null, &err) {
        // SAFETY: dup2 onto the standard fds; panics then land in the log.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(err.as_raw_fd(), 2);
        }
    }
    let mut reporter = Reporter::pipe(tx);
    match run_daemon(p, &mut reporter) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            let exit = Exit::of(&e);
            reporter.failed(exit, &e.to_string());
            exit.code().into()
        }
    }
}

/// Wait for the daemon's word. On a timeout, stop it and leave nothing mounted.
fn parent(
    pid: i32,
    rx: OwnedFd,
    wait: Duration,
    mp: &Path,
    log: Option<&Path>,
) -> Result<(), MountError> {
    let see_log = log
        .map(|l| format!("; see {}", l.display()))
        .unwrap_or_default();
    match readiness::wait(rx, wait) {
        Outcome::Ready => Ok(()),
        Outcome::Failed(exit, message) => {
            reap(pid, Duration::from_secs(5));
            Err(MountError::Daemon { exit, message })
        }
        Outcome::Vanished => {
            let status = reap(pid, Duration::from_secs(5));
            cleanup_dead(mp);
            Err(MountError::Other(format!(
                "the daemon exited ({status}) before the mount was live{see_log}"
            )))
        }
        Outcome::TimedOut => {
            // SAFETY: signalling our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            if reap(pid, Duration::from_secs(5)) == "still running" {
                // SAFETY: as above.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reap(pid, Duration::from_secs(5));
            }
            cleanup_dead(mp);
            Err(MountError::TimedOut(format!(
                "{}: the mount was not live within {} (is Vault slow or unreachable?){see_log}",
                mp.display(),
                humantime::format_duration(wait)
            )))
        }
    }
}

/// Wait for our child; describe how it ended.
fn reap(pid: i32, timeout: Duration) -> String {
    let end = std::time::Instant::now() + timeout;
    loop {
        let mut st = 0;
        // SAFETY: waiting on our own child.
        let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
        if r == pid {
            return if libc::WIFSIGNALED(st) {
                format!("killed by signal {}", libc::WTERMSIG(st))
            } else {
                format!("exit status {}", libc::WEXITSTATUS(st))
            };
        }
        if r < 0 || std::time::Instant::now() >= end {
            return if r < 0 {
                "gone".into()
            } else {
                "still running".into()
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn cleanup_dead(mp: &Path) {
    if let Some(entry) = mountpoint::mount_at(mp) {
        if mountpoint::probe(mp, entry.clone()) == State::Dead {
            let _ = mountpoint::unmount(&entry, true);
        }
    }
}
