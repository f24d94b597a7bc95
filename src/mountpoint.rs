//! The mount point on disk: what the kernel's mount table says is there,
//! dead FUSE mounts left by a killed daemon, unmounting, and the pid file
//! that ties a mount point to its daemon.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::cli::{self, Env};

/// The FUSE superblock magic (`statfs.f_type`), see linux/magic.h.
const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// One line of /proc/self/mountinfo, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub target: PathBuf,
    pub fstype: String,
    pub source: String,
}

impl MountEntry {
    /// Through fusermount3 the type is `fuse.vaultfs`; a direct mount(2) by
    /// root gives type `fuse` with source `vaultfs`.
    pub fn is_vaultfs(&self) -> bool {
        self.fstype == "fuse.vaultfs" || (self.fstype == "fuse" && self.source == "vaultfs")
    }

    pub fn is_fuse(&self) -> bool {
        self.fstype == "fuse" || self.fstype.starts_with("fuse.")
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
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

pub fn parse_mountinfo_line(line: &str) -> Option<MountEntry> {
    let (pre, post) = line.split_once(" - ")?;
    let target = pre.split(' ').nth(4)?;
    let mut post = post.split(' ');
    let fstype = post.next()?.to_string();
    let source = post.next().unwrap_or("").to_string();
    Some(MountEntry {
        target: unescape(target),
        fstype,
        source,
    })
}

/// The topmost mount at exactly `path` (later lines stack over earlier ones).
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    fs::read_to_string("/proc/self/mountinfo")
        .ok()?
        .lines()
        .rev()
        .filter_map(parse_mountinfo_line)
        .find(|e| e.target == path)
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
    /// Some other filesystem is mounted there.
    Other(String),
}

pub fn state(path: &Path) -> State {
    let Some(entry) = mount_at(path) else {
        return State::Free;
    };
    match fs::metadata(path) {
        // ECONNABORTED: the connection was aborted through /sys/fs/fuse.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {
            State::Dead
        }
        _ if entry.is_vaultfs() => State::Live,
        _ => State::Other(entry.fstype),
    }
}

/// An absolute path in the form the mount table uses, resolved without
/// touching the last component when it can (stat on a dead mount fails).
pub fn resolve(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if fs::symlink_metadata(&abs).is_ok_and(|m| m.file_type().is_symlink()) {
        if let Ok(p) = abs.canonicalize() {
            return p;
        }
    }
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .map(|d| d.join(name))
            .unwrap_or_else(|_| abs.clone()),
        _ => abs,
    }
}

/// Whether `path` is the root of a FUSE filesystem (statfs, not the table).
pub fn is_fuse_root(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills a zeroed struct; `c` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == FUSE_SUPER_MAGIC
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Unmount `path`. `lazy` detaches it even while files are open. Root calls
/// umount2(2); other users go through the setuid `fusermount3` (or FUSE 2's
/// `fusermount`).
pub fn unmount(path: &Path, lazy: bool) -> io::Result<()> {
    if is_root() {
        let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        let flags = if lazy { libc::MNT_DETACH } else { 0 };
        // SAFETY: `c` is a valid C string.
        if unsafe { libc::umount2(c.as_ptr(), flags) } == 0 {
            return Ok(());
        }
        return Err(io::Error::last_os_error());
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
        .or_else(|| cli::home(env).map(|h| h.join(".local/state")))
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

/// The daemon's pid file; removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    pub fn path_for(env: Env<'_>, mountpoint: &Path) -> Option<PathBuf> {
        run_dir(env).map(|d| d.join(pid_file_name(mountpoint)))
    }

    pub fn create(path: PathBuf) -> io::Result<PidFile> {
        use std::os::unix::fs::DirBuilderExt;
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, format!("{}\n", std::process::id()))?;
        fs::rename(&tmp, &path)?;
        Ok(PidFile { path })
    }

    /// The pid recorded in `path`, if that process is still a live vaultfs
    /// daemon (holds /dev/fuse open: guards against pid reuse).
    pub fn read_live(path: &Path) -> Option<i32> {
        let pid: i32 = fs::read_to_string(path).ok()?.trim().parse().ok()?;
        (is_alive(pid) && holds_dev_fuse(pid)).then_some(pid)
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only remove it if it is still ours (a new daemon may have replaced it).
        let ours = fs::read_to_string(&self.path)
            .is_ok_and(|s| s.trim() == std::process::id().to_string());
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Serialise `vaultfs mount` on one mount point (parallel start scripts):
/// an exclusive flock on `<run dir>/<name>.lock`, waited for up to `timeout`.
/// Held until the mount is live, so a second caller then sees it live.
pub fn lock(env: Env<'_>, mountpoint: &Path, timeout: Duration) -> io::Result<Option<fs::File>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let Some(pid_path) = PidFile::path_for(env, mountpoint) else {
        return Ok(None);
    };
    if let Some(dir) = pid_path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(pid_path.with_extension("lock"))?;
    let end = Instant::now() + timeout;
    loop {
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(Some(f));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) || Instant::now() >= end {
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Running, and not a zombie waiting for a parent that never reaps.
pub fn is_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

fn holds_dev_fuse(pid: i32) -> bool {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.flatten()
        .any(|e| fs::read_link(e.path()).is_ok_and(|l| l == Path::new("/dev/fuse")))
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

    #[test]
    fn parses_mountinfo() {
        let l =
            "36 35 0:45 / /home/me/my\\040secrets rw,nosuid - fuse.vaultfs vaultfs rw,user_id=1000";
        let e = parse_mountinfo_line(l).unwrap();
        assert_eq!(e.target, PathBuf::from("/home/me/my secrets"));
        assert!(e.is_vaultfs() && e.is_fuse());
        let root = "40 1 0:50 / /mnt/s rw - fuse vaultfs rw,user_id=0";
        assert!(parse_mountinfo_line(root).unwrap().is_vaultfs());
        let other = "41 1 0:51 / /mnt/t rw shared:1 - fuse.sshfs host: rw";
        let e = parse_mountinfo_line(other).unwrap();
        assert!(e.is_fuse() && !e.is_vaultfs());
        assert!(parse_mountinfo_line("garbage").is_none());
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
    fn own_process_is_alive() {
        assert!(is_alive(std::process::id() as i32));
        assert!(!is_alive(i32::MAX));
    }
}
