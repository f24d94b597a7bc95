//! Mounts: the mount table as the crate reads it, a live `vaultfs mount
//! --foreground` that is unmounted when dropped, a private HOME whose
//! daemons and mounts are cleaned up, and reading through a mount.

use std::path::{Path, PathBuf};
use std::process::Command;
#[cfg(feature = "fuse_tests")]
use std::process::{Child, Stdio};
#[cfg(feature = "fuse_tests")]
use std::sync::mpsc;
#[cfg(feature = "fuse_tests")]
use std::time::Duration;

#[cfg(feature = "fuse_tests")]
use super::Bao;
#[cfg(feature = "fuse_tests")]
use super::{poll, spawn_kept};
use super::{signal, vaultfs_bin, Signal};

/// Every entry of /proc/self/mountinfo, read with the crate's parser.
pub fn mounts() -> Vec<vaultfs::testing::mountpoint::MountEntry> {
    vaultfs::testing::mountpoint::table()
}

/// Whether `path` is a mount point.
pub fn is_mounted(path: &Path) -> bool {
    mount_count(path) > 0
}

/// How many mounts are stacked at `path`.
pub fn mount_count(path: &Path) -> usize {
    mounts().iter().filter(|e| e.target == path).count()
}

#[cfg(feature = "fuse_tests")]
/// A live `vaultfs mount --foreground` on a temporary directory.
pub struct Mount {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub log: PathBuf,
}

#[cfg(feature = "fuse_tests")]
#[derive(Clone)]
pub struct MountOpts<'a> {
    pub token: &'a str,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

#[cfg(feature = "fuse_tests")]
impl<'a> MountOpts<'a> {
    pub fn new(token: &'a str) -> Self {
        MountOpts {
            token,
            args: Vec::new(),
            env: Vec::new(),
        }
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
}

#[cfg(feature = "fuse_tests")]
/// A vaultfs command with a clean environment pointing at `bao`.
pub fn vaultfs_cmd(bao: &Bao, token: &str) -> Command {
    let mut c = vaultfs_cmd_at(&bao.addr, token);
    if let Some(ca) = bao.ca_file() {
        c.env("VAULT_CACERT", ca);
    }
    c
}

/// A vaultfs command whose only VAULT_* and BAO_* settings are `addr` and
/// `token`.
pub fn vaultfs_cmd_at(addr: &str, token: &str) -> Command {
    let mut c = Command::new(vaultfs_bin());
    for (k, _) in std::env::vars() {
        if k.starts_with("VAULT_") || k.starts_with("BAO_") {
            c.env_remove(k);
        }
    }
    c.env("VAULT_ADDR", addr).env("VAULT_TOKEN", token);
    c
}

#[cfg(feature = "fuse_tests")]
impl Mount {
    pub fn new(bao: &Bao, token: &str) -> Mount {
        Mount::with(bao, MountOpts::new(token))
    }

    pub fn with(bao: &Bao, o: MountOpts) -> Mount {
        let cmd = vaultfs_cmd(bao, o.token);
        Mount::foreground(cmd, &o.args, &o.env, Duration::from_secs(20))
    }

    /// A mount of any server at `addr` (a cluster node, a proxy, a fake
    /// Vault), with `args` and then `env`; waits up to `wait` for it.
    pub fn at(
        addr: &str,
        token: &str,
        args: &[&str],
        env: &[(&str, &str)],
        wait: Duration,
    ) -> Mount {
        Mount::foreground(vaultfs_cmd_at(addr, token), args, env, wait)
    }

    /// `cmd mount --foreground DIR ARGS` on a new temporary directory, at
    /// log level $VAULTFS_TEST_LOG (default info); `env` is set last, so a
    /// test's own RUST_LOG wins.
    fn foreground<A, K, V>(mut cmd: Command, args: &[A], env: &[(K, V)], wait: Duration) -> Mount
    where
        A: AsRef<std::ffi::OsStr>,
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let dir = tempfile::tempdir().unwrap();
        cmd.arg("mount")
            .arg("--foreground")
            .arg(dir.path())
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("VAULTFS_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        for (k, v) in env {
            cmd.env(k, v);
        }
        Mount::spawn(cmd, dir, wait)
    }

    /// Runs `cmd` (a `vaultfs mount --foreground` on `dir`) with its stderr
    /// in a log beside `dir`, and waits up to `wait` for the mount.
    fn spawn(mut cmd: Command, dir: tempfile::TempDir, wait: Duration) -> Mount {
        let log = dir.path().with_extension("log");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = spawn_kept(cmd);
        let up = poll(wait, || {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "vaultfs exited with {st}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            is_mounted(dir.path())
        });
        assert!(
            up,
            "mount did not come up: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Mount {
            dir,
            child: Some(child),
            log,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Run `f` on another thread while the daemon is stopped (SIGSTOP):
    /// its result if it finished within 10 s, `None` if it waited for the
    /// daemon. The daemon is continued either way.
    pub fn while_stopped<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let pid = self.pid() as i32;
        signal(pid, Signal::SIGSTOP);
        let (tx, rx) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        let got = rx.recv_timeout(Duration::from_secs(10)).ok();
        signal(pid, Signal::SIGCONT);
        worker.join().unwrap();
        got
    }
}

#[cfg(feature = "fuse_tests")]
impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id() as i32, Signal::SIGTERM);
            poll(Duration::from_secs(5), || {
                matches!(c.try_wait(), Ok(Some(_)))
            });
            let _ = c.kill();
            let _ = c.wait();
        }
        if is_mounted(self.dir.path()) {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(self.dir.path())
                .status();
        }
        // The log sits beside the temporary directory, not in it.
        let _ = std::fs::remove_file(&self.log);
    }
}

