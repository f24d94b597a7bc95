//! The files vaultfs keeps for itself: pid, lock and log files. Their
//! directories may come from the environment (`XDG_RUNTIME_DIR`,
//! `XDG_STATE_HOME`) and so lie in a place other users can write to, where
//! they could plant a symlink or a directory of their own. So a directory is
//! used only if it is ours and nobody else can write to it, it is opened
//! once and every file is opened relative to that handle (no path is looked
//! up twice), and no symlink is followed.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag};
use nix::sys::stat::{self, Mode};
use nix::unistd::{self, UnlinkatFlags};

#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is a symlink: refusing to follow it")]
    Symlink { path: PathBuf },
    #[error("{path} belongs to uid {owner}, not to uid {me}: refusing to use it")]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "{path} is writable by other users (mode {mode:04o}): refusing to use it (chmod go-w)"
    )]
    Writable { path: PathBuf, mode: u32 },
    #[error("{path} is not a {want}")]
    WrongType { path: PathBuf, want: &'static str },
    #[error("{path} has other hard links: refusing to write to it")]
    Linked { path: PathBuf },
}

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

pub fn fstat(fd: impl AsFd) -> io::Result<libc::stat> {
    Ok(stat::fstat(fd)?)
}

/// A directory checked to be ours and closed to others, held open.
#[derive(Debug)]
pub struct PrivateDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl PrivateDir {
    /// Open `path`, first creating it and missing parents (0700) when
    /// `create`. Refused: a symlink, a directory of another user, or one
    /// that group or others may write to (they could swap files in it).
    pub fn open(path: &Path, create: bool) -> Result<PrivateDir, PrivateError> {
        Self::open_as(path, create, true)
    }

    /// The directory of a log file the user named (`--log-file`): held open
    /// like a private one, so that a rotation renames and reopens relative
    /// to it and never through a symlink at the file's name, but not checked
    /// for owner and mode: where the user keeps a file is the user's choice
    /// (a directory symlink above it included).
    pub fn open_chosen(path: &Path, create: bool) -> Result<PrivateDir, PrivateError> {
        Self::open_as(path, create, false)
    }

    fn open_as(path: &Path, create: bool, checked: bool) -> Result<PrivateDir, PrivateError> {
        let io_err = |source| PrivateError::Io {
            path: path.to_path_buf(),
            source,
        };
        if create {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io_err)?;
        }
        let mut flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        if checked {
            flags |= OFlag::O_NOFOLLOW;
        }
        let fd = match fcntl::open(path, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                // With O_DIRECTORY a symlink fails ENOTDIR, not ELOOP.
                let link =
                    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
                return Err(match e {
                    Errno::ELOOP | Errno::ENOTDIR if link => PrivateError::Symlink {
                        path: path.to_path_buf(),
                    },
                    Errno::ENOTDIR => PrivateError::WrongType {
                        path: path.to_path_buf(),
                        want: "directory",
                    },
                    _ => io_err(e.into()),
                });
            }
        };
        if !checked {
            return Ok(PrivateDir {
                fd,
                path: path.to_path_buf(),
            });
        }
        let st = fstat(&fd).map_err(io_err)?;
        if st.st_uid != euid() {
            return Err(PrivateError::NotOwned {
                path: path.to_path_buf(),
                owner: st.st_uid,
                me: euid(),
            });
        }
        if st.st_mode & 0o022 != 0 {
            return Err(PrivateError::Writable {
                path: path.to_path_buf(),
                mode: st.st_mode & 0o7777,
            });
        }
        Ok(PrivateDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Open `name` in this directory with `flags` (plus `O_NOFOLLOW` and
    /// `O_CLOEXEC`; created `0600` with `O_CREAT`), and check it is a file
    /// of ours with no other name: a hard link planted to another file of
    /// ours would otherwise be written to.
    pub fn open_file(&self, name: &OsStr, flags: libc::c_int) -> Result<File, PrivateError> {
        let path = self.path.join(name);
        open_checked(&self.fd, &path, name, flags)
    }

    /// Remove `name` (a symlink itself, never what it points to); absent is fine.
    pub fn remove(&self, name: &OsStr) -> io::Result<()> {
        match unistd::unlinkat(&self.fd, name, UnlinkatFlags::NoRemoveDir) {
            Err(e) if e != Errno::ENOENT => Err(e.into()),
            _ => Ok(()),
        }
    }

    pub fn rename(&self, from: &OsStr, to: &OsStr) -> io::Result<()> {
        Ok(fcntl::renameat(&self.fd, from, &self.fd, to)?)
    }

    /// Whether `name` here is (still) the file `f`, not following symlinks.
    pub fn is(&self, name: &OsStr, f: &File) -> bool {
        match (
            stat::fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW),
            stat::fstat(f),
        ) {
            (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
            _ => false,
        }
    }
}

fn open_checked(
    dir: &OwnedFd,
    path: &Path,
    name: &OsStr,
    flags: libc::c_int,
) -> Result<File, PrivateError> {
    let io_err = |source| PrivateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let flags = OFlag::from_bits_retain(flags) | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd =
        fcntl::openat(dir, name, flags, Mode::from_bits_truncate(0o600)).map_err(|e| match e {
            Errno::ELOOP => PrivateError::Symlink {
                path: path.to_path_buf(),
            },
            _ => io_err(e.into()),
        })?;
    let st = fstat(&fd).map_err(io_err)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(PrivateError::WrongType {
            path: path.to_path_buf(),
            want: "regular file",
        });
    }
    if st.st_uid != euid() {
        return Err(PrivateError::NotOwned {
            path: path.to_path_buf(),
            owner: st.st_uid,
            me: euid(),
        });
    }
    if st.st_nlink > 1 {
        return Err(PrivateError::Linked {
            path: path.to_path_buf(),
        });
    }
    Ok(File::from(fd))
}

