//! The read audit (`--audit-log`): one JSON line per open of a file (and,
//! with `--audit-listings`, per directory opened), saying which program read
//! which secret when. See docs/security.md, "Read audit".
//!
//! The FUSE thread only builds an [`Access`] (what the request carried, the
//! path and version served) and hands it, with the open's reply, to a
//! bounded channel; a thread of the audit reads the caller's details from
//! `/proc` ([`caller`]), then replies (so the caller cannot exit before it
//! is identified), and passes the line to a writer thread. A full channel
//! drops the event and counts it (the count is written to the file and the
//! log), so a slow or broken audit file never holds up a read. The file is
//! the log file's kind ([`RotatingLog`]): 0600, no symlink followed, rotated
//! by size, followed when moved away.

mod caller;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::errno_name;
use crate::logging::RotatingLog;
use crate::private::{self, LogFile, PrivateDir, PrivateError};
use caller::{boot_ns, Caller, Callers, ProcFs};

/// Events waiting for the writer at most; past it they are dropped (and
/// counted). About 1 MiB of memory.
const QUEUE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Open,
    List,
}

/// Where the bytes of an open came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The first open served from an answer Vault gave (a matching read is
    /// in Vault's audit log).
    Vault,
    /// An answer the daemon had already served: no Vault request.
    Cache,
}

/// One open, as the FUSE thread saw it.
#[derive(Debug, Clone)]
pub struct Access {
    pub op: Op,
    /// The calling thread (the kernel's `pid` of the request).
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Inside the mount, no leading slash.
    pub path: String,
    pub version: Option<u64>,
    pub source: Option<Source>,
    /// `None`: served.
    pub errno: Option<i32>,
}

/// One line of the audit file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// RFC 3339, UTC.
    pub time: String,
    /// `open`, `list`, or `dropped` (events lost, `count` of them).
    pub op: String,
    pub path: Option<String>,
    /// KV v2 version served.
    pub version: Option<u64>,
    /// `vault` or `cache`.
    pub source: Option<String>,
    /// `ok`, or the error name (`EROFS`, ...).
    pub result: Option<String>,
    pub pid: Option<u32>,
    pub tgid: Option<u32>,
    pub ppid: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub comm: Option<String>,
    pub exe: Option<String>,
    /// The caller was gone (or not visible) when the line was written: only
    /// what the request carried is recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exited: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// What the caller of an open waits for: the reply, sent once its details
/// are read (see [`AuditLog::record`]).
pub type Release = Box<dyn FnOnce() + Send>;

enum Msg {
    Access(Box<Access>, SystemTime, u64, Option<Release>),
    Flush(SyncSender<()>),
}

enum Line {
    Record(Box<Record>, SystemTime),
    Flush(SyncSender<()>),
}

/// The audit's handle: cheap to clone, never blocks the caller.
#[derive(Clone)]
pub struct AuditLog {
    tx: SyncSender<Msg>,
    file: Arc<Mutex<RotatingLog>>,
    dropped: Arc<AtomicU64>,
    listings: bool,
}

