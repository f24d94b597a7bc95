//! Commands on a running mount: `vaultfs status` and `vaultfs unmount`.

use std::io;
use std::path::Path;
use std::time::Duration;

use super::error::MountError;
use crate::cli::{self, StatusArgs, UnmountArgs};
use crate::env;
use crate::mountpoint::{self, MountEntry, PidFile, Shown, State, UnmountError};

/// `vaultfs status MOUNTPOINT [--wait D]`: one line and exit 0 when a live
/// vaultfs serves it, else the reason (not mounted, not vaultfs, a daemon
/// that does not answer, a stale mount). Without a mount point: this user's
/// vaultfs mounts, one line each. Never waits on a daemon: see `live_at`.
pub fn status(args: &StatusArgs) -> Result<(), MountError> {
    if args.mountpoint.is_none() && args.wait.is_none() {
        let uid = nix::unistd::getuid().as_raw();
        for m in mountpoint::vaultfs_mounts()
            .iter()
            .filter(|m| m.owner == Some(uid))
        {
            println!("{}", live_at(&m.target).unwrap_or_else(|e| e.to_string()));
        }
        return Ok(());
    }
    let path = cli::mountpoint(args.mountpoint.as_deref(), &env::process)?;
    let end = std::time::Instant::now() + args.wait.unwrap_or_default();
    loop {
        match live_at(&path) {
            Ok(line) => {
                println!("{line}");
                return Ok(());
            }
            Err(e) if std::time::Instant::now() >= end => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// The vaultfs mount at `path`, as the mount table shows it. The table,
/// not a stat, says what is there: a stat would wait for a stopped daemon
/// and, while waiting, keep the mount busy.
fn vaultfs_mount(path: &Path) -> Result<MountEntry, MountError> {
    match mountpoint::mount_at(path) {
        None => Err(MountError::NotMounted(path.to_path_buf())),
        Some(e) if !e.is_vaultfs() => Err(MountError::Mountpoint {
            path: path.to_path_buf(),
            message: format!("not a vaultfs mount ({})", e.fstype),
        }),
        Some(e) => Ok(e),
    }
}

/// What serves `path`, as one line, if a live vaultfs does. The mount table
/// and the pid file's lock say who should; a bounded probe (`probe`) says
/// whether it answers.
fn live_at(path: &Path) -> Result<String, MountError> {
    let not = |message: String| MountError::Mountpoint {
        path: path.to_path_buf(),
        message,
    };
    let entry = vaultfs_mount(path)?;
    let pid_file = PidFile::path_for(&env::process, path);
    let daemon = pid_file.as_deref().and_then(PidFile::read_live_info);
    // A pid file no daemon holds: the daemon died (a stat may still be
    // answered from the kernel's attribute cache, so it cannot tell).
    if daemon.is_none() && pid_file.is_some_and(|f| f.exists()) {
        return Err(not(STALE.into()));
    }
    match (mountpoint::probe(path, entry), daemon) {
        (State::Live, Some((pid, address))) => {
            Ok(format!("{}: live (pid {pid}, {address})", Shown(path)))
        }
        (State::Live, None) => Ok(format!("{}: live (daemon not recorded here)", Shown(path))),
        (_, Some((pid, _))) => Err(not(format!(
            "vaultfs (pid {pid}) does not answer (stopped?)"
        ))),
        (State::Unresponsive, None) => Err(not("its daemon does not answer (stopped?)".into())),
        (_, None) => Err(not(STALE.into())),
    }
}

const STALE: &str =
    "stale: its daemon is gone; `vaultfs unmount` or the next `vaultfs mount` removes it";

/// `vaultfs unmount`: unmount, then wait for the daemon to exit.
pub fn unmount(args: &UnmountArgs) -> Result<(), MountError> {
    let path = cli::mountpoint(args.mountpoint.as_deref(), &env::process)?;
    let pid_file = PidFile::path_for(&env::process, &path);
    let pid = pid_file.as_deref().and_then(PidFile::read_live);
    let fail = |source: io::Error, hint| MountError::Unmount {
        path: path.clone(),
        source,
        hint,
    };
    let entry = vaultfs_mount(&path)?;
    // Unmounting needs no answer from the daemon, so it is tried first; only
    // when busy is the daemon probed (bounded) to tell a dead mount, which
    // is detached at once, from one still in use.
    // Only the mount read from the table here is unmounted: if another one
    // is stacked over it meanwhile, that one is left alone.
    let io = |e: UnmountError| match e {
        UnmountError::Io(e) => e,
        e => io::Error::other(e.to_string()),
    };
    match mountpoint::unmount(&entry, args.lazy).map_err(io) {
        Ok(_) => {}
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => match mountpoint::probe(&path, entry.clone()) {
            // Its daemon is gone; only the kernel's entry is left.
            State::Dead => {
                mountpoint::unmount(&entry, true).map_err(|e| fail(io(e), ""))?;
            }
            State::Unresponsive => return Err(fail(
                e,
                " (a process is using it, and its daemon does not answer: stopped?; pass --lazy to detach it)",
            )),
            _ => return Err(fail(
                e,
                " (a process has a file open or its working directory there; close it, or pass --lazy)",
            )),
        },
        Err(e) => return Err(fail(e, "")),
    }
    // After a lazy detach the daemon lives until the last open file closes.
    if let Some(pid) = pid.filter(|_| !args.lazy) {
        if !mountpoint::wait_exit(pid, args.wait) {
            if mountpoint::is_stopped(pid) {
                return Err(MountError::TimedOut(format!(
                    "{} is unmounted, but its daemon (pid {pid}) is stopped: it exits once continued (kill -CONT {pid})",
                    path.display()
                )));
            }
            return Err(MountError::TimedOut(format!(
                "{} is unmounted, but its daemon (pid {pid}) did not exit within {}",
                path.display(),
                humantime::format_duration(args.wait)
            )));
        }
    }
    Ok(())
}
