//! Log setup. Our own log lines never carry a token or a value; the HTTP and
//! TLS crates below us are capped at INFO whatever RUST_LOG says, because
//! their debug and trace output can include headers (the token) and bodies.
//!
//! A log file is bounded: past `--log-max-size` it is renamed to `NAME.1`
//! (replacing the previous one) and a new file is started, so it takes at
//! most about twice the cap. A file moved away by someone else (logrotate's
//! default `create` mode, another vaultfs sharing the file) is noticed before
//! the next line and the name is reopened, so no SIGHUP is needed.
//! tracing-appender was not used: it rolls by time only, not by size, and
//! opens files by path, following symlinks.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::sync::{Mutex, OnceLock};

use rustix::fs::{flock, FlockOperation};
use tracing::Level;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::prelude::*;

use crate::private::{fstat, LogFile, PrivateDir, PrivateError, LOG_FLAGS};

const CAPPED: &[&str] = &[
    "hyper",
    "h2",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "hyper_util",
    "tower",
];

fn capped(target: &str) -> bool {
    CAPPED
        .iter()
        .any(|c| target == *c || target.strip_prefix(c).is_some_and(|r| r.starts_with("::")))
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields)
    Json,
}

/// Log to stderr, or to `file` (opened by `private::open_log`: 0600,
/// appended, no symlink followed), rotated past `max_bytes` (0: never).
pub fn init(file: Option<LogFile>, format: LogFormat, max_bytes: u64) -> io::Result<()> {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let cap = filter_fn(|m| !(capped(m.target()) && *m.level() > Level::INFO));
    let (writer, ansi) = match file {
        Some(f) => {
            let _ = FILE.set(Mutex::new(RotatingLog::new(f, max_bytes)));
            (BoxMakeWriter::new(|| ToFile), false)
        }
        None => (BoxMakeWriter::new(io::stderr), io::stderr().is_terminal()),
    };
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(true)
            .with_ansi(ansi)
            .with_writer(writer)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_target(true)
            .with_writer(writer)
            .boxed(),
    };
    tracing_subscriber::registry()
        .with(env)
        .with(layer.with_filter(cap))
        .try_init()
        .map_err(|e| io::Error::other(e.to_string()))
}

/// The log file, when logging goes to one: shared by the logger and
/// [`reopen`].
static FILE: OnceLock<Mutex<RotatingLog>> = OnceLock::new();

/// Writes to [`FILE`].
struct ToFile;

impl Write for ToFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match FILE.get() {
            Some(f) => f.lock().unwrap_or_else(|e| e.into_inner()).write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match FILE.get() {
            Some(f) => f.lock().unwrap_or_else(|e| e.into_inner()).flush(),
            None => Ok(()),
        }
    }
}

/// Open the log file's name anew (SIGHUP): for a rotation by copy, or a
/// file replaced in a way the size and name checks cannot see. No-op when
/// logging goes to stderr. False when the name cannot be opened (the
/// current file is kept).
pub fn reopen() -> bool {
    FILE.get()
        .is_none_or(|f| f.lock().unwrap_or_else(|e| e.into_inner()).reopen().is_ok())
}

/// The log file, rotated by size and reopened when moved away. Also the
/// read audit's file (`crate::audit`), which follows the same rules.
pub struct RotatingLog {
    dir: PrivateDir,
    name: OsString,
    old: OsString,
    file: File,
    max: u64,
    /// Why the name could not be reopened last time it was tried (a symlink
    /// planted there, the directory removed): lines then go on into the file
    /// already open, which nobody may find.
    lost: Option<PrivateError>,
}

impl RotatingLog {
    pub fn new(log: LogFile, max_bytes: u64) -> RotatingLog {
        let mut old = log.name.clone();
        old.push(".1");
        RotatingLog {
            dir: log.dir,
            name: log.name,
            old,
            file: log.file,
            max: max_bytes,
            lost: None,
        }
    }

    /// Why the file's name cannot be followed, while it cannot.
    pub fn name_lost(&self) -> Option<&PrivateError> {
        self.lost.as_ref()
    }

