//! Why a command failed, and the exit status each failure maps to.

use std::io;
use std::path::PathBuf;

use crate::auth::TokenError;
use crate::cli;
use crate::error::VaultError;
use crate::exit::Exit;
use crate::mountpoint::Shown;
use crate::private::PrivateError;
use crate::tls::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Cli(#[from] cli::CliError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("token from {origin} was rejected by Vault at {addr}: {source}")]
    TokenRejected {
        origin: String,
        addr: String,
        source: VaultError,
    },
    #[error("cannot reach Vault at {addr}: {source}")]
    Unreachable { addr: String, source: VaultError },
    #[error("cannot list KV mounts at {addr}: {source}")]
    Mounts { addr: String, source: VaultError },
    #[error("mountpoint {}: {message}", Shown(path))]
    Mountpoint { path: PathBuf, message: String },
    /// `message`: FUSE's error with what to do about it ([`fuse_access`]).
    #[error("cannot mount at {}: {message}", Shown(path))]
    Fuse { path: PathBuf, message: String },
    #[error(
        "{}: the mount came up but its root cannot be listed: {source}",
        Shown(path)
    )]
    NotReady { path: PathBuf, source: io::Error },
    #[error(
        "{} is already mounted by vaultfs{pid}{why}; run `vaultfs unmount {}` first",
        Shown(path),
        Shown(path)
    )]
    AlreadyMounted {
        path: PathBuf,
        pid: String,
        why: &'static str,
    },
    #[error("nothing is mounted at {}", Shown(.0))]
    NotMounted(PathBuf),
    #[error("cannot unmount {}: {source}{hint}", Shown(path))]
    Unmount {
        path: PathBuf,
        source: io::Error,
        hint: &'static str,
    },
    #[error("cannot open the log file: {0}")]
    Log(PrivateError),
    #[error("cannot open the audit file: {0}")]
    Audit(PrivateError),
    /// A failure the background daemon reported through the pipe, verbatim,
    /// with the status it maps to there.
    #[error("{message}")]
    Daemon { exit: Exit, message: String },
    /// Not done within the time given (`--wait`).
    #[error("{0}")]
    TimedOut(String),
    /// A command line mount(8) passed that cannot be read.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Other(String),
}

impl MountError {
    /// The status for a failure: the single mapping from error to code.
    pub fn exit(&self) -> Exit {
        match self {
            MountError::Cli(_) | MountError::Config(_) | MountError::Usage(_) => Exit::Usage,
            MountError::Token(_) | MountError::TokenRejected { .. } => Exit::Token,
            MountError::Unreachable { .. } => Exit::Unreachable,
            MountError::Mounts { source, .. } => match source {
                VaultError::BadToken(_) | VaultError::Forbidden => Exit::Token,
                _ => Exit::Unreachable,
            },
            MountError::Mountpoint { .. }
            | MountError::AlreadyMounted { .. }
            | MountError::NotMounted(_)
            | MountError::Unmount { .. } => Exit::Mountpoint,
            MountError::Fuse { .. } => Exit::Fuse,
            MountError::NotReady { source, .. } => {
                if source.kind() == std::io::ErrorKind::TimedOut {
                    Exit::Timeout
                } else {
                    Exit::Fuse
                }
            }
            MountError::TimedOut(_) => Exit::Timeout,
            MountError::Daemon { exit, .. } => *exit,
            MountError::Log(_) | MountError::Audit(_) | MountError::Other(_) => Exit::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_denied_is_a_token_problem_and_list_failed_an_outage() {
        let mounts = |source| MountError::Mounts {
            addr: String::new(),
            source,
        };
        assert_eq!(mounts(VaultError::Forbidden).exit(), Exit::Token);
        assert_eq!(mounts(VaultError::Sealed).exit(), Exit::Unreachable);
        let late = MountError::NotReady {
            path: "/m".into(),
            source: std::io::ErrorKind::TimedOut.into(),
        };
        assert_eq!(late.exit(), Exit::Timeout);
    }
}
