//! Into the background: fork *before* any thread exists (the tokio runtime
//! is built in the child). The child reports its outcome on a pipe, and the
//! parent exits 0 only after the child has listed the mount's root; on a
//! failure or timeout it reaps the child and leaves nothing mounted.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{self, WaitPidFlag, WaitStatus};
use nix::unistd::{self, ForkResult, Pid};

use super::error::MountError;
use super::readiness::{self, Outcome, Reporter};
use crate::mountpoint::{self, State};

/// What the parent waits for: the mount at `mountpoint` live within `wait`;
/// `log` is named in what it says when the daemon fails.
pub(super) struct Watch {
    pub wait: Duration,
    pub mountpoint: PathBuf,
    pub log: Option<PathBuf>,
}

/// Run `daemon` in a child, reporting on the pipe; the parent returns once
/// it is live or has failed. `log_f` becomes the child's stderr; `lock` is
/// released when the parent exits, after the mount is live.
pub(super) fn background(
    daemon: impl FnOnce(&mut Reporter) -> Result<(), MountError>,
    watch: Watch,
    log_f: Option<std::fs::File>,
    lock: Option<std::fs::File>,
) -> Result<(), MountError> {
    let Watch {
        wait,
        mountpoint: mp,
        log,
    } = watch;
    let (rx, tx) = readiness::pipe().map_err(|e| MountError::Other(format!("pipe: {e}")))?;
    // SAFETY: no other thread exists yet (the runtime is built in the
    // child), so the child may do anything the parent could.
    match unsafe { unistd::fork() } {
        Err(e) => Err(MountError::Other(format!("fork: {}", io::Error::from(e)))),
        Ok(ForkResult::Child) => {
            drop((rx, lock));
            let code = child(daemon, tx, log_f);
            std::process::exit(code)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(tx);
            parent(child, rx, wait, &mp, log.as_deref())
        }
    }
}

/// The daemon: detach from the terminal and the caller's pipes (a start
/// script's output must not stay open because of us), then run.
fn child(
    daemon: impl FnOnce(&mut Reporter) -> Result<(), MountError>,
    tx: OwnedFd,
    log: Option<std::fs::File>,
) -> i32 {
    let _ = unistd::setsid();
    let _ = unistd::chdir("/");
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null");
    let err = log.or_else(|| null.as_ref().ok().and_then(|f| f.try_clone().ok()));
    if let (Ok(null), Some(err)) = (&null, &err) {
        // Onto the standard fds; panics then land in the log.
        let _ = unistd::dup2_stdin(null);
        let _ = unistd::dup2_stdout(null);
        let _ = unistd::dup2_stderr(err);
    }
    let mut reporter = Reporter::pipe(tx);
    match daemon(&mut reporter) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            reporter.failed(&e);
            e.exit().code().into()
        }
    }
}

/// Wait for the daemon's word. On a timeout, stop it and leave nothing mounted.
fn parent(
    pid: Pid,
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
            let _ = signal::kill(pid, Signal::SIGTERM);
            if reap(pid, Duration::from_secs(5)) == "still running" {
                let _ = signal::kill(pid, Signal::SIGKILL);
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
fn reap(pid: Pid, timeout: Duration) -> String {
    let end = std::time::Instant::now() + timeout;
    loop {
        match wait::waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                return format!("killed by signal {}", sig as i32)
            }
            Ok(WaitStatus::Exited(_, code)) => return format!("exit status {code}"),
            Err(_) => return "gone".into(),
            Ok(_) if std::time::Instant::now() >= end => return "still running".into(),
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn cleanup_dead(mp: &Path) {
    if let Some(entry) = mountpoint::mount_at(mp) {
        if mountpoint::probe(mp, entry.clone()) == State::Dead {
            let _ = mountpoint::unmount(&entry, true);
        }
    }
}