    /// Start writing to `new`. The daemon's stderr (fd 2) is a copy of the
    /// log file so that a panic lands in it: it follows, when it is that file.
    fn switch(&mut self, new: File) {
        let id = |st: libc::stat| (st.st_dev, st.st_ino);
        if matches!((fstat(io::stderr()), fstat(&self.file)), (Ok(a), Ok(b)) if id(a) == id(b)) {
            let _ = nix::unistd::dup2_stderr(&new);
        }
        self.file = new;
    }

    /// Open the name anew (SIGHUP after an outside rotation); on failure
    /// the file already open is kept.
    pub fn reopen(&mut self) -> Result<(), &PrivateError> {
        match self.dir.open_file(&self.name, LOG_FLAGS) {
            Ok(f) => {
                self.switch(f);
                self.lost = None;
                Ok(())
            }
            Err(e) => Err(self.lost.insert(e)),
        }
    }

    /// Before writing `len` bytes: follow the name, rotate when over the cap.
    fn prepare(&mut self, len: usize) {
        if !self.dir.is(&self.name, &self.file) {
            // Moved away or removed (logrotate): carry on in a new file; if
            // that cannot be opened (a symlink planted there), keep this one.
            let _ = self.reopen();
        }
        let Ok(size) = self.file.metadata().map(|m| m.len()) else {
            return;
        };
        if self.max == 0 || size == 0 || size + len as u64 <= self.max {
            return;
        }
        // Several vaultfs daemons may share one log file: the lock lets one
        // rotate; the others then find it moved away and follow.
        let Ok(guard) = self.file.try_clone() else {
            return;
        };
        // Released by the unlock below, or by the close of `guard`.
        let _ = flock(&guard, FlockOperation::LockExclusive);
        if self.dir.is(&self.name, &self.file) {
            let _ = self.dir.rename(&self.name, &self.old);
        }
        let _ = self.reopen();
        // Rotation failed (cannot rename, a symlink planted at the name):
        // stay bounded by starting the current file over.
        if self
            .file
            .metadata()
            .is_ok_and(|m| m.len() + len as u64 > self.max)
        {
            let _ = self.file.set_len(0);
        }
        let _ = flock(&guard, FlockOperation::Unlock);
    }
}

impl Write for RotatingLog {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.prepare(buf.len());
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::private::open_log;

    #[test]
    fn caps_http_crates_only() {
        assert!(super::capped("hyper"));
        assert!(super::capped("h2::codec"));
        assert!(super::capped("rustls::client"));
        assert!(!super::capped("h2o"));
        assert!(!super::capped("vaultfs::fs"));
    }

    fn size(p: &std::path::Path) -> u64 {
        std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn rotates_at_the_cap_keeping_one_old_file() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("v.log");
        let mut log = RotatingLog::new(open_log(&path, false).unwrap(), 1000);
        let line = [b'x'; 99].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        for _ in 0..95 {
            log.write_all(&line).unwrap();
            assert!(size(&path) <= 1000, "{}", size(&path));
        }
        // 95 lines of 100 bytes: 9 full files, the last 5 lines in v.log.
        assert_eq!(size(&path), 500);
        assert_eq!(size(&t.path().join("v.log.1")), 1000);
        let mut names: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["v.log", "v.log.1"]);
        // Unbounded with 0.
        let mut log = RotatingLog::new(open_log(&path, false).unwrap(), 0);
        for _ in 0..20 {
            log.write_all(&line).unwrap();
        }
        assert_eq!(size(&path), 2500);
    }

    #[test]
    fn follows_a_moved_file_and_never_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("v.log");
        let mut log = RotatingLog::new(open_log(&path, false).unwrap(), 1000);
        log.write_all(b"one\n").unwrap();
        // logrotate (create mode) moves the file away.
        std::fs::rename(&path, t.path().join("v.log-20240101")).unwrap();
        log.write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_to_string(t.path().join("v.log-20240101")).unwrap(),
            "one\n"
        );
        // A symlink planted at the name is not followed: the current file
        // goes on, and a rotation that cannot reopen starts it over.
        let victim = t.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::fs::rename(&path, t.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        log.write_all(b"three\n").unwrap();
        log.write_all(&[b'y'; 995]).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(size(&t.path().join("moved")) <= 1000);
    }
}
