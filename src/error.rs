//! Error types, and the one place where they become errno values.

use std::time::Duration;

/// What went wrong talking to Vault. Cloneable so one failed request can be
/// handed to every caller that was waiting on it (single-flight).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("permission denied by Vault")]
    Forbidden,
    #[error("not found in Vault")]
    NotFound,
    #[error("Vault is sealed")]
    Sealed,
    /// A cluster between leaders: the node answered 500 "active cluster
    /// node not found" (a standby during an election).
    #[error("Vault has no active node (leader election under way)")]
    NoLeader,
    #[error("Vault rate-limited the request (HTTP 429)")]
    RateLimited,
    #[error("Vault answered HTTP {status}: {message}")]
    Http { status: u16, message: String },
    #[error("no answer from Vault within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect to Vault: {0}")]
    Connect(String),
    /// The connection broke after the request went out.
    #[error("connection to Vault failed: {0}")]
    Transport(String),
    #[error("TLS error talking to Vault: {0}")]
    Tls(String),
    #[error("unexpected response from Vault: {0}")]
    BadResponse(String),
    #[error("response from Vault larger than {0} bytes")]
    TooLarge(usize),
    #[error("Vault rejected the token: {0}")]
    BadToken(String),
    /// A `--kv` name that is no KV mount this token can see: Vault denied
    /// its description (`denied`: no such mount, or one the token may not
    /// read), or it is another kind of secrets engine.
    #[error("--kv {name:?} names no KV mount this token can see ({why})")]
    NoKvMount {
        name: String,
        why: String,
        denied: bool,
    },
    /// A request that would not reach the path it names (a `.`, `..`,
    /// empty or NUL segment); never sent.
    #[error("refused to ask Vault for {0}: the path has a '.', '..', empty or NUL segment")]
    UnsafePath(String),
}

impl VaultError {
    /// Errors that say nothing about the data itself: the server was away, slow
    /// or overloaded. Only these may be retried or answered from a stale cache.
    pub fn is_transient(&self) -> bool {
        match self {
            VaultError::Sealed
            | VaultError::NoLeader
            | VaultError::RateLimited
            | VaultError::Timeout(_)
            | VaultError::Connect(_)
            | VaultError::Transport(_) => true,
            // 307: a standby that cannot forward a write (`renew-self`) to
            // the active node yet, right after a failover, redirects to it;
            // redirects are not followed (the token stays with the address
            // given), and the standby forwards again once it knows the new
            // leader (docs/reliability.md, "HA clusters").
            VaultError::Http { status, .. } => *status >= 500 || *status == 307,
            _ => false,
        }
    }

