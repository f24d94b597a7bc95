//! The mount point on disk: what the kernel's mount table says is there,
//! dead FUSE mounts left by a killed daemon, unmounting, and the pid file
//! that ties a mount point to its daemon.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::mount::MntFlags;
use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

use crate::unseen::unseen;

use crate::env::{self, Env};
use crate::private::{dir_and_name, PrivateDir, PrivateError};

/// The FUSE superblock magic (`statfs.f_type`), see linux/magic.h.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// One line of /proc/self/mountinfo, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's id (first field): unique while the mount exists.
    pub id: u64,
    /// The superblock's device (`major:minor`); for FUSE, the connection.
    pub dev: String,
    pub target: PathBuf,
    pub fstype: String,
    pub source: String,
    /// A FUSE mount's owner (`user_id=` in its superblock options).
    pub owner: Option<u32>,
}

impl MountEntry {
    /// Through fusermount3 the type is `fuse.vaultfs`; a direct mount(2) by
    /// root gives type `fuse` with source `vaultfs`.
    pub fn is_vaultfs(&self) -> bool {
        self.fstype == "fuse.vaultfs" || (self.fstype == "fuse" && self.source == "vaultfs")
    }

    fn is_fuse(&self) -> bool {
        self.fstype == "fuse" || self.fstype.starts_with("fuse.")
    }

    /// Whether this line is the mount `other` (same id and device), wherever
    /// either was read.
    fn is(&self, other: &MountEntry) -> bool {
        self.id == other.id && self.dev == other.dev
    }
}

/// A path as vaultfs prints it: the mount table's octal escapes (`\040`
/// for a space, `\012` for a newline, `\134` for a backslash) for space,
/// backslash, every control character (C0, DEL, C1), every other white
/// space and separator (U+00A0, U+2028 LINE SEPARATOR, U+2029…), every
/// format character (Unicode's Cf: bidi controls such as U+202E, zero-width
/// characters, U+FEFF…) and every byte that is not UTF-8, so that a printed
/// path is one field on one line, reads in the order its bytes are in, and
/// no byte of it reaches the terminal as a command. [`unescape`] reverses it.
pub struct Shown<'a>(pub &'a Path);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let octal = |f: &mut std::fmt::Formatter<'_>, bytes: &[u8]| {
            bytes.iter().try_for_each(|b| write!(f, "\\{b:03o}"))
        };
        for chunk in self.0.as_os_str().as_bytes().utf8_chunks() {
            for c in chunk.valid().chars() {
                if c == '\\' || unseen(c) {
                    octal(f, c.encode_utf8(&mut [0; 4]).as_bytes())?;
                } else {
                    write!(f, "{c}")?;
                }
            }
            octal(f, chunk.invalid())?;
        }
        Ok(())
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
/// (By hand: no kept crate reads mountinfo; procfs would be a new dependency.)
fn unescape(b: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

#[cfg(any(test, feature = "testing"))]
pub fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    parse_line(line.as_bytes())
}

/// One line, as bytes: a mount point's name need not be UTF-8 (only space,
/// tab, newline and backslash are escaped); every other field used is ASCII.
fn parse_line(line: &[u8]) -> Option<MountEntry> {
    let at = line.windows(3).position(|w| w == b" - ")?;
    let text = |f: &[u8]| std::str::from_utf8(f).ok().map(str::to_string);
    let mut pre = line[..at].split(|&b| b == b' ');
    let id = text(pre.next()?)?.parse().ok()?;
    let dev = text(pre.nth(1)?)?;
    let target = unescape(pre.nth(1)?);
    let mut post = line[at + 3..].split(|&b| b == b' ');
    let fstype = text(post.next()?)?;
    let source = post.next().and_then(text).unwrap_or_default();
    let owner = post
        .next()
        .and_then(text)
        .unwrap_or_default()
        .split(',')
        .find_map(|o| o.strip_prefix("user_id=").and_then(|u| u.parse().ok()));
    Some(MountEntry {
        id,
        dev,
        target,
        fstype,
        source,
        owner,
    })
}

/// Every mount in this mount namespace, in mount order. Read as bytes: one
/// mount point whose name is not UTF-8 must not hide all the others.
pub fn table() -> Vec<MountEntry> {
    fs::read("/proc/self/mountinfo")
        .unwrap_or_default()
        .split(|&b| b == b'\n')
        .filter_map(parse_line)
        .collect()
}

