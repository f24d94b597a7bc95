//! `vaultfs audit`: the read audit of a mount as a table (or its JSON lines),
//! filtered by time, secret and program, optionally followed.
//!
//! The file is found from `--file`, else from the record the daemon left
//! for the mount point (`<state dir>/audit/<mount>.path`, written when it
//! mounted with an audit file), else from `VAULTFS_AUDIT_LOG`. The rotated
//! file (`NAME.1`) is read before the current one.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use globset::{Glob, GlobMatcher};

use super::error::MountError;
use crate::audit::{recalled, Record};
use crate::cli::{self, AuditArgs};
use crate::env::{self, Env};
use crate::mountpoint::state_dir;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Cli(#[from] cli::CliError),
    #[error(
        "no audit file is known for {0}: it was not mounted with --audit-log (pass the file with --file)"
    )]
    NotFound(PathBuf),
    #[error(
        "invalid --since {0:?}: expected a duration (1h, 30m) or a time (2024-05-01T12:00:00Z)"
    )]
    Since(String),
    #[error("invalid {flag} glob {glob:?}: {why}")]
    Glob {
        flag: &'static str,
        glob: String,
        why: String,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "refusing the audit file {0}: it is a symbolic link (the daemon never writes through one)"
    )]
    Symlink(PathBuf),
}

/// Bad flag values are usage errors (status 2), as for every command.
impl From<AuditError> for MountError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Cli(e) => MountError::Cli(e),
            AuditError::Since(_) | AuditError::Glob { .. } => MountError::Usage(e.to_string()),
            e => MountError::Other(e.to_string()),
        }
    }
}

