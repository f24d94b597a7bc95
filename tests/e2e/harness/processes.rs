//! The processes a test starts: the vaultfs binary run to completion or
//! kept (dying with the test process), the one poll-with-a-deadline every
//! wait goes through, and the unprivileged user (65534) tests run things as.

pub use nix::sys::signal::Signal;
#[cfg(feature = "bao_tests")]
use std::net::TcpListener;
#[cfg(feature = "bao_tests")]
use std::os::unix::process::CommandExt;
#[cfg(feature = "root_tests")]
use std::path::Path;
use std::path::PathBuf;
#[cfg(feature = "bao_tests")]
use std::process::Child;
use std::process::{Command, Output, Stdio};
#[cfg(feature = "bao_tests")]
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::Duration;
#[cfg(feature = "bao_tests")]
use std::time::Instant;

#[cfg(feature = "root_tests")]
use super::StateDirs;

pub fn vaultfs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vaultfs"))
}

#[cfg(feature = "bao_tests")]
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[cfg(feature = "bao_tests")]
type SpawnReq = (Command, mpsc::Sender<std::io::Result<Child>>);

#[cfg(feature = "bao_tests")]
/// Spawn a child that dies with the test process. PR_SET_PDEATHSIG fires
/// when the spawning *thread* exits, so children are spawned from one
/// thread that lives as long as the process.
pub fn spawn_kept(mut cmd: Command) -> Child {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnReq>>> = OnceLock::new();
    let tx = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnReq>();
        std::thread::spawn(move || {
            for (mut cmd, back) in rx {
                // SAFETY: the hook runs in the forked child before exec, where
                // only async-signal-safe calls are sound: it makes one
                // prctl(2) call and allocates nothing. std has no safe way to
                // run code between fork and exec.
                unsafe {
                    cmd.pre_exec(|| {
                        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
                        Ok(())
                    });
                }
                let _ = back.send(cmd.spawn());
            }
        });
        Mutex::new(tx)
    });
    let (back, rx) = mpsc::channel();
    // Command is Send; the keeper spawns it.
    tx.lock()
        .unwrap()
        .send((std::mem::replace(&mut cmd, Command::new("true")), back))
        .unwrap();
    rx.recv().unwrap().expect("spawn")
}

/// Whether `f` came to hold within `timeout`, asked every 50 ms. Every
/// wait for something running in the background (a daemon, a mount, a
/// renewal, a log line) goes through here, never through a fixed sleep.
#[cfg(feature = "bao_tests")]
pub fn poll(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`poll`], failing the test when `f` did not come to hold.
#[cfg(feature = "fuse_tests")]
pub fn wait_until(what: &str, timeout: Duration, f: impl FnMut() -> bool) {
    assert!(
        poll(timeout, f),
        "timed out after {timeout:?} waiting for {what}"
    );
}

#[cfg(feature = "fuse_tests")]
/// Poll `reading` every 150 ms until it has not changed for four polls
/// (no request logged for ~0.6 s, for an audit log's size); returns it.
pub fn settled<T: PartialEq>(mut reading: impl FnMut() -> T) -> T {
    let (mut last, mut still) = (None, 0);
    while still < 4 {
        let now = Some(reading());
        still = if now == last { still + 1 } else { 0 };
        last = now;
        std::thread::sleep(Duration::from_millis(150));
    }
    last.unwrap()
}

/// Run to completion within `secs`. A daemon that kept the caller's
/// stdout/stderr open would hang `output()`: that is a failure too.
pub fn run(mut cmd: Command, secs: u64) -> Output {
    cmd.stdin(Stdio::null());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(cmd.output().unwrap()));
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("command did not finish (did the daemon keep stdout/stderr open?)")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn assert_ok(o: &Output, what: &str) {
    assert!(o.status.success(), "{what} failed: {}", stderr(o));
}

/// Exit non-zero with exactly one stderr line containing `want`.
pub fn assert_fails(o: &Output, want: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "expected failure, got success");
    assert_eq!(err.lines().count(), 1, "want one stderr line, got: {err:?}");
    assert!(
        err.starts_with("vaultfs: ") && err.contains(want),
        "stderr {err:?} should mention {want:?}"
    );
}