/// Every vaultfs mount in this mount namespace, in mount order.
pub fn vaultfs_mounts() -> Vec<MountEntry> {
    table().into_iter().filter(MountEntry::is_vaultfs).collect()
}

/// The topmost mount at exactly `path` (later lines stack over earlier ones).
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    table().into_iter().rev().find(|e| e.target == path)
}

/// The mount `entry` as it is now, wherever it is (it may have been moved
/// by a rename of a directory above it): the same id and device. `None`
/// once it is unmounted, detached included.
pub fn find_again(entry: &MountEntry) -> Option<MountEntry> {
    table().into_iter().find(|e| e.is(entry))
}

/// How long a probe of a FUSE mount may take. A stopped or stuck daemon
/// never answers, and the kernel would keep the prober waiting with it.
/// Generous: a live daemon may ask Vault before answering a stat of its root.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The name of a [`bounded`] probe's thread.
pub const PROBE: &str = "vaultfs-probe";

/// Run `f` on a thread named `name` and give its result if it finishes
/// within `timeout`. On time the thread is joined, so none is left (the
/// caller may fork next). Otherwise it is left blocked in the kernel,
/// holding no lock: it ends when the daemon answers, the mount goes, or the
/// process exits.
pub fn bounded<T: Send + 'static>(
    name: &str,
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    let got = rx.recv_timeout(timeout).ok()?;
    let _ = t.join();
    Some(got)
}

/// What is at a mount point right now.
#[derive(Debug, PartialEq, Eq)]
pub enum State {
    /// Nothing is mounted there (it may not even exist).
    Free,
    /// A FUSE mount whose daemon is gone: every access fails with ENOTCONN.
    Dead,
    /// A vaultfs mount that answers.
    Live,
    /// A vaultfs mount whose daemon did not answer within [`PROBE_TIMEOUT`]
    /// (stopped, or stuck).
    Unresponsive,
    /// Some other filesystem is mounted there.
    Other(String),
}

/// What the mount `entry` (the table's line for `path`) is: only a FUSE
/// mount is probed, with a bounded statfs, to tell a dead one (ENOTCONN at
/// once) from a live or unresponsive one. Not stat: the kernel answers it
/// from cached attributes without asking the (maybe dead) daemon.
pub fn probe(path: &Path, entry: MountEntry) -> State {
    if !entry.is_fuse() {
        return State::Other(entry.fstype);
    }
    let p = path.to_path_buf();
    match bounded(PROBE, PROBE_TIMEOUT, move || statfs(&p)) {
        // ECONNABORTED: the connection was aborted through /sys/fs/fuse.
        Some(Err(e)) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {
            State::Dead
        }
        None if entry.is_vaultfs() => State::Unresponsive,
        Some(_) if entry.is_vaultfs() => State::Live,
        _ => State::Other(entry.fstype),
    }
}

/// An absolute path in the form the mount table uses, resolved without
/// touching the last component when it can (stat on a dead mount fails).
/// Bounded: resolving may stat a mount whose daemon does not answer; the
/// path is then taken as given (made absolute).
pub fn resolve(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let a = abs.clone();
    bounded(PROBE, PROBE_TIMEOUT, move || resolve_unbounded(a)).unwrap_or(abs)
}

fn resolve_unbounded(abs: PathBuf) -> PathBuf {
    let (Some(dir), Some(name)) = (abs.parent(), abs.file_name()) else {
        return abs.canonicalize().unwrap_or(abs);
    };
    let joined = dir
        .canonicalize()
        .map(|d| d.join(name))
        .unwrap_or_else(|_| abs.clone());
    // A mount point in the table is resolved already and never a symlink:
    // no stat of it, which would wait for its daemon.
    if mount_at(&joined).is_some() {
        return joined;
    }
    if fs::symlink_metadata(&joined).is_ok_and(|m| m.file_type().is_symlink()) {
        if let Ok(p) = joined.canonicalize() {
            return p;
        }
    }
    joined
}

/// statfs(2) of `path`. On FUSE it always reaches the daemon (the kernel
/// caches no answer), unlike stat, whose attributes the kernel may answer
/// from its cache even after the daemon died.
fn statfs(path: &Path) -> io::Result<nix::sys::statfs::Statfs> {
    Ok(nix::sys::statfs::statfs(path)?)
}