pub fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[cfg(feature = "fuse_tests")]
pub fn names(p: impl AsRef<Path>) -> Vec<String> {
    let p = p.as_ref();
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", p.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[cfg(feature = "fuse_tests")]
/// The errno of listing a directory: 0 if it opens and reads whole. A
/// listing Vault refuses fails on the first read, not at open (the kernel
/// opens directories without asking vaultfs; docs/semantics.md).
pub fn list_errno(p: impl AsRef<Path>) -> i32 {
    match std::fs::read_dir(p) {
        Ok(entries) => entries.map(errno_of).find(|&e| e != 0).unwrap_or(0),
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

#[cfg(feature = "fuse_tests")]
pub fn errno_of<T>(r: std::io::Result<T>) -> i32 {
    match r {
        Ok(_) => 0,
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

/// Where vaultfs keeps its log (`state`) and pid files (`run`) for an
/// environment, resolved by the crate itself (its unit tests pin the
/// layout).
pub struct StateDirs {
    #[cfg(feature = "fuse_tests")]
    pub state: PathBuf,
    pub run: PathBuf,
}

impl StateDirs {
    /// For the environment `vars` (HOME, XDG_STATE_HOME, XDG_RUNTIME_DIR).
    pub fn of(vars: &[(&str, &Path)]) -> StateDirs {
        let env = |k: &str| {
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
        };
        StateDirs {
            #[cfg(feature = "fuse_tests")]
            state: vaultfs::testing::mountpoint::state_dir(&env).expect("a state directory"),
            run: vaultfs::testing::mountpoint::run_dir(&env).expect("a run directory"),
        }
    }

    /// For HOME `home` and no XDG_* variables.
    pub fn of_home(home: &Path) -> StateDirs {
        StateDirs::of(&[("HOME", home)])
    }

    #[cfg(feature = "fuse_tests")]
    /// The pid file of the daemon of mount point `mp`.
    pub fn pid_file(&self, mp: &Path) -> PathBuf {
        self.run
            .join(vaultfs::testing::mountpoint::pid_file_name(mp))
    }

    #[cfg(feature = "fuse_tests")]
    /// The default log.
    pub fn log(&self) -> PathBuf {
        self.state.join("vaultfs.log")
    }
}

/// A private HOME (so ~/secrets, the log and pid files belong to the test).
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    #[cfg(feature = "fuse_tests")]
    pub fn secrets(&self) -> PathBuf {
        self.path().join("secrets")
    }
    /// Its log and pid-file directories (`cmd` clears the XDG_* variables).
    pub fn dirs(&self) -> StateDirs {
        StateDirs::of_home(self.path())
    }
    #[cfg(feature = "fuse_tests")]
    pub fn pid_file(&self, mp: &Path) -> PathBuf {
        self.dirs().pid_file(mp)
    }
    #[cfg(feature = "fuse_tests")]
    pub fn pid(&self, mp: &Path) -> i32 {
        let f = self.pid_file(mp);
        std::fs::read_to_string(&f)
            .unwrap_or_else(|e| panic!("pid file {}: {e}", f.display()))
            .lines()
            .next()
            .unwrap_or_default()
            .parse()
            .unwrap()
    }
    #[cfg(feature = "fuse_tests")]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dirs().log()).unwrap_or_default()
    }
    #[cfg(feature = "fuse_tests")]
    /// `vaultfs ARGS` with this HOME, pointing at `bao` with `token`.
    pub fn cmd(&self, bao: &Bao, token: &str, args: &[&str]) -> Command {
        let mut c = vaultfs_cmd(bao, token);
        c.args(args)
            .env("HOME", self.path())
            .env("RUST_LOG", "info")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_STATE_HOME")
            .env_remove("NOTIFY_SOCKET");
        c
    }
}

impl Drop for Home {
    /// Never leave a daemon or a mount behind, whatever the test did.
    fn drop(&mut self) {
        for e in std::fs::read_dir(self.dirs().run)
            .into_iter()
            .flatten()
            .flatten()
        {
            // Only a daemon that still holds its pid file's lock: the pid
            // of a killed one may belong to another process by now.
            if let Some(pid) = vaultfs::testing::mountpoint::PidFile::read_live(&e.path()) {
                signal(pid, Signal::SIGKILL);
            }
        }
        for e in mounts() {
            if e.target.starts_with(self.path()) {
                let _ = Command::new("umount").arg("-l").arg(&e.target).status();
            }
        }
    }
}