impl AuditLog {
    /// Start the audit's two threads on `file` (from [`open`]), rotated
    /// past `max_bytes` (0: never): one reads callers' details from
    /// `/proc` (never blocked by the file), one writes lines. Directory
    /// opens are recorded with `listings`.
    pub fn start(file: LogFile, max_bytes: u64, listings: bool) -> std::io::Result<AuditLog> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let (lines, lines_rx) = mpsc::sync_channel(QUEUE);
        let file = Arc::new(Mutex::new(RotatingLog::new(file, max_bytes)));
        let dropped = Arc::new(AtomicU64::new(0));
        let resolver = Resolver {
            callers: Callers::new(ProcFs::new()),
            lines,
            dropped: dropped.clone(),
        };
        let writer = Writer {
            file: file.clone(),
            dropped: dropped.clone(),
            failing: false,
        };
        std::thread::Builder::new()
            .name("vaultfs-audit-w".into())
            .spawn(move || writer.run(lines_rx))?;
        std::thread::Builder::new()
            .name("vaultfs-audit".into())
            .spawn(move || resolver.run(rx))?;
        Ok(AuditLog {
            tx,
            file,
            dropped,
            listings,
        })
    }

    /// Whether directory opens are recorded.
    pub fn listings(&self) -> bool {
        self.listings
    }

    /// Record `a`, received now, then call `release` (which replies to the
    /// open). Never waits: the caller's details are read on the audit's
    /// thread, and `release` is called there once they are, so the caller
    /// cannot exit or exec before it is identified (a short-lived `cat`
    /// would otherwise be gone). With the audit behind (its queue full),
    /// `release` is called at once and the event counted as dropped.
    pub fn record(&self, a: Access, release: Option<Release>) {
        let msg = Msg::Access(Box::new(a), SystemTime::now(), boot_ns(), release);
        if let Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) = self.tx.try_send(msg) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            if let Msg::Access(_, _, _, Some(release)) = m {
                release();
            }
        }
    }

    /// Reopen the file by its name: for SIGHUP, after logrotate moved it
    /// (`copytruncate` needs nothing; `create` is also noticed by itself
    /// before the next line). A failure is logged and the file already
    /// open is kept.
    /// False when the name could not be reopened (logged).
    pub fn reopen(&self) -> bool {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        match f.reopen() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "read audit: cannot reopen the audit file; writing on to the one open");
                false
            }
        }
    }

    /// Wait (up to `limit`) until every event recorded so far is written:
    /// at unmount.
    pub fn flush(&self, limit: Duration) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(limit);
        }
    }
}

/// Reads callers' details and releases their opens; hands lines on.
struct Resolver {
    callers: Callers<ProcFs>,
    lines: SyncSender<Line>,
    dropped: Arc<AtomicU64>,
}