/// Whether `path` is the root of a FUSE filesystem (statfs, not the table).
// `f_type` is i64 here but narrower on 32-bit targets.
#[allow(clippy::unnecessary_cast)]
pub fn is_fuse_root(path: &Path) -> bool {
    statfs(path).is_ok_and(|st| st.filesystem_type().0 as i64 == FUSE_SUPER_MAGIC)
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// What [`unmount`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Unmounted {
    /// Unmounted (or detached) at the path where it was found.
    Done(PathBuf),
    /// It was no longer mounted anywhere (unmounted, detached): nothing done.
    Gone,
}

#[derive(Debug, thiserror::Error)]
pub enum UnmountError {
    /// Another mount now covers ours at its path: unmounting by path would
    /// remove that one.
    #[error("{path}: another filesystem ({fstype}) is mounted over it; it is left alone")]
    Covered { path: PathBuf, fstype: String },
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl UnmountError {
    pub fn is_busy(&self) -> bool {
        matches!(self, UnmountError::Io(e) if e.raw_os_error() == Some(libc::EBUSY))
    }
}

/// Unmount exactly the mount `mine` (its id and device, as read from the
/// mount table when it was made or found), wherever it is now, and never
/// another one at the same path. `lazy` detaches it even while files are
/// open. Root calls umount2(2); other users go through the setuid
/// `fusermount3` (or FUSE 2's `fusermount`).
///
/// Both unmount by path, so the table is read again right before, once:
/// ours is found in it, and the topmost mount at its path must be ours.
/// What is left is the time between that read and the unmount call
/// (microseconds), in which only a process allowed to mount there (root, or
/// this user through fusermount3, which only unmounts the user's own FUSE
/// mounts) could stack another mount.
pub fn unmount(mine: &MountEntry, lazy: bool) -> Result<Unmounted, UnmountError> {
    let table = table();
    let Some(now) = table.iter().find(|e| e.is(mine)) else {
        return Ok(Unmounted::Gone);
    };
    let path = now.target.clone();
    // Ours is at `path` in this same read, so there is a topmost one.
    let top = table.iter().rev().find(|e| e.target == path).unwrap_or(now);
    if top.id != mine.id {
        return Err(UnmountError::Covered {
            path,
            fstype: top.fstype.clone(),
        });
    }
    unmount_path(&path, lazy)?;
    Ok(Unmounted::Done(path))
}

fn unmount_path(path: &Path, lazy: bool) -> io::Result<()> {
    if is_root() {
        let mut flags = MntFlags::UMOUNT_NOFOLLOW;
        if lazy {
            flags |= MntFlags::MNT_DETACH;
        }
        return Ok(nix::mount::umount2(path, flags)?);
    }
    // FUSE 2 systems have only `fusermount`, which takes the same flags
    // (fuser's mount falls back to it the same way).
    let run = |helper: &str| {
        let mut cmd = Command::new(helper);
        cmd.arg("-u");
        if lazy {
            cmd.arg("-z");
        }
        cmd.arg("--").arg(path).output()
    };
    let out = match run("fusermount3") {
        Err(e) if e.kind() == io::ErrorKind::NotFound => run("fusermount")?,
        r => r?,
    };
    if out.status.success() {
        return Ok(());
    }
    let msg = String::from_utf8_lossy(&out.stderr);
    let msg = msg.trim().trim_start_matches("fusermount3: ");
    let msg = msg.trim_start_matches("fusermount: ");
    // Keep EBUSY recognisable for the caller.
    if msg.contains("busy") {
        return Err(io::Error::from_raw_os_error(libc::EBUSY));
    }
    Err(io::Error::other(msg.to_string()))
}

/// `$XDG_STATE_HOME/vaultfs`, else `~/.local/state/vaultfs`: the default log.
pub fn state_dir(env: Env<'_>) -> Option<PathBuf> {
    env("XDG_STATE_HOME")
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
        .or_else(|| env::home(env).map(|h| h.join(".local/state")))
        .map(|d| d.join("vaultfs"))
}

/// Where pid files live: `$XDG_RUNTIME_DIR/vaultfs` (cleared at logout, like
/// the mounts), else `<state dir>/run`.
pub fn run_dir(env: Env<'_>) -> Option<PathBuf> {
    env("XDG_RUNTIME_DIR")
        .filter(|v| v.starts_with('/'))
        .map(|d| PathBuf::from(d).join("vaultfs"))
        .or_else(|| state_dir(env).map(|d| d.join("run")))
}

/// One file name per mount point: `/home/me/secrets` → `home%2Fme%2Fsecrets.pid`.
pub fn pid_file_name(mountpoint: &Path) -> String {
    let mut s = String::new();
    for &b in mountpoint
        .as_os_str()
        .as_bytes()
        .strip_prefix(b"/")
        .unwrap_or(b"")
    {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{s}.pid")
}

/// The last component of `path` and its directory, checked private.
fn private_parent(path: &Path, create: bool) -> Result<(PrivateDir, OsString), PrivateError> {
    let (dir, name) = dir_and_name(path)?;
    Ok((PrivateDir::open(dir, create)?, name.to_owned()))
}

/// The daemon's pid file, held open and locked (flock, exclusive) for the
/// daemon's life; removed when dropped if it is still ours (a new daemon may
/// have replaced it).
///
/// The lock is what proves the pid is still our daemon: the kernel drops it
/// when the process ends, so a reused pid is never taken for it, and anyone
/// who can read the file can test it. (The daemon is not dumpable, so a
/// normal user cannot look into its /proc/PID/fd.)
#[derive(Debug)]
pub struct PidFile {
    dir: PrivateDir,
    name: OsString,
    file: fs::File,
}

impl PidFile {
    pub fn path_for(env: Env<'_>, mountpoint: &Path) -> Option<PathBuf> {
        run_dir(env).map(|d| d.join(pid_file_name(mountpoint)))
    }

    /// Written to a temporary name and renamed, so a reader never sees it
    /// half written. The temporary name is removed first, never followed.
    /// The file holds the pid, then the Vault address as shown (no userinfo)
    /// for `vaultfs status`.
    pub fn create(path: &Path, address: &str) -> Result<PidFile, PrivateError> {
        use std::io::Write;
        let (dir, name) = private_parent(path, true)?;
        let tmp = path.with_extension("tmp");
        let tmp = tmp.file_name().unwrap_or_default();
        let io_err = |source| PrivateError::Io {
            path: path.to_path_buf(),
            source,
        };
        dir.remove(tmp).map_err(io_err)?;
        let mut file = dir.open_file(tmp, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)?;
        let address: String = address.chars().filter(|c| !c.is_control()).collect();
        file.write_all(format!("{}\n{address}\n", std::process::id()).as_bytes())
            .map_err(io_err)?;
        // Locked before it gets its name, so it is never seen unlocked.
        flock(&file, FlockOperation::NonBlockingLockExclusive).map_err(|e| io_err(e.into()))?;
        dir.rename(tmp, &name).map_err(io_err)?;
        Ok(PidFile { dir, name, file })
    }

    /// The pid recorded in `path`, if the daemon that wrote it still runs:
    /// it holds the file's lock. A shared lock is tried: it is granted only
    /// when no daemon holds the file (and is then dropped with the file);
    /// testers never block each other.
    pub fn read_live(path: &Path) -> Option<i32> {
        Self::read_live_info(path).map(|(pid, _)| pid)
    }

    /// [`PidFile::read_live`] with the Vault address the daemon serves.
    pub fn read_live_info(path: &Path) -> Option<(i32, String)> {
        use std::io::Read;
        let (dir, name) = private_parent(path, false).ok()?;
        let mut f = dir.open_file(&name, libc::O_RDONLY).ok()?;
        if flock(&f, FlockOperation::NonBlockingLockShared) != Err(Errno::WOULDBLOCK) {
            return None;
        }
        let mut s = String::new();
        f.read_to_string(&mut s).ok()?;
        let mut lines = s.lines();
        let pid: i32 = lines.next()?.trim().parse().ok()?;
        let address = lines.next().unwrap_or_default().to_string();
        is_alive(pid).then_some((pid, address))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if self.dir.is(&self.name, &self.file) {
            let _ = self.dir.remove(&self.name);
        }
    }
}

/// Serialise `vaultfs mount` on one mount point (parallel start scripts):
/// an exclusive flock on `<run dir>/<name>.lock`, waited for up to `timeout`.
/// Held until the mount is live, so a second caller then sees it live.
pub fn lock(
    env: Env<'_>,
    mountpoint: &Path,
    timeout: Duration,
) -> Result<Option<fs::File>, PrivateError> {
    let Some(pid_path) = PidFile::path_for(env, mountpoint) else {
        return Ok(None);
    };
    let path = pid_path.with_extension("lock");
    let (dir, name) = private_parent(&path, true)?;
    let f = dir.open_file(&name, libc::O_WRONLY | libc::O_CREAT)?;
    let end = Instant::now() + timeout;
    loop {
        let e = match flock(&f, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Some(f)),
            Err(e) => e,
        };
        if e != Errno::WOULDBLOCK || Instant::now() >= end {
            return Err(PrivateError::Io {
                path,
                source: e.into(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The parts of `/proc/PID/stat` vaultfs reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    /// R, S, T, Z, ...
    pub state: char,
    pub ppid: u32,
    /// Clock ticks after boot.
    pub start: u64,
}

/// `/proc/PID/stat`: `comm` is in parentheses and may itself hold `)` and
/// spaces, so the fields are counted after the last `)`.
pub fn parse_stat(s: &str) -> Option<Stat> {
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s.get(open + 1..close)?.to_string();
    // After ") ": state(3) ppid(4) ... starttime(22).
    let rest: Vec<&str> = s.get(close + 1..)?.split_whitespace().collect();
    Some(Stat {
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        start: rest.get(19)?.parse().ok()?,
    })
}

/// Process `pid`'s `/proc/PID/stat`, if it exists.
pub fn proc_stat(pid: u32) -> Option<Stat> {
    let raw = fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&String::from_utf8_lossy(&raw))
}

/// The state letter of process `pid`, if it exists.
fn proc_state(pid: i32) -> Option<char> {
    proc_stat(u32::try_from(pid).ok()?).map(|s| s.state)
}

/// Running, and not a zombie waiting for a parent that never reaps.
pub fn is_alive(pid: i32) -> bool {
    proc_state(pid).is_some_and(|c| !matches!(c, 'Z' | 'X'))
}

/// Stopped by a signal (SIGSTOP, SIGTSTP) or a tracer: it cannot exit
/// until continued.
pub fn is_stopped(pid: i32) -> bool {
    matches!(proc_state(pid), Some('T' | 't'))
}

/// Wait up to `timeout` for `pid` to exit.
pub fn wait_exit(pid: i32, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if !is_alive(pid) {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn parses_mountinfo() {
        let l =
            "36 35 0:45 / /home/me/my\\040secrets rw,nosuid - fuse.vaultfs vaultfs rw,user_id=1000";
        let e = parse_mountinfo_line(l).unwrap();
        assert_eq!((e.id, e.dev.as_str()), (36, "0:45"));
        assert_eq!(e.target, PathBuf::from("/home/me/my secrets"));
        assert!(e.is_vaultfs() && e.is_fuse());
        let root = "40 1 0:50 / /mnt/s rw - fuse vaultfs rw,user_id=0";
        assert!(parse_mountinfo_line(root).unwrap().is_vaultfs());
        let other = "41 1 0:51 / /mnt/t rw shared:1 - fuse.sshfs host: rw";
        let e = parse_mountinfo_line(other).unwrap();
        assert!(e.is_fuse() && !e.is_vaultfs());
        assert!(parse_mountinfo_line("garbage").is_none());
        let odd = b"42 1 0:52 / /tmp/x/tm\xe9\\040y rw - tmpfs \xff rw\n";
        let e = parse_line(odd).unwrap();
        assert_eq!(e.target.as_os_str().as_bytes(), b"/tmp/x/tm\xe9 y");
        assert_eq!(e.fstype, "tmpfs");
    }

    proptest::proptest! {
        #[test]
        fn shown_paths_are_one_printable_field_and_read_back(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            text in "[ \\\\\t\n\r\x1b\u{85}\u{9b}\u{a0}\u{ad}\u{200b}-\u{200f}\u{2028}\u{2029}\u{202a}-\u{202e}\u{2066}-\u{2069}\u{3000}\u{feff}\u{e0041}a-zé]{0,24}",
        ) {
            for (raw, alphabet) in [(bytes, false), (text.into_bytes(), true)] {
                let p = PathBuf::from(OsString::from_vec(raw));
                let shown = Shown(&p).to_string();
                let shown_raw = |c: char| {
                    c.is_ascii_graphic()
                        || !(c.is_ascii() || unseen(c))
                };
                proptest::prop_assert!(shown.chars().all(shown_raw), "{shown:?}");
                // Of the alphabet above, only printable ASCII and a letter
                // stay as they are.
                proptest::prop_assert!(
                    !alphabet || shown.chars().all(|c| c.is_ascii_graphic() || c == 'é'),
                    "{shown:?}"
                );
                proptest::prop_assert_eq!(unescape(shown.as_bytes()), p);
            }
        }
    }

    #[test]
    fn shown_paths_escape_as_the_mount_table() {
        let p = Path::new("/m/a b\tc\nd\u{1b}[31me\\f");
        assert_eq!(
            Shown(p).to_string(),
            "/m/a\\040b\\011c\\012d\\033[31me\\134f"
        );
        let p = Path::new("/m/\u{202e}fdp.exe\u{2028}x\u{2029}\u{200b}");
        assert_eq!(
            Shown(p).to_string(),
            "/m/\\342\\200\\256fdp.exe\\342\\200\\250x\\342\\200\\251\\342\\200\\213"
        );
    }

    #[test]
    fn a_mount_point_that_is_not_utf8_is_parsed_byte_for_byte() {
        use std::os::unix::ffi::OsStrExt;
        let l = b"37 1 0:46 / /tmp/odd-\xff\\040x rw - tmpfs odd rw";
        let e = parse_line(l).unwrap();
        assert_eq!(e.target.as_os_str().as_bytes(), b"/tmp/odd-\xff x");
        assert_eq!((e.id, e.fstype.as_str()), (37, "tmpfs"));
    }

    #[test]
    fn a_mount_is_found_again_by_id_and_device_only() {
        let root = mount_at(Path::new("/")).expect("/ is mounted");
        assert_eq!(find_again(&root), Some(root.clone()));
        // The same id with another device is another mount (ids are reused).
        let other = MountEntry {
            dev: "999:999".into(),
            ..root.clone()
        };
        assert_eq!(find_again(&other), None);
        // Not in the table: nothing is unmounted, whatever its path.
        let gone = MountEntry {
            id: u64::MAX,
            ..root
        };
        assert_eq!(unmount(&gone, false).unwrap(), Unmounted::Gone);
    }

    #[test]
    fn pid_file_names_are_unique_and_flat() {
        assert_eq!(
            pid_file_name(Path::new("/home/me/secrets")),
            "home%2Fme%2Fsecrets.pid"
        );
        assert_ne!(
            pid_file_name(Path::new("/a/b")),
            pid_file_name(Path::new("/a%2Fb"))
        );
        assert_eq!(pid_file_name(Path::new("/x y")), "x%20y.pid");
    }

    #[test]
    fn dirs_follow_xdg() {
        let env = |k: &str| match k {
            "HOME" => Some("/home/me".to_string()),
            "XDG_RUNTIME_DIR" => Some("/run/user/1000".to_string()),
            _ => None,
        };
        assert_eq!(
            state_dir(&env).unwrap(),
            PathBuf::from("/home/me/.local/state/vaultfs")
        );
        assert_eq!(
            run_dir(&env).unwrap(),
            PathBuf::from("/run/user/1000/vaultfs")
        );
        let bare = |k: &str| (k == "HOME").then(|| "/h".to_string());
        assert_eq!(
            run_dir(&bare).unwrap(),
            PathBuf::from("/h/.local/state/vaultfs/run")
        );
    }

    #[test]
    fn pid_file_is_live_while_held() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("run/x.pid");
        let me = std::process::id() as i32;
        let held = PidFile::create(&path, "https://vault:8200/\nforged").unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{me}\nhttps://vault:8200/forged\n")
        );
        let info = PidFile::read_live_info(&path);
        assert_eq!(info, Some((me, "https://vault:8200/forged".to_string())));
        // Asked twice: testing takes no lock that outlives the test.
        assert_eq!(PidFile::read_live(&path), Some(me));
        assert_eq!(PidFile::read_live(&path), Some(me));
        drop(held);
        assert!(!path.exists());
        // The right pid in a file nobody holds: its writer is gone.
        fs::write(&path, format!("{me}\n")).unwrap();
        assert_eq!(PidFile::read_live(&path), None);
    }

    #[test]
    fn own_process_is_alive() {
        assert!(is_alive(std::process::id() as i32));
        assert!(!is_alive(i32::MAX));
    }

    #[test]
    fn stat_with_a_hostile_comm() {
        let s = parse_stat("12 (a) b (c) S 7 12 12 0 -1 4194304 1 0 0 0 0 0 0 0 20 0 1 0 4242 0 0")
            .unwrap();
        assert_eq!(
            s,
            Stat {
                comm: "a) b (c".into(),
                state: 'S',
                ppid: 7,
                start: 4242
            }
        );
        assert_eq!(parse_stat("12 (x"), None);
        let me = proc_stat(std::process::id()).unwrap();
        assert!(me.start > 0 && me.ppid > 0);
    }
}
