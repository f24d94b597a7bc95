//! Exit statuses: one code per kind of failure, so a start script, a
//! service manager or mount(8)'s caller can tell "fix the token" from "wait
//! for Vault" from "fix the mount point" without parsing the message. The
//! one mapping from a failure to a code is `MountError::exit`; the man
//! page's EXIT STATUS section is rendered from [`Exit::ALL`].
//!
//! The codes are small and distinct, as rclone's and gocryptfs's are, and 2
//! is clap's own code for a bad command line, so every usage error shares it.

use std::process::ExitCode;

/// Each status's code is its discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    Failure = 1,
    Usage = 2,
    Unreachable = 3,
    Token = 4,
    Fuse = 5,
    Mountpoint = 6,
    Timeout = 7,
}

impl Exit {
    /// Every status, in code order (the man page lists them so).
    pub const ALL: [Exit; 8] = [
        Exit::Success,
        Exit::Failure,
        Exit::Usage,
        Exit::Unreachable,
        Exit::Token,
        Exit::Fuse,
        Exit::Mountpoint,
        Exit::Timeout,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Exit> {
        Exit::ALL.into_iter().find(|e| e.code() == code)
    }

    /// One sentence for the man page.
    pub fn meaning(self) -> &'static str {
        match self {
            Exit::Success => {
                "Success: the mount is live (mount), unmounted and its daemon gone (unmount), \
                 live (status), or the daemon was stopped by a signal or an unmount."
            }
            Exit::Failure => {
                "Any other failure: the log file cannot be opened, the daemon died before the \
                 mount was live, an output cannot be written."
            }
            Exit::Usage => {
                "Usage: an unknown flag or subcommand, a bad value (flag, mount option or \
                 environment variable), or a CA or client certificate file that cannot be used."
            }
            Exit::Unreachable => {
                "Vault cannot be reached or does not answer as Vault: connection refused, a TLS \
                 error (an untrusted certificate), sealed, no leader, an unexpected answer."
            }
            Exit::Token => {
                "No usable token: none found, the token file cannot be read or is empty, or \
                 Vault rejected the token (or denied it the list of KV mounts)."
            }
            Exit::Fuse => {
                "FUSE is not available or refused the mount: no /dev/fuse, no fusermount3, not \
                 permitted; or the mount came up but its root cannot be listed."
            }
            Exit::Mountpoint => {
                "A mount point problem: not a directory, cannot be created, another filesystem \
                 or a live vaultfs is mounted there, its lock cannot be taken; for unmount and \
                 status: nothing (or no live vaultfs) is mounted there, or it is busy."
            }
            Exit::Timeout => {
                "Timed out: the mount was not live within --wait (the half-started daemon is \
                 stopped and nothing is left mounted), or after unmount the daemon did not exit \
                 within --wait."
            }
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_round_trip() {
        for (i, e) in Exit::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(e.code()), i, "{e:?} out of order");
            assert_eq!(Exit::from_code(e.code()), Some(e));
        }
        assert_eq!(Exit::from_code(8), None);
    }
}