/// The audit file opened for reading, never through a symlink: the daemon
/// refuses to write through one, so one at the name was planted.
fn open_nofollow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// `source`, met on `path`; ELOOP from [`open_nofollow`] is a symlink.
fn audit_error(path: &Path, source: io::Error) -> AuditError {
    match source.raw_os_error() {
        Some(libc::ELOOP) => AuditError::Symlink(path.to_path_buf()),
        _ => AuditError::Io {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// `vaultfs audit`.
pub fn audit(args: &AuditArgs) -> Result<(), AuditError> {
    let path = locate(args, &env::process)?;
    let filter = Filter::new(args, SystemTime::now())?;
    let mut out = Output {
        json: args.json,
        header: false,
        skipped: 0,
    };
    let io_err = |p: &Path| {
        let path = p.to_path_buf();
        move |source| AuditError::Io { path, source }
    };
    let mut old = path.clone().into_os_string();
    old.push(".1");
    let old = PathBuf::from(old);
    let mut stdout = io::stdout().lock();
    // Where --follow goes on: after what was read here.
    let mut seen = 0;
    for p in [&old, &path] {
        let mut file = match open_nofollow(p).map_err(|e| audit_error(p, e)) {
            Ok(f) => f,
            Err(AuditError::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound && p == &old =>
            {
                continue
            }
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err(p))?;
        // Complete lines only: the daemon may be writing the last.
        let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        seen = end as u64;
        out.lines(&bytes[..end], &filter, &mut stdout)
            .map_err(io_err(p))?;
    }
    if !out.header && !out.json && !args.follow {
        writeln!(stdout, "no matching reads").map_err(io_err(&path))?;
    }
    if args.follow {
        stdout.flush().map_err(io_err(&path))?;
        follow(&path, seen, &filter, &mut out, &mut stdout).map_err(|e| audit_error(&path, e))?;
    }
    if out.skipped > 0 {
        eprintln!(
            "vaultfs: {} lines of {} are not audit records: skipped",
            out.skipped,
            path.display()
        );
    }
    Ok(())
}

/// The audit file to read: `--file`, the record of the mount point, or
/// `VAULTFS_AUDIT_LOG`.
fn locate(args: &AuditArgs, env: Env<'_>) -> Result<PathBuf, AuditError> {
    if let Some(f) = &args.file {
        return Ok(f.clone());
    }
    let mp = cli::mountpoint(args.mountpoint.as_deref(), env)?;
    state_dir(env)
        .and_then(|d| recalled(&d, &mp))
        .or_else(|| {
            env("VAULTFS_AUDIT_LOG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .ok_or(AuditError::NotFound(mp))
}

struct Filter {
    since: Option<SystemTime>,
    secret: Option<GlobMatcher>,
    exe: Option<GlobMatcher>,
}

fn glob(flag: &'static str, g: &str) -> Result<GlobMatcher, AuditError> {
    // `secret/prod/` means everything under it.
    let full = if g.ends_with('/') {
        format!("{g}**")
    } else {
        g.to_string()
    };
    Glob::new(&full)
        .map(|g| g.compile_matcher())
        .map_err(|e| AuditError::Glob {
            flag,
            glob: g.to_string(),
            why: e.kind().to_string(),
        })
}

impl Filter {
    fn new(args: &AuditArgs, now: SystemTime) -> Result<Filter, AuditError> {
        let since = match &args.since {
            None => None,
            Some(s) => Some(
                humantime::parse_duration(s)
                    .ok()
                    .and_then(|d| now.checked_sub(d))
                    .or_else(|| humantime::parse_rfc3339_weak(s.trim_end_matches('Z')).ok())
                    .ok_or_else(|| AuditError::Since(s.clone()))?,
            ),
        };
        Ok(Filter {
            since,
            secret: args
                .secret
                .as_deref()
                .map(|g| glob("--secret", g))
                .transpose()?,
            exe: args.exe.as_deref().map(|g| glob("--exe", g)).transpose()?,
        })
    }

    fn keeps(&self, r: &Record) -> bool {
        if let Some(since) = self.since {
            match humantime::parse_rfc3339(&r.time) {
                Ok(t) if t >= since => {}
                _ => return false,
            }
        }
        // Lost events may be any reads: always shown.
        if r.op == "dropped" {
            return true;
        }
        if let Some(g) = &self.secret {
            if !r.path.as_deref().is_some_and(|p| g.is_match(p)) {
                return false;
            }
        }
        if let Some(g) = &self.exe {
            let exe = r.exe.as_deref();
            let base = exe.and_then(|e| e.rsplit('/').next());
            if ![exe, base, r.comm.as_deref()]
                .into_iter()
                .flatten()
                .any(|n| g.is_match(n))
            {
                return false;
            }
        }
        true
    }
}

/// A name shown on a terminal: what [`crate::unseen::unseen`] names (a
/// secret's writer chooses names: escape sequences, newlines and line
/// separators faking lines, direction overrides) is escaped, as is `\`;
/// a plain space is kept, as the table's columns are read by eye.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == ' ' {
            out.push(c);
        } else if c == '\\' || c.is_control() {
            out.extend(c.escape_debug());
        } else if crate::unseen::unseen(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

struct Output {
    json: bool,
    header: bool,
    skipped: u64,
}

impl Output {
    /// Print the matching records of complete lines in `bytes`.
    fn lines(&mut self, bytes: &[u8], f: &Filter, out: &mut impl Write) -> io::Result<()> {
        for l in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Record>(l) {
                Ok(r) if f.keeps(&r) => self.print(&r, l, out)?,
                Ok(_) => {}
                Err(_) => self.skipped += 1,
            }
        }
        Ok(())
    }

    fn print(&mut self, r: &Record, raw: &[u8], out: &mut impl Write) -> io::Result<()> {
        if self.json {
            // Escaped again: the file may predate, or not come from, this
            // writer.
            let text = String::from_utf8_lossy(raw);
            out.write_all(crate::unseen::json_escaped(&text).as_bytes())?;
            return out.write_all(b"\n");
        }
        if !self.header {
            self.header = true;
            writeln!(
                out,
                "{:<24} {:>7} {:>6} {:<7} {:<5} {:>4} {:<24} PATH",
                "TIME", "PID", "UID", "RESULT", "FROM", "VER", "PROGRAM"
            )?;
        }
        let opt = |v: Option<u32>| v.map_or_else(|| "-".into(), |v| v.to_string());
        if r.op == "dropped" {
            return writeln!(
                out,
                "{:<24} {} reads not recorded (the audit writer fell behind)",
                printable(&r.time),
                r.count.unwrap_or(0)
            );
        }
        let program = match (&r.exe, &r.comm) {
            (Some(e), _) => printable(e),
            (None, Some(c)) => format!("[{}]", printable(c)),
            (None, None) => "[exited]".into(),
        };
        let path = match r.op.as_str() {
            "list" => format!("{}/ (listed)", printable(r.path.as_deref().unwrap_or(""))),
            _ => printable(r.path.as_deref().unwrap_or("")),
        };
        writeln!(
            out,
            "{:<24} {:>7} {:>6} {:<7} {:<5} {:>4} {:<24} {}",
            printable(&r.time),
            opt(r.tgid.or(r.pid)),
            opt(r.uid),
            printable(r.result.as_deref().unwrap_or("-")),
            printable(r.source.as_deref().unwrap_or("-")),
            r.version.map_or_else(|| "-".into(), |v| v.to_string()),
            program,
            path
        )
    }
}

/// Print records as they are appended, following the file when it is
/// rotated or moved away, until interrupted (or stdout closes).
fn follow(
    path: &Path,
    from: u64,
    f: &Filter,
    out: &mut Output,
    w: &mut impl Write,
) -> io::Result<()> {
    let open = || -> io::Result<(File, u64)> {
        let file = open_nofollow(path)?;
        let ino = file.metadata()?.ino();
        Ok((file, ino))
    };
    let (mut file, mut ino) = open()?;
    file.seek(SeekFrom::Start(from))?;
    let mut partial = Vec::new();
    loop {
        let mut chunk = Vec::new();
        file.read_to_end(&mut chunk)?;
        partial.extend_from_slice(&chunk);
        if let Some(end) = partial.iter().rposition(|b| *b == b'\n') {
            let rest = partial.split_off(end + 1);
            out.lines(&partial, f, w)?;
            w.flush()?;
            partial = rest;
        }
        if chunk.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
            // Rotated or moved away: go on in the file now at the name.
            match std::fs::metadata(path) {
                Ok(m) if m.ino() != ino => {
                    let mut rest = Vec::new();
                    file.read_to_end(&mut rest)?;
                    partial.extend_from_slice(&rest);
                    out.lines(&partial, f, w)?;
                    partial.clear();
                    (file, ino) = open()?;
                }
                Ok(m) if m.len() < file.stream_position()? => {
                    file.seek(SeekFrom::Start(0))?;
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> AuditArgs {
        let mut v = vec!["vaultfs", "audit"];
        v.extend_from_slice(extra);
        match cli::Cli::parse_from(v).command {
            cli::Command::Audit(a) => a,
            _ => unreachable!(),
        }
    }

    fn rec(time: &str, path: &str, exe: &str) -> Record {
        Record {
            time: time.into(),
            op: "open".into(),
            path: Some(path.into()),
            exe: Some(exe.into()),
            comm: exe.rsplit('/').next().map(String::from),
            ..Record::default()
        }
    }

    #[test]
    fn filters_by_time_secret_and_program() {
        let now = humantime::parse_rfc3339("2024-05-01T12:00:00Z").unwrap();
        let f = Filter::new(&args(&["--since", "1h", "--secret", "secret/prod/"]), now).unwrap();
        assert!(f.keeps(&rec(
            "2024-05-01T11:30:00.000Z",
            "secret/prod/db/pw",
            "/bin/cat"
        )));
        assert!(!f.keeps(&rec(
            "2024-05-01T10:30:00.000Z",
            "secret/prod/db/pw",
            "/bin/cat"
        )));
        assert!(!f.keeps(&rec(
            "2024-05-01T11:30:00.000Z",
            "secret/dev/db/pw",
            "/bin/cat"
        )));
        assert!(!f.keeps(&rec("garbage", "secret/prod/db/pw", "/bin/cat")));
        let f = Filter::new(&args(&["--exe", "python3*", "--secret", "*/db/*"]), now).unwrap();
        assert!(f.keeps(&rec(
            "2024-05-01T11:30:00.000Z",
            "a/db/pw",
            "/usr/bin/python3.11"
        )));
        assert!(!f.keeps(&rec("2024-05-01T11:30:00.000Z", "a/db/pw", "/usr/bin/cat")));
        let f = Filter::new(&args(&["--since", "2024-05-01T11:45:00Z"]), now).unwrap();
        assert!(!f.keeps(&rec("2024-05-01T11:30:00.000Z", "a", "/bin/cat")));
        assert!(Filter::new(&args(&["--since", "yesterday"]), now).is_err());
        assert!(Filter::new(&args(&["--secret", "a[b"]), now).is_err());
    }

    #[test]
    fn the_table_escapes_what_a_writer_chose() {
        let mut out = Output {
            json: false,
            header: false,
            skipped: 0,
        };
        let r = rec(
            "2024-05-01T11:30:00.000Z",
            "secret/a\n2024-05-01 fake line\x1b[2J\u{202e}",
            "/tmp/x\rcat",
        );
        let mut w = Vec::new();
        let line = serde_json::to_vec(&r).unwrap();
        let f = Filter::new(&args(&[]), SystemTime::now()).unwrap();
        out.lines(&line, &f, &mut w).unwrap();
        out.lines(b"not json\n", &f, &mut w).unwrap();
        let text = String::from_utf8(w).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains(['\x1b', '\r', '\u{202e}']), "{text:?}");
        assert!(
            text.contains("secret/a\\n2024-05-01 fake line\\u{1b}[2J\\u{202e}"),
            "{text}"
        );
        assert_eq!(out.skipped, 1);
    }
}