    /// Worth another try within the deadline: the request was not served and
    /// may be on a second attempt. (A timeout has used the deadline up.)
    pub fn is_retryable(&self) -> bool {
        match self {
            VaultError::Sealed
            | VaultError::NoLeader
            | VaultError::RateLimited
            | VaultError::Connect(_)
            | VaultError::Transport(_) => true,
            VaultError::Http { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// Says Vault as a whole is away, not that one request went wrong: the
    /// client then fails fast until a probe gets an answer. 429 is not one
    /// (Vault is up and asks us to slow down), nor is a plain 500.
    pub fn is_outage(&self) -> bool {
        match self {
            VaultError::Sealed
            | VaultError::NoLeader
            | VaultError::Timeout(_)
            | VaultError::Connect(_) => true,
            VaultError::Http { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }

    /// Definite answers about the data (cacheable for the TTL like a value).
    pub fn is_definite(&self) -> bool {
        matches!(
            self,
            VaultError::Forbidden
                | VaultError::NotFound
                | VaultError::NoKvMount { denied: true, .. }
        )
    }
}

/// Errors of filesystem operations, whatever their cause.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FsError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error("no such entry")]
    NoEntry,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("read-only filesystem")]
    ReadOnly,
    #[error("stale file handle")]
    BadHandle,
    /// A folder deeper than the path budget (`tree::MAX_PATH`).
    #[error("path too long")]
    PathTooLong,
    /// The operation outlived its deadline (`--timeout`): a backstop for
    /// chains of Vault requests, each with its own.
    #[error("operation took longer than {0:?}")]
    Timeout(Duration),
    /// An operation this filesystem leaves to the kernel: told so once, the
    /// kernel stops asking for the life of the mount (opens, xattrs).
    #[error("left to the kernel")]
    NotImplemented,
}

impl FsError {
    /// The single mapping from errors to errno (see docs/semantics.md).
    pub fn errno(&self) -> libc::c_int {
        match self {
            FsError::Vault(VaultError::Forbidden | VaultError::NoKvMount { denied: true, .. }) => {
                libc::EACCES
            }
            FsError::Vault(VaultError::NotFound | VaultError::UnsafePath(_)) | FsError::NoEntry => {
                libc::ENOENT
            }
            FsError::Vault(_) | FsError::Timeout(_) => libc::EIO,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::ReadOnly => libc::EROFS,
            FsError::BadHandle => libc::EBADF,
            FsError::PathTooLong => libc::ENAMETOOLONG,
            FsError::NotImplemented => libc::ENOSYS,
        }
    }
}

/// The symbolic name of an errno an operation can end with (the read
/// audit's `result`).
pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EROFS => "EROFS",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EISDIR => "EISDIR",
        libc::ENOTDIR => "ENOTDIR",
        libc::ESTALE => "ESTALE",
        libc::EBADF => "EBADF",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENOSYS => "ENOSYS",
        _ => return format!("errno {e}"),
    };
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(FsError::ReadOnly.errno()), "EROFS");
        assert_eq!(errno_name(12345), "errno 12345");
    }

    #[test]
    fn errno_mapping() {
        assert_eq!(FsError::from(VaultError::Forbidden).errno(), libc::EACCES);
        assert_eq!(FsError::from(VaultError::NotFound).errno(), libc::ENOENT);
        let outside = VaultError::UnsafePath("\"a/..\"".into());
        assert_eq!(FsError::from(outside).errno(), libc::ENOENT);
        assert_eq!(FsError::from(VaultError::Sealed).errno(), libc::EIO);
        assert_eq!(
            FsError::from(VaultError::Http {
                status: 500,
                message: String::new()
            })
            .errno(),
            libc::EIO
        );
        assert_eq!(FsError::ReadOnly.errno(), libc::EROFS);
        let late = FsError::Timeout(Duration::from_secs(10));
        assert_eq!(late.errno(), libc::EIO);
        assert_eq!(FsError::NotImplemented.errno(), libc::ENOSYS);
    }

    #[test]
    fn transient_classification() {
        assert!(VaultError::Timeout(Duration::from_secs(1)).is_transient());
        assert!(VaultError::Http {
            status: 503,
            message: String::new()
        }
        .is_transient());
        assert!(!VaultError::Forbidden.is_transient());
        assert!(!VaultError::NotFound.is_transient());
        assert!(!VaultError::BadResponse(String::new()).is_transient());
        assert!(VaultError::Transport(String::new()).is_transient());
        // A standby's redirect during a failover: renewal tries again.
        assert!(VaultError::Http {
            status: 307,
            message: String::new()
        }
        .is_transient());
        assert!(!VaultError::Http {
            status: 301,
            message: String::new()
        }
        .is_transient());
    }

    #[test]
    fn retry_and_outage_classification() {
        let http = |status| VaultError::Http {
            status,
            message: String::new(),
        };
        for s in [502, 503, 504] {
            assert!(http(s).is_retryable() && http(s).is_outage(), "{s}");
        }
        assert!(!http(500).is_retryable() && !http(500).is_outage());
        assert!(VaultError::RateLimited.is_retryable() && !VaultError::RateLimited.is_outage());
        assert!(VaultError::Sealed.is_retryable() && VaultError::Sealed.is_outage());
        let e = VaultError::NoLeader;
        assert!(e.is_retryable() && e.is_outage() && e.is_transient());
        // The deadline is spent: no retry, but Vault is down.
        let t = VaultError::Timeout(Duration::from_secs(1));
        assert!(!t.is_retryable() && t.is_outage());
        for e in [
            VaultError::Forbidden,
            VaultError::NotFound,
            VaultError::TooLarge(1),
            VaultError::UnsafePath(String::new()),
        ] {
            assert!(!e.is_retryable() && !e.is_outage(), "{e}");
        }
    }
}
