//! Where the Vault token comes from, and holding it safely in memory.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use reqwest::header::HeaderValue;
use tokio::sync::watch;
use zeroize::Zeroizing;

use crate::env::Env;
use crate::mountpoint;

/// Where the token was found. Logged by name; the token never is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOrigin {
    /// `--token-file PATH`
    Flag(PathBuf),
    /// An environment variable (`VAULT_TOKEN`, `BAO_TOKEN`).
    Env(&'static str),
    /// `~/.vault-token`, as written by `vault login`.
    HomeFile(PathBuf),
}

impl TokenOrigin {
    pub fn file(&self) -> Option<&Path> {
        match self {
            TokenOrigin::Flag(p) | TokenOrigin::HomeFile(p) => Some(p),
            TokenOrigin::Env(_) => None,
        }
    }
}

impl std::fmt::Display for TokenOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenOrigin::Flag(p) => write!(f, "--token-file {}", p.display()),
            TokenOrigin::Env(v) => write!(f, "${v}"),
            TokenOrigin::HomeFile(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "no Vault token: set VAULT_TOKEN, pass --token-file, or run `vault login` to write ~/.vault-token"
    )]
    Missing,
    #[error("cannot read token file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file {0} is empty")]
    Empty(PathBuf),
    #[error("cannot read token file {path}: it is {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("token file {0} is larger than 64 KiB: not a token")]
    TooLarge(PathBuf),
    #[error("token file {0} is not text: not a token")]
    NotText(PathBuf),
    #[error("token file {0} could not be read within 2s")]
    Slow(PathBuf),
    #[error("token file {path} belongs to uid {owner}; run as root, vaultfs reads only root's own token files (chown root)")]
    NotOwned { path: PathBuf, owner: u32 },
    #[error(
        "token file {path} is writable by other users (mode {mode:04o}): refusing it (chmod go-w)"
    )]
    Writable { path: PathBuf, mode: u32 },
}

/// What identifies one version of a token file without reading it. Vault
/// Agent replaces the file (new inode); `vault login` rewrites it (new
/// mtime/size). ctime is left out on purpose: a rewrite that keeps size and
/// mtime is then only caught by the re-read on 403, which the tests rely on
/// to exercise that path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
        })
    }
}

/// The token, and the `X-Vault-Token` header value made from it once and
/// shared by every request: a header built per request would leave an
/// unwiped copy of the token in freed memory per request.
struct Held {
    token: Zeroizing<String>,
    /// `None` when the token cannot be a header value.
    header: Option<HeaderValue>,
}

impl Held {
    fn new(token: Zeroizing<String>) -> Held {
        let header = header_value(&token);
        Held { token, header }
    }
}

/// A header value whose bytes live in a zeroizing block: requests hold
/// clones of it (reference counts, not copies) and the block is wiped when
/// the last one is dropped, after the token changed. Marked sensitive: kept
/// out of HTTP/2 header compression tables and `Debug` output.
fn header_value(token: &str) -> Option<HeaderValue> {
    let owned = bytes::Bytes::from_owner(Zeroizing::new(token.as_bytes().to_vec()));
    let mut h = HeaderValue::from_maybe_shared(owned).ok()?;
    h.set_sensitive(true);
    Some(h)
}

/// The token in use. Files are re-read when they change and when Vault
/// answers 403 (Vault Agent and `vault login` rewrite them).
pub struct TokenSource {
    origin: TokenOrigin,
    token: RwLock<Held>,
    /// The token file's identity when last looked at (`None`: missing).
    stamp: Mutex<Option<Stamp>>,
    /// Bumped whenever the token changes; the renewal task watches it.
    generation: watch::Sender<u64>,
    /// Runs every run-time look at the token file.
    prober: Prober,
}

/// Every run-time touch of the token file (`stat`, open, read) runs on a
/// thread of this, given [`READ_TIMEOUT`]: a file on a hung filesystem
/// (a stopped FUSE daemon, a dead NFS server) must not hold a thread that
/// serves the kernel or the signal path. At most one such thread exists at
/// a time: while one has not answered, later looks are skipped at once
/// (the token in hand is kept) instead of stacking stuck threads.
#[derive(Default)]
struct Prober {
    /// A look is in flight (set by the caller, cleared by its thread).
    busy: Arc<AtomicBool>,
    /// A hang was logged; cleared once a look answers again.
    hung_logged: AtomicBool,
}

