//! Telling whoever started us that the mount is live: the parent of a
//! background daemon (through a pipe), and systemd (`NOTIFY_SOCKET`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::error::MountError;
use crate::exit::Exit;

const READY: &str = "READY";
const ERROR: &str = "ERROR ";

/// A pipe whose ends survive fork but not exec. (`std::io::pipe` needs
/// Rust 1.87, newer than our rust-version.)
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// The daemon's side: says once whether the mount came up.
#[derive(Debug, Default)]
pub struct Reporter {
    pipe: Option<File>,
}

impl Reporter {
    /// Foreground: nobody waits on a pipe.
    pub fn none() -> Reporter {
        Reporter { pipe: None }
    }

    pub fn pipe(fd: OwnedFd) -> Reporter {
        Reporter {
            pipe: Some(File::from(fd)),
        }
    }

    /// The mount is live. Fails (EPIPE) when the parent has gone away, e.g.
    /// the user pressed ^C while waiting: the caller should then unmount.
    pub fn ready(&mut self) -> io::Result<()> {
        self.send(READY)
    }

    /// The mount failed with `e`, said on one line; the parent exits with
    /// its status.
    pub fn failed(&mut self, e: &MountError) {
        let msg = one_line(&e.to_string());
        let _ = self.send(&format!("{ERROR}{} {msg}", e.exit().code()));
    }

    fn send(&mut self, line: &str) -> io::Result<()> {
        match self.pipe.take() {
            Some(mut f) => f.write_all(format!("{line}\n").as_bytes()),
            None => Ok(()),
        }
    }
}

fn one_line(s: &str) -> String {
    s.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// What the parent learned.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Ready,
    Failed(Exit, String),
    /// The pipe closed without a word: the daemon died.
    Vanished,
    TimedOut,
}

/// The parent's side: wait up to `timeout` for the daemon's one line.
pub fn wait(fd: OwnedFd, timeout: Duration) -> Outcome {
    let end = Instant::now() + timeout;
    let mut f = File::from(fd);
    let mut buf = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Outcome::TimedOut;
        }
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        let ms = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        match poll(&mut [PollFd::new(f.as_fd(), PollFlags::POLLIN)], ms) {
            Err(Errno::EINTR) | Ok(0) => continue,
            Err(_) => return Outcome::Vanished,
            Ok(_) => {}
        }
        let mut chunk = [0u8; 1024];
        match f.read(&mut chunk) {
            Ok(0) => return parse(&buf).unwrap_or(Outcome::Vanished),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if let Some(o) = parse(&buf) {
                    return o;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Outcome::Vanished,
        }
    }
}

fn parse(buf: &[u8]) -> Option<Outcome> {
    let line = String::from_utf8_lossy(buf);
    let line = line.split_once('\n')?.0;
    let failed = line.strip_prefix(ERROR).and_then(|rest| {
        let (code, msg) = rest.split_once(' ')?;
        Some((Exit::from_code(code.parse().ok()?)?, msg))
    });
    Some(match failed {
        Some((exit, msg)) => Outcome::Failed(exit, msg.to_string()),
        None if line == READY => Outcome::Ready,
        None => Outcome::Failed(
            Exit::Failure,
            format!("unexpected message from the daemon: {line:?}"),
        ),
    })
}

/// Send `state` (e.g. `READY=1`) to the service manager when `NOTIFY_SOCKET`
/// is set; a no-op otherwise. A leading `@` names an abstract socket.
/// Kept by hand: the sd-notify crate (0.5) connects to NOTIFY_SOCKET as a
/// path, so an abstract `@` socket (which sd_notify(3) allows; tests/e2e/lifecycle.rs
/// uses one) fails with it, and it reads only the process environment.
pub fn sd_notify(env: crate::env::Env<'_>, state: &str) -> io::Result<()> {
    let Some(path) = env("NOTIFY_SOCKET").filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let addr = match path.strip_prefix('@') {
        Some(name) => SocketAddr::from_abstract_name(name.as_bytes())?,
        None => SocketAddr::from_pathname(&path)?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_round_trip() {
        let (r, w) = pipe().unwrap();
        let mut rep = Reporter::pipe(w);
        rep.ready().unwrap();
        // Said once: the pipe is given up with the answer.
        assert!(rep.pipe.is_none());
        assert_eq!(wait(r, Duration::from_secs(5)), Outcome::Ready);

        let (r, w) = pipe().unwrap();
        let e = MountError::NotReady {
            path: "/m".into(),
            source: io::Error::other("token rejected\nby Vault"),
        };
        Reporter::pipe(w).failed(&e);
        assert_eq!(
            wait(r, Duration::from_secs(5)),
            Outcome::Failed(
                Exit::Fuse,
                "/m: the mount came up but its root cannot be listed: token rejected; by Vault"
                    .into()
            )
        );

        let (r, w) = pipe().unwrap();
        drop(w);
        assert_eq!(wait(r, Duration::from_secs(5)), Outcome::Vanished);

        let (r, _w) = pipe().unwrap();
        assert_eq!(wait(r, Duration::from_millis(50)), Outcome::TimedOut);
    }

    #[test]
    fn ready_fails_when_parent_is_gone() {
        let (r, w) = pipe().unwrap();
        drop(r);
        assert!(Reporter::pipe(w).ready().is_err());
    }

    #[test]
    fn notify_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&p).unwrap();
        let ps = p.to_string_lossy().to_string();
        let env = |k: &str| (k == "NOTIFY_SOCKET").then(|| ps.clone());
        sd_notify(&env, "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = sock.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        // Unset: nothing to do, no error.
        sd_notify(&|_| None, "READY=1").unwrap();
    }
}