/// [`assert_fails`], with the exit status the failure maps to.
pub fn assert_exit(o: &Output, exit: vaultfs::testing::exit::Exit, want: &str) {
    assert_fails(o, want);
    assert_eq!(
        o.status.code(),
        Some(exit.code().into()),
        "{want:?} should exit {exit:?}: {}",
        stderr(o)
    );
}

#[cfg(feature = "bao_tests")]
pub fn alive(pid: i32) -> bool {
    vaultfs::testing::mountpoint::is_alive(pid)
}

/// Sends `sig` to `pid`, a process the test started. One that is already
/// gone is no error here: callers that care ask [`alive`].
pub fn signal(pid: i32, sig: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

#[cfg(feature = "fuse_tests")]
/// A `kB` field of /proc/PID/status (`field` without its colon: "VmRSS").
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

#[cfg(feature = "root_tests")]
/// Runs the bash script `body` as root in a mount namespace of its own
/// (mounts made there leave no trace here) where user nobody (65534) can
/// mount through the setuid fusermount3: a 0666 node for the FUSE device is
/// bound over the root-only /dev/fuse. The script has `$D` (a temporary
/// directory anyone can traverse), `$H` (nobody's home), `$BIN` (a vaultfs
/// nobody can run), `$PIDS` (where vaultfs keeps the pid files of `$H`) and
/// `env`. `as_user CMD` runs CMD as nobody with only PATH (`$USER_PATH`,
/// else /usr/bin:/bin), HOME, VAULT_ADDR=$ADDR, VAULT_TOKEN=$TOKEN and
/// VAULTFS_BIN=$BIN. A daemon left in a pid file is killed at the end.
pub fn run_as_nobody(body: &str, env: &[(&str, &str)], secs: u64) -> Output {
    use std::os::unix::fs::PermissionsExt;
    let top = tempfile::tempdir().unwrap();
    std::fs::set_permissions(top.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let home = top.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&home, Some(65534), Some(65534)).unwrap();
    let bin = top.path().join("vaultfs");
    std::fs::copy(vaultfs_bin(), &bin).unwrap();
    let script = format!(
        r#"
set -u
mknod "$D/fuse" c 10 229 && chmod 666 "$D/fuse" && mount --bind "$D/fuse" /dev/fuse || exit 20
as_user() {{ setpriv --reuid=65534 --regid=65534 --clear-groups -- env -i PATH="${{USER_PATH:-/usr/bin:/bin}}" HOME="$H" VAULT_ADDR="$ADDR" VAULT_TOKEN="$TOKEN" VAULTFS_BIN="$BIN" "$@"; }}
cleanup() {{ for f in "$PIDS"/*.pid; do [ -f "$f" ] && p=$(head -n1 "$f") && kill -CONT "$p" && kill -9 "$p"; done; }}
trap cleanup EXIT
{body}
"#
    );
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "bash", "-c", &script])
        .env("D", top.path())
        .env("H", &home)
        .env("BIN", &bin)
        .env("PIDS", StateDirs::of_home(&home).run)
        .envs(env.iter().copied());
    run(c, secs)
}

#[cfg(feature = "root_tests")]
/// The checks of a script run by [`run_as_nobody`] that mounted as
/// user 65534 through fusermount3 and printed `value=…`, the mount's
/// `type=…` line from mountinfo and, last, `done`.
pub fn assert_mounted_as_nobody(o: &Output, value: &str) {
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(o));
    assert!(out.contains(&format!("value={value}\n")), "{out}");
    // fusermount3 mounted it (type fuse.vaultfs), as the user (user_id).
    assert!(
        out.contains("type=fuse.vaultfs vaultfs ro,user_id=65534"),
        "{out}"
    );
    assert!(out.ends_with("done\n"), "{out}");
}

#[cfg(feature = "root_tests")]
/// `cat PATH` as user and group `nobody` (65534): (succeeded, stdout and
/// stderr).
pub fn as_nobody_cat(path: &Path) -> (bool, String) {
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(path)
        .output()
        .expect("setpriv (util-linux) is needed for this test");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}