/// Why a look at the token file was not made or not answered.
#[derive(Debug, PartialEq, Eq)]
enum Unanswered {
    /// An earlier look is still in flight.
    Busy,
    /// This look did not answer within [`READ_TIMEOUT`].
    TimedOut,
}

impl Prober {
    fn run<T: Send + 'static>(
        &self,
        origin: &TokenOrigin,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Unanswered> {
        if self.busy.swap(true, Ordering::AcqRel) {
            return Err(Unanswered::Busy);
        }
        // Cleared when `f` returns, or when it is dropped unrun (no thread).
        let idle = Idle(Arc::clone(&self.busy));
        let look = move || {
            let _idle = idle;
            f()
        };
        match mountpoint::bounded("vaultfs-token", READ_TIMEOUT, look) {
            Some(got) => {
                self.hung_logged.store(false, Ordering::Relaxed);
                Ok(got)
            }
            None => {
                if !self.hung_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        source = %origin,
                        "token file did not answer within 2s (hung filesystem?): keeping the current token"
                    );
                }
                Err(Unanswered::TimedOut)
            }
        }
    }
}

/// Marks the [`Prober`] idle when dropped.
struct Idle(Arc<AtomicBool>);

impl Drop for Idle {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl std::fmt::Debug for TokenSource {
    /// The origin only: a stray `{:?}` must not log the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// First that is set wins: `--token-file`, `VAULT_TOKEN`, `BAO_TOKEN`,
    /// `~/.vault-token`.
    pub fn resolve(
        token_file: Option<&Path>,
        env: Env<'_>,
        home: Option<&Path>,
    ) -> Result<TokenSource, TokenError> {
        if let Some(p) = token_file {
            return Self::from_file(TokenOrigin::Flag(p.to_path_buf()));
        }
        for var in ["VAULT_TOKEN", "BAO_TOKEN"] {
            // Zeroizing: the untrimmed copy is dropped here, wiped.
            if let Some(t) = env(var)
                .map(Zeroizing::new)
                .filter(|t| !t.trim().is_empty())
            {
                return Ok(Self::fixed(TokenOrigin::Env(var), t.trim().to_string()));
            }
        }
        if let Some(home) = home {
            let p = home.join(".vault-token");
            let q = p.clone();
            match mountpoint::bounded(mountpoint::PROBE, READ_TIMEOUT, move || q.exists()) {
                Some(true) => return Self::from_file(TokenOrigin::HomeFile(p)),
                Some(false) => {}
                None => return Err(TokenError::Slow(p)),
            }
        }
        Err(TokenError::Missing)
    }

    pub fn fixed(origin: TokenOrigin, token: String) -> TokenSource {
        TokenSource {
            origin,
            token: RwLock::new(Held::new(Zeroizing::new(token))),
            stamp: Mutex::new(None),
            generation: watch::Sender::new(0),
            prober: Prober::default(),
        }
    }

    /// At start, once: the whole look (stat, open, read) is bounded, so a
    /// token file on a hung filesystem is refused within [`READ_TIMEOUT`].
    fn from_file(origin: TokenOrigin) -> Result<TokenSource, TokenError> {
        let path = origin.file().expect("file origin").to_path_buf();
        let p = path.clone();
        let (stamp, token) = mountpoint::bounded(mountpoint::PROBE, READ_TIMEOUT, move || {
            // Stamp first: a rewrite racing the read is then seen as a change.
            let stamp = Stamp::of(&p);
            read_unbounded(&p).map(|t| (stamp, t))
        })
        .unwrap_or_else(|| Err(TokenError::Slow(path)))?;
        Ok(TokenSource {
            origin,
            token: RwLock::new(Held::new(token)),
            stamp: Mutex::new(stamp),
            generation: watch::Sender::new(0),
            prober: Prober::default(),
        })
    }