impl Resolver {
    fn run(mut self, rx: Receiver<Msg>) {
        for msg in rx {
            match msg {
                Msg::Flush(ack) => {
                    let _ = self.lines.send(Line::Flush(ack));
                }
                Msg::Access(a, at, at_ns, release) => {
                    let caller = self.callers.resolve(a.pid, at_ns);
                    if let Some(release) = release {
                        release();
                    }
                    let r = Line::Record(Box::new(record(&a, at, caller.as_deref())), at);
                    if self.lines.try_send(r).is_err() {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

struct Writer {
    file: Arc<Mutex<RotatingLog>>,
    dropped: Arc<AtomicU64>,
    /// A write failure was logged and not yet followed by a success: each
    /// failure is logged once, not once per line.
    failing: bool,
}

impl Writer {
    fn run(mut self, rx: Receiver<Line>) {
        for msg in rx {
            match msg {
                Line::Flush(ack) => {
                    let _ = ack.send(());
                }
                Line::Record(r, at) => {
                    let dropped = self.dropped.swap(0, Ordering::Relaxed);
                    let mut lines = Vec::with_capacity(512);
                    if dropped > 0 {
                        tracing::warn!(
                            count = dropped,
                            "read audit: events dropped (the audit fell behind)"
                        );
                        line(&mut lines, &dropped_record(dropped, at));
                    }
                    line(&mut lines, &r);
                    self.write(&lines);
                }
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let written = f.write_all(bytes).and_then(|()| f.flush());
        let problem = match (&written, f.name_lost()) {
            (Err(e), _) => Some(e.to_string()),
            (Ok(()), Some(lost)) => {
                Some(format!("{lost} (lines go to a file no longer at its name)"))
            }
            (Ok(()), None) => None,
        };
        match (problem, self.failing) {
            (Some(why), false) => {
                tracing::error!(error = %why, "read audit: cannot write the audit file; reads go on");
                self.failing = true;
            }
            (None, true) => {
                tracing::info!("read audit: the audit file is written again");
                self.failing = false;
            }
            _ => {}
        }
    }
}

fn line(out: &mut Vec<u8>, r: &Record) {
    // A Record always serializes: every field is a plain value.
    let json = serde_json::to_string(r).unwrap_or_default();
    out.extend_from_slice(crate::unseen::json_escaped(&json).as_bytes());
    out.push(b'\n');
}

fn time(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

fn dropped_record(count: u64, at: SystemTime) -> Record {
    Record {
        time: time(at),
        op: "dropped".into(),
        count: Some(count),
        ..Record::default()
    }
}

fn record(a: &Access, at: SystemTime, caller: Option<&Caller>) -> Record {
    Record {
        time: time(at),
        op: match a.op {
            Op::Open => "open",
            Op::List => "list",
        }
        .into(),
        path: Some(a.path.clone()),
        version: a.version,
        source: a.source.map(|s| {
            match s {
                Source::Vault => "vault",
                Source::Cache => "cache",
            }
            .into()
        }),
        result: Some(a.errno.map_or_else(|| "ok".into(), errno_name)),
        pid: Some(a.pid),
        tgid: caller.and_then(|c| c.tgid),
        ppid: caller.map(|c| c.ppid),
        uid: Some(a.uid),
        gid: Some(a.gid),
        comm: caller.map(|c| c.comm.clone()),
        exe: caller.and_then(|c| c.exe.clone()),
        exited: caller.is_none(),
        count: None,
    }
}

/// Open the audit file for appending, created 0600 in a directory that is
/// ours and closed to others (created 0700 if missing), never following a
/// symlink: the rules of the default log file (`private::open_log`).
pub fn open(path: &Path) -> Result<LogFile, PrivateError> {
    private::open_log(path, true)
}

/// Where the audit file of the mount at `mountpoint` is recorded, so that
/// `vaultfs audit MOUNTPOINT` finds it: `<state dir>/audit/<mount>.path`.
fn record_path(state_dir: &Path, mountpoint: &Path) -> PathBuf {
    let name = crate::mountpoint::pid_file_name(mountpoint);
    let name = name.strip_suffix(".pid").unwrap_or(&name);
    state_dir.join("audit").join(format!("{name}.path"))
}

/// Record `audit` as the audit file of `mountpoint` (for `vaultfs audit`).
pub fn remember(state_dir: &Path, mountpoint: &Path, audit: &Path) -> Result<(), PrivateError> {
    use std::os::unix::ffi::OsStrExt;
    let path = record_path(state_dir, mountpoint);
    let (dir, name) = private::dir_and_name(&path)?;
    let dir = PrivateDir::open(dir, true)?;
    let mut f = dir.open_file(name, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)?;
    let mut bytes = audit.as_os_str().as_bytes().to_vec();
    bytes.push(b'\n');
    f.write_all(&bytes)
        .map_err(|source| PrivateError::Io { path, source })
}

/// The audit file recorded for `mountpoint`, if any.
pub fn recalled(state_dir: &Path, mountpoint: &Path) -> Option<PathBuf> {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    let path = record_path(state_dir, mountpoint);
    let (dir, name) = private::dir_and_name(&path).ok()?;
    let dir = PrivateDir::open(dir, false).ok()?;
    let mut s = Vec::new();
    dir.open_file(name, libc::O_RDONLY)
        .ok()?
        .read_to_end(&mut s)
        .ok()?;
    let s = s.strip_suffix(b"\n").unwrap_or(&s);
    (!s.is_empty()).then(|| PathBuf::from(std::ffi::OsStr::from_bytes(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(path: &str) -> Access {
        Access {
            op: Op::Open,
            pid: std::process::id(),
            uid: 1,
            gid: 2,
            path: path.into(),
            version: Some(3),
            source: Some(Source::Vault),
            errno: None,
        }
    }

    /// Names are a secret writer's choice: whatever they hold, each event
    /// is one line of valid JSON giving the name back intact.
    #[test]
    fn hostile_names_make_one_json_line_each() {
        let names = [
            "a\nb",
            "q\"uote",
            "back\\slash",
            "nul\0byte",
            "esc\x1b[31mred",
            "\u{202e}gpj.exe",
            "cr\rlf\n{\"op\":\"open\"}",
        ];
        let mut out = Vec::new();
        for n in names {
            line(&mut out, &record(&access(n), SystemTime::now(), None));
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split('\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), names.len());
        for (l, n) in lines.iter().zip(names) {
            assert!(!l.bytes().any(|b| b < 0x20), "{l:?}");
            let r: Record = serde_json::from_str(l).unwrap();
            assert_eq!(r.path.as_deref(), Some(n));
            assert!(r.exited);
        }
    }

    #[test]
    fn the_record_is_found_again() {
        let t = tempfile::tempdir().unwrap();
        let state = t.path().join("state");
        let mp = Path::new("/home/me/secrets");
        assert_eq!(recalled(&state, mp), None);
        remember(&state, mp, Path::new("/var/log/a\nb.audit")).unwrap();
        assert_eq!(
            recalled(&state, mp),
            Some(PathBuf::from("/var/log/a\nb.audit"))
        );
        assert_eq!(recalled(&state, Path::new("/home/me/other")), None);
    }

    /// A stuck audit file (the writer waits on it) holds up no open: each
    /// is answered, past the queues the events are dropped, and the count
    /// of those is written once the file works again. Memory stays bounded
    /// by the two queues.
    #[test]
    fn a_stuck_file_holds_up_no_open_and_losses_are_counted() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("a.jsonl");
        let audit = AuditLog::start(open(&path).unwrap(), 0, false).unwrap();
        let released = Arc::new(AtomicU64::new(0));
        let total = 3 * QUEUE as u64;
        {
            let _stuck = audit.file.lock().unwrap();
            for _ in 0..total {
                let r = released.clone();
                let release = move || {
                    r.fetch_add(1, Ordering::Relaxed);
                };
                audit.record(access("secret/a"), Some(Box::new(release)));
            }
            let end = std::time::Instant::now() + Duration::from_secs(20);
            while released.load(Ordering::Relaxed) < total {
                assert!(std::time::Instant::now() < end, "opens held up");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        audit.flush(Duration::from_secs(20));
        // The queues are empty again: this one is written, with the count.
        audit.record(access("secret/after"), None);
        audit.flush(Duration::from_secs(20));
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<Record> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let lost: u64 = records.iter().filter_map(|r| r.count).sum();
        let kept = records.iter().filter(|r| r.op == "open").count() as u64;
        assert!(
            lost > 0,
            "nothing was dropped: the test did not fill the queues"
        );
        assert_eq!(kept + lost, total + 1, "every event is a line or counted");
        assert_eq!(
            records.last().unwrap().path.as_deref(),
            Some("secret/after")
        );
    }

    /// SIGHUP's reopen, on top of the following every write does: the
    /// name is taken again after logrotate moved the file; a symlink
    /// planted there is refused and the open file kept.
    #[test]
    fn reopen_takes_the_name_again_never_a_symlink() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("a.jsonl");
        let audit = AuditLog::start(open(&path).unwrap(), 0, false).unwrap();
        let write = |p: &str| {
            audit.record(access(p), None);
            audit.flush(Duration::from_secs(10));
        };
        write("one");
        std::fs::rename(&path, t.path().join("a.jsonl.rotated")).unwrap();
        assert!(audit.reopen());
        write("two");
        let has = |f: &str, p: &str| {
            std::fs::read_to_string(t.path().join(f))
                .unwrap_or_default()
                .contains(&format!("\"path\":\"{p}\""))
        };
        assert!(has("a.jsonl.rotated", "one") && has("a.jsonl", "two"));
        assert!(!has("a.jsonl", "one"));
        let victim = t.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::fs::rename(&path, t.path().join("moved")).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(!audit.reopen());
        write("three");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(has("moved", "three"));
    }
}
