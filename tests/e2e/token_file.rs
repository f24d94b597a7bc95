//! Token files and tokens that change or expire, against a real OpenBao
//! and real mounts: a token file that is not a regular file is refused at
//! mount (at once, not past --wait) and ignored at run time (the token in
//! hand is kept, nothing blocks); a symlinked one works; with a read-only
//! token that expires, unknown names are EACCES, never directories, and a
//! new token in the file works at once.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::*;
use serde_json::json;

fn bao() -> &'static Bao {
    static SEEDED: OnceLock<()> = OnceLock::new();
    let b = Bao::shared();
    SEEDED.get_or_init(|| {
        b.put("secret", "tf/app/db", json!({"password": "ro"}));
        b.put("secret", "tf/app/db3", json!({"password": "ro3"}));
        b.put("secret", "tf/plain", json!({"k": "v"}));
    });
    b
}

fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// `f` on a thread of its own, given 10 s: a read that blocks on the
/// daemon fails the test instead of hanging it.
fn within_10s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what} blocked"))
}

/// Write `token` to `file` the way Vault Agent does: a new file renamed over.
fn replace(file: &Path, token: &str) {
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, format!("{token}\n")).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

/// A mount whose token is in `file`, with `--ttl TTL`.
fn token_file_mount(file: &Path, ttl: &str) -> Mount {
    let o = MountOpts::new("unused")
        .arg("--token-file")
        .arg(file.to_str().unwrap())
        .arg("--ttl")
        .arg(ttl);
    Mount::with(bao(), o)
}

/// `vaultfs mount MP --wait WAIT --token-file FILE`: its output and how
/// long it took.
fn mount_with_token_file(
    h: &Home,
    mp: &Path,
    file: &Path,
    wait: &str,
) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let args = [
        "mount",
        mp.to_str().unwrap(),
        "--wait",
        wait,
        "--token-file",
        file.to_str().unwrap(),
    ];
    let o = run(h.cmd(bao(), ROOT_TOKEN, &args), 30);
    (o, started.elapsed())
}

#[test]
fn a_token_file_that_is_not_a_regular_file_is_refused_at_mount_at_once() {
    let h = Home::new();
    let fifo = h.path().join("fifo");
    mkfifo(&fifo);
    let dir = h.path().join("adir");
    std::fs::create_dir(&dir).unwrap();
    // Run as root: a token file other users may write, or another user's.
    use std::os::unix::fs::PermissionsExt;
    let open = h.path().join("open");
    std::fs::write(&open, ROOT_TOKEN).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o622)).unwrap();
    let theirs = h.path().join("theirs");
    std::fs::write(&theirs, ROOT_TOKEN).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), None).unwrap();
    let mp = h.path().join("mnt");
    for (file, kind) in [
        (fifo.as_path(), "FIFO"),
        (Path::new("/dev/zero"), "character device"),
        (dir.as_path(), "directory"),
        (open.as_path(), "writable by other users (mode 0622)"),
        (theirs.as_path(), "belongs to uid 65534"),
    ] {
        let (o, took) = mount_with_token_file(&h, &mp, file, "5s");
        assert!(took < Duration::from_secs(5), "{kind}: took {took:?}");
        assert_fails(&o, kind);
        let err = stderr(&o);
        assert!(err.contains(&*file.to_string_lossy()), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!is_mounted(&mp));
    }
}

#[test]
fn a_fifo_swapped_in_at_run_time_keeps_the_token_and_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, ROOT_TOKEN).unwrap();
    let mut m = token_file_mount(&file, "1s");
    assert_eq!(read(m.p("secret/tf/app/db/password")), "ro");
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    std::fs::rename(&fifo, &file).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // The cache expired: these go to Vault, which re-checks the file.
    let p = m.p("secret/tf/app/db/password");
    assert_eq!(within_10s("cat", move || read(p)), "ro");
    let p = m.p("secret/tf/app");
    assert_eq!(within_10s("ls", move || names(p)), ["db", "db3"]);
    let p = m.p("secret/tf/plain/k");
    assert_eq!(within_10s("cat", move || read(p)), "v");
    let log = m.log_text();
    assert!(
        log.contains("is a FIFO (named pipe), not a regular file")
            && log.contains("keeping the current token"),
        "{log}"
    );
    // SIGTERM still ends it.
    sigterm_ends(&mut m);
}

/// SIGTERM ends the daemon of `m` with status 0, its mount gone; returns
/// how long it took.
fn sigterm_ends(m: &mut Mount) -> Duration {
    let mut child = m.child.take().unwrap();
    let started = Instant::now();
    signal(child.id() as i32, Signal::SIGTERM);
    let mut done = None;
    wait_until("exit on SIGTERM", Duration::from_secs(10), || {
        done = child.try_wait().unwrap();
        done.is_some()
    });
    assert!(done.unwrap().success());
    assert!(!is_mounted(m.path()));
    started.elapsed()
}