    pub fn origin(&self) -> &TokenOrigin {
        &self.origin
    }

    /// The token itself; requests use [`TokenSource::header`].
    #[cfg(test)]
    pub fn current(&self) -> Zeroizing<String> {
        self.token.read().expect("token lock").token.clone()
    }

    /// The `X-Vault-Token` value for the current token, built once per
    /// token; `None` when the token cannot be sent as a header.
    pub fn header(&self) -> Option<HeaderValue> {
        self.token.read().expect("token lock").header.clone()
    }

    /// How many times the token has changed since start.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Wakes when the token changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Re-read a token file. Returns true when the token changed.
    pub fn reload(&self) -> Result<bool, TokenError> {
        let Some(path) = self.origin.file() else {
            return Ok(false);
        };
        let p = path.to_path_buf();
        let (stamp, new) = self
            .prober
            .run(&self.origin, move || (Stamp::of(&p), read_unbounded(&p)))
            .map_err(|_| TokenError::Slow(path.to_path_buf()))?;
        *self.stamp.lock().expect("stamp lock") = stamp;
        Ok(self.replace(new?))
    }

    /// Use `new`; true when it differs from the token in use.
    fn replace(&self, new: Zeroizing<String>) -> bool {
        let mut cur = self.token.write().expect("token lock");
        if cur.token == new {
            return false;
        }
        *cur = Held::new(new);
        drop(cur);
        self.generation.send_modify(|g| *g += 1);
        true
    }

    /// Before a request: re-read the token file if it looks different from
    /// last time (one `stat`, no read). A file that vanished, cannot be
    /// read or does not answer keeps the current token, with one warning
    /// per change.
    pub fn refresh_if_changed(&self) {
        let Some(path) = self.origin.file() else {
            return;
        };
        let last = *self.stamp.lock().expect("stamp lock");
        let p = path.to_path_buf();
        let Ok((now, read)) = self.prober.run(&self.origin, move || {
            let now = Stamp::of(&p);
            let read = (now.is_some() && now != last).then(|| read_unbounded(&p));
            (now, read)
        }) else {
            return;
        };
        {
            let mut stamp = self.stamp.lock().expect("stamp lock");
            if *stamp == now {
                return;
            }
            *stamp = now;
        }
        match read {
            None => {
                tracing::warn!(source = %self.origin, "token file is gone: keeping the current token")
            }
            Some(Ok(new)) => {
                if self.replace(new) {
                    tracing::info!(source = %self.origin, "token file changed: using the new token")
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "keeping the current token"),
        }
    }

    /// After a 403 answered to a request made at `generation`: re-read the
    /// file. True when a different token is now in use, so the request is
    /// worth one retry (another request may have re-read it meanwhile).
    pub fn reload_after_denied(&self, generation: u64) -> bool {
        match self.reload() {
            Ok(true) => {
                tracing::info!(source = %self.origin, "permission denied: token file holds a new token, retrying with it");
                true
            }
            Ok(false) => self.generation() != generation,
            Err(TokenError::Slow(_)) => self.generation() != generation,
            Err(e) => {
                tracing::warn!(error = %e, "permission denied, and the token file cannot be re-read");
                false
            }
        }
    }
}

/// The most a token file may hold. Vault tokens are a few hundred bytes at
/// most; the cap keeps a wrong file (a log, an image) from being read whole.
pub const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// How long a look at a token file (stat, open, read) may take. It runs on
/// a thread of its own: a file on a hung filesystem must not hold a thread
/// that serves the kernel. On time out the current token is kept.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Read a token file: a regular file (symlinks are followed, as Vault Agent
/// sinks and Kubernetes secret volumes use them), opened non-blocking so a
/// FIFO swapped in between the checks cannot block the open, read up to
/// [`MAX_TOKEN_FILE`]. As root, the file must be root's and closed to
/// writing by others, as the pid and log files are: a token another user
/// can write would choose what the daemon serves. Callers bound it in time
/// ([`Prober`], or [`crate::mountpoint::bounded`] at start).
fn read_unbounded(path: &Path) -> Result<Zeroizing<String>, TokenError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let unreadable = |source| TokenError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    // stat, not open, first: opening a socket fails, a device may block.
    let m = std::fs::metadata(path).map_err(unreadable)?;
    check_token_file(path, &m)?;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(unreadable)?;
    // What was opened, which may not be what was looked at.
    check_token_file(path, &f.metadata().map_err(unreadable)?)?;
    let mut raw = Zeroizing::new(Vec::with_capacity(256));
    f.take(MAX_TOKEN_FILE + 1)
        .read_to_end(&mut raw)
        .map_err(unreadable)?;
    if raw.len() as u64 > MAX_TOKEN_FILE {
        return Err(TokenError::TooLarge(path.to_path_buf()));
    }
    let text = std::str::from_utf8(&raw).map_err(|_| TokenError::NotText(path.to_path_buf()))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(TokenError::Empty(path.to_path_buf()));
    }
    Ok(Zeroizing::new(t.to_string()))
}