/// The directory of the file `path` names, and its name there.
pub fn dir_and_name(path: &Path) -> Result<(&Path, &OsStr), PrivateError> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name)),
        _ => Err(PrivateError::WrongType {
            path: path.to_path_buf(),
            want: "file name",
        }),
    }
}

/// An open log file with the directory it lives in, so it can be rotated
/// and reopened by name (relative to `dir`, never following a symlink).
#[derive(Debug)]
pub struct LogFile {
    pub dir: PrivateDir,
    pub name: std::ffi::OsString,
    pub file: File,
}

/// The flags the log is opened with: appended, created `0600`.
pub const LOG_FLAGS: libc::c_int = libc::O_WRONLY | libc::O_APPEND | libc::O_CREAT;

/// Open the log file for appending, created `0600`. The default log (in the
/// state directory) gets the directory checks of [`PrivateDir`]; a path the
/// user gave with `--log-file` gets the file checks only: not a symlink,
/// ours, one link. A missing directory is created `0700` either way.
pub fn open_log(path: &Path, default_place: bool) -> Result<LogFile, PrivateError> {
    let (dir, name) = dir_and_name(path)?;
    let dir = if default_place {
        PrivateDir::open(dir, true)?
    } else {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        PrivateDir::open_chosen(dir, true)?
    };
    let file = dir.open_file(name, LOG_FLAGS)?;
    Ok(LogFile {
        dir,
        name: name.to_owned(),
        file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::fs::{symlink, PermissionsExt};

    const RW_CREATE: libc::c_int = libc::O_RDWR | libc::O_CREAT;

    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn creates_0700_dirs_and_0600_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b");
        let dir = PrivateDir::open(&d, true).unwrap();
        assert_eq!(mode(&d), 0o700);
        assert_eq!(mode(&t.path().join("a")), 0o700);
        let mut f = dir.open_file(OsStr::new("x"), RW_CREATE).unwrap();
        f.write_all(b"1").unwrap();
        assert_eq!(mode(&d.join("x")), 0o600);
        assert!(dir.is(OsStr::new("x"), &f));
        dir.rename(OsStr::new("x"), OsStr::new("y")).unwrap();
        assert!(dir.is(OsStr::new("y"), &f) && !dir.is(OsStr::new("x"), &f));
        dir.remove(OsStr::new("y")).unwrap();
        dir.remove(OsStr::new("y")).unwrap();
        assert!(!d.join("y").exists());
        assert!(PrivateDir::open(&t.path().join("missing"), false).is_err());
    }

    #[test]
    fn refuses_symlinks_shared_dirs_and_links() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        let dir = PrivateDir::open(&real, true).unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();

        symlink(&real, t.path().join("link")).unwrap();
        let e = PrivateDir::open(&t.path().join("link"), true).unwrap_err();
        assert!(matches!(e, PrivateError::Symlink { .. }), "{e}");

        symlink(&victim, real.join("planted")).unwrap();
        let e = dir.open_file(OsStr::new("planted"), RW_CREATE).unwrap_err();
        assert!(matches!(e, PrivateError::Symlink { .. }), "{e}");
        std::fs::hard_link(&victim, real.join("hard")).unwrap();
        let e = dir.open_file(OsStr::new("hard"), RW_CREATE).unwrap_err();
        assert!(matches!(e, PrivateError::Linked { .. }), "{e}");
        let mut s = String::new();
        File::open(&victim).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "keep");

        let shared = t.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o770)).unwrap();
        let e = PrivateDir::open(&shared, false).unwrap_err();
        assert!(
            matches!(e, PrivateError::Writable { mode: 0o770, .. }),
            "{e}"
        );

        let e = open_log(&t.path().join("link/x.log"), false);
        assert!(
            e.is_ok(),
            "a directory symlink above the file is the user's choice"
        );
        symlink(&victim, t.path().join("log")).unwrap();
        let e = open_log(&t.path().join("log"), false).unwrap_err();
        assert!(matches!(e, PrivateError::Symlink { .. }), "{e}");
    }
}