#[test]
fn a_symlinked_token_file_works() {
    let b = bao();
    let dir = tempfile::tempdir().unwrap();
    // As a Kubernetes secret volume lays it out: token -> ..data/token.
    let v1 = dir.path().join("..2024_v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::write(v1.join("token"), format!("{ROOT_TOKEN}\n")).unwrap();
    std::os::unix::fs::symlink("..2024_v1", dir.path().join("..data")).unwrap();
    let file = dir.path().join("token");
    std::os::unix::fs::symlink("..data/token", &file).unwrap();
    let m = Mount::with(
        b,
        MountOpts::new("unused")
            .arg("--token-file")
            .arg(file.to_str().unwrap()),
    );
    assert_eq!(read(m.p("secret/tf/app/db/password")), "ro");
}

fn errno_at(p: PathBuf) -> i32 {
    within_10s("stat", move || errno_of(std::fs::metadata(p)))
}

/// A read-only token (read, no list: the Coder README's policy) that
/// expires: uncached names answer EACCES, never "is a directory"; a new
/// token written to the token file (`vault login`) works at once.
#[test]
fn an_expired_read_only_token_shows_no_directories_and_a_new_one_works_at_once() {
    let b = bao();
    let policy = r#"path "secret/data/*" { capabilities = ["read"] }"#;
    let short = b.token_with_policy("tf-read-only", policy, &["-ttl=5s", "-explicit-max-ttl=5s"]);
    let expires = Instant::now() + Duration::from_secs(5);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, &short).unwrap();
    let m = token_file_mount(&file, "1m");
    // The way in works by name, through folders it may not list.
    assert_eq!(read(m.p("secret/tf/app/db/password")), "ro");
    std::thread::sleep(expires.saturating_duration_since(Instant::now()) + Duration::from_secs(1));

    // Uncached names, real ones included: refused, not directories.
    for rel in [
        "secret/tf/app/db3",
        "secret/tf/app/db3/password",
        "secret/tf/app/nosuch",
        "secret/tf/other",
    ] {
        let e = errno_at(m.p(rel));
        assert_eq!(e, libc::EACCES, "{rel}: errno {e}");
    }
    let p = m.p("secret/tf/app/db3/password");
    let e = within_10s("cat", move || errno_of(std::fs::read(p)));
    assert_eq!(e, libc::EACCES);

    // `vault login` writes a new token: it is used at once, and what the
    // old one was refused is asked again.
    let fresh = b.token_with_policy("tf-read-only", policy, &["-ttl=1h"]);
    replace(&file, &fresh);
    let p = m.p("secret/tf/app/db3/password");
    assert_eq!(within_10s("cat", move || read(p)), "ro3");
    assert!(std::fs::metadata(m.p("secret/tf/app/db3/password"))
        .unwrap()
        .is_file());
    let log = m.log_text();
    assert!(
        !log.contains(&short) && !log.contains(&fresh),
        "token in the log"
    );
}

/// Continues a stopped daemon when dropped, so a failing test leaves no
/// frozen mount behind.
struct Stopped(i32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        signal(pid as i32, Signal::SIGSTOP);
        Stopped(pid as i32)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, Signal::SIGCONT);
    }
}

/// A mount serving the token as a secret: a filesystem that hangs when its
/// daemon is stopped (SIGSTOP), the way a dead NFS server or FUSE daemon does.
fn token_mount() -> Mount {
    let b = bao();
    b.put("secret", "tf/tok", json!({"t": ROOT_TOKEN}));
    // A short TTL: the kernel soon asks the stopped daemon again.
    Mount::with(b, MountOpts::new(ROOT_TOKEN).arg("--ttl").arg("1s"))
}

/// A token file on a hung filesystem: reads keep working with the token in
/// hand (one look at the file at a time, each given 2 s), and SIGTERM still
/// ends the daemon promptly.
#[test]
fn a_token_file_on_a_hung_filesystem_freezes_nothing() {
    let a = token_mount();
    let file = a.p("secret/tf/tok/t");
    let mut m = token_file_mount(&file, "1s");
    assert_eq!(read(m.p("secret/tf/app/db/password")), "ro");
    let hung = Stopped::stop(a.pid());
    for (rel, want) in [
        ("secret/tf/app/db/password", "ro"),
        ("secret/tf/app/db3/password", "ro3"),
        ("secret/tf/plain/k", "v"),
    ] {
        std::thread::sleep(Duration::from_millis(1200));
        let p = m.p(rel);
        let started = Instant::now();
        assert_eq!(within_10s("cat", move || read(p)), want);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{rel}: took {:?}",
            started.elapsed()
        );
    }
    // One stuck look at a time, not one per request.
    let lookers = std::fs::read_dir(format!("/proc/{}/task", m.pid()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == "vaultfs-token")
        .count();
    assert_eq!(lookers, 1);
    let log = m.log_text();
    assert_eq!(
        log.matches("token file did not answer within 2s").count(),
        1,
        "{log}"
    );
    let took = sigterm_ends(&mut m);
    assert!(took < Duration::from_secs(5), "SIGTERM took {took:?}");
    drop(hung);
}

/// At mount, a token file on a hung filesystem is refused within 2 s with
/// one line and the "no usable token" status, not waited for past --wait.
#[test]
fn a_token_file_on_a_hung_filesystem_is_refused_at_mount_within_wait() {
    let a = token_mount();
    let file = a.p("secret/tf/tok/t");
    // Looked at once while live, as a real setup would have.
    assert_eq!(read(file.clone()), ROOT_TOKEN);
    let h = Home::new();
    let mp = h.path().join("mnt");
    let hung = Stopped::stop(a.pid());
    // Past the TTL the kernel asks the stopped daemon.
    std::thread::sleep(Duration::from_secs(2));
    let (o, took) = mount_with_token_file(&h, &mp, &file, "4s");
    drop(hung);
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert_exit(
        &o,
        vaultfs::testing::exit::Exit::Token,
        "could not be read within 2s",
    );
    assert!(!is_mounted(&mp));
}