fn check_token_file(path: &Path, m: &std::fs::Metadata) -> Result<(), TokenError> {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    let kind = if t.is_file() {
        None
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        Some("not a regular file")
    };
    if let Some(kind) = kind {
        return Err(TokenError::NotRegular {
            path: path.to_path_buf(),
            kind,
        });
    }
    if !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    if m.uid() != 0 {
        return Err(TokenError::NotOwned {
            path: path.to_path_buf(),
            owner: m.uid(),
        });
    }
    if m.mode() & 0o022 != 0 {
        return Err(TokenError::Writable {
            path: path.to_path_buf(),
            mode: m.mode() & 0o7777,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_of_sources() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".vault-token"), "home-tok\n").unwrap();
        let flag = dir.path().join("flag");
        std::fs::write(&flag, " flag-tok \n").unwrap();
        let env_both = |k: &str| match k {
            "VAULT_TOKEN" => Some("v".to_string()),
            "BAO_TOKEN" => Some("b".to_string()),
            _ => None,
        };
        let env_bao = |k: &str| (k == "BAO_TOKEN").then(|| "b".to_string());
        let env_none = |_: &str| None;

        let t = TokenSource::resolve(Some(&flag), &env_both, Some(dir.path())).unwrap();
        assert_eq!(t.current().as_str(), "flag-tok");
        let t = TokenSource::resolve(None, &env_both, Some(dir.path())).unwrap();
        assert_eq!(t.current().as_str(), "v");
        assert_eq!(t.origin(), &TokenOrigin::Env("VAULT_TOKEN"));
        let t = TokenSource::resolve(None, &env_bao, Some(dir.path())).unwrap();
        assert_eq!(t.current().as_str(), "b");
        let t = TokenSource::resolve(None, &env_none, Some(dir.path())).unwrap();
        assert_eq!(t.current().as_str(), "home-tok");
        assert!(matches!(
            TokenSource::resolve(None, &env_none, Some(&dir.path().join("nope"))),
            Err(TokenError::Missing)
        ));
    }

    #[test]
    fn debug_hides_the_token() {
        let t = TokenSource::fixed(TokenOrigin::Env("VAULT_TOKEN"), "hvs.SECRET".into());
        let d = format!("{t:?}");
        assert!(d.contains("VAULT_TOKEN") && !d.contains("SECRET"), "{d}");
    }

    #[test]
    fn header_is_built_once_per_token() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "one").unwrap();
        let t = TokenSource::resolve(Some(&f), &|_| None, None).unwrap();
        let (a, b) = (t.header().unwrap(), t.header().unwrap());
        assert!(a.is_sensitive());
        assert_eq!(a.as_bytes(), b"one");
        // The same bytes, not a copy per request.
        assert_eq!(a.as_bytes().as_ptr(), b.as_bytes().as_ptr());
        std::fs::write(&f, "two").unwrap();
        assert!(t.reload().unwrap());
        let c = t.header().unwrap();
        assert_eq!(c.as_bytes(), b"two");
        assert_eq!(
            c.as_bytes().as_ptr(),
            t.header().unwrap().as_bytes().as_ptr()
        );
        let bad = TokenSource::fixed(TokenOrigin::Env("VAULT_TOKEN"), "a\nb".into());
        assert!(bad.header().is_none());
    }

    #[test]
    fn only_regular_files_are_read_and_never_block() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let sock = dir.path().join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let started = std::time::Instant::now();
        for (path, kind) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a character device"),
            (dir.path(), "a directory"),
            (sock.as_path(), "a socket"),
        ] {
            let e = TokenSource::resolve(Some(path), &|_| None, None).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, TokenError::NotRegular { .. }), "{msg}");
            assert!(
                msg.contains(kind) && msg.contains(&*path.to_string_lossy()),
                "{msg}"
            );
            assert!(!msg.contains('\n'), "{msg}");
        }
        assert!(started.elapsed() < Duration::from_secs(1));

        // Through a symlink, as Kubernetes secret volumes and agent sinks.
        let real = dir.path().join("real");
        std::fs::write(&real, "tok\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let t = TokenSource::resolve(Some(&link), &|_| None, None).unwrap();
        assert_eq!(t.current().as_str(), "tok");

        // A FIFO swapped in at run time: the token in hand is kept.
        std::fs::remove_file(&real).unwrap();
        std::fs::rename(&fifo, &real).unwrap();
        assert!(matches!(t.reload(), Err(TokenError::NotRegular { .. })));
        t.refresh_if_changed();
        assert_eq!(t.current().as_str(), "tok");

        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_TOKEN_FILE as usize + 1]).unwrap();
        assert!(matches!(
            TokenSource::resolve(Some(&big), &|_| None, None),
            Err(TokenError::TooLarge(_))
        ));
        std::fs::write(&big, vec![b'a'; MAX_TOKEN_FILE as usize]).unwrap();
        assert!(TokenSource::resolve(Some(&big), &|_| None, None).is_ok());
    }

    #[test]
    fn as_root_a_token_file_must_be_roots_and_closed_to_writers() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "tok").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(TokenSource::resolve(Some(&f), &|_| None, None).is_ok());
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o622)).unwrap();
        let e = TokenSource::resolve(Some(&f), &|_| None, None).unwrap_err();
        assert!(matches!(e, TokenError::Writable { mode: 0o622, .. }), "{e}");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::chown(&f, Some(65534), None).unwrap();
        let e = TokenSource::resolve(Some(&f), &|_| None, None).unwrap_err();
        assert!(
            matches!(e, TokenError::NotOwned { owner: 65534, .. }),
            "{e}"
        );
    }

    #[test]
    fn reload_sees_rewrite() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "one").unwrap();
        let t = TokenSource::resolve(Some(&f), &|_| None, None).unwrap();
        assert!(!t.reload().unwrap());
        std::fs::write(&f, "two\n").unwrap();
        assert!(t.reload().unwrap());
        assert_eq!(t.current().as_str(), "two");
        assert_eq!(t.generation(), 1);
    }

    #[test]
    fn refresh_sees_replaced_file_and_survives_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "one").unwrap();
        let t = TokenSource::resolve(Some(&f), &|_| None, None).unwrap();
        t.refresh_if_changed();
        assert_eq!(t.generation(), 0);
        // Replaced the way Vault Agent does it: new file, rename over.
        let tmp = dir.path().join("tok.new");
        std::fs::write(&tmp, "one-rotated").unwrap();
        std::fs::rename(&tmp, &f).unwrap();
        t.refresh_if_changed();
        assert_eq!(t.current().as_str(), "one-rotated");
        assert_eq!(t.generation(), 1);
        std::fs::remove_file(&f).unwrap();
        t.refresh_if_changed();
        assert_eq!(t.current().as_str(), "one-rotated");
        // A 403 seen by a request made before another one re-read the file
        // still earns a retry.
        std::fs::write(&f, "three").unwrap();
        assert!(t.reload_after_denied(1));
        assert!(t.reload_after_denied(1));
        assert!(!t.reload_after_denied(2));
    }
}
