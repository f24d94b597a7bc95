//! Issue #3: contrib/coder/run.sh, run with bash as a Coder agent would,
//! against a real OpenBao and with a real mount as the result.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use serde_json::json;

/// The recommended policy from docs/coder.md: read + list on metadata.
const POLICY_LIST: &str = r#"
path "coder/data/*" { capabilities = ["read"] }
path "coder/metadata/*" { capabilities = ["read", "list"] }
"#;

/// The policy of the vault-token module's README: no `list`.
const POLICY_READ: &str = r#"
path "coder/data/*" { capabilities = ["read"] }
path "coder/metadata/*" { capabilities = ["read"] }
"#;

fn bao() -> &'static Bao {
    static SEEDED: OnceLock<()> = OnceLock::new();
    let b = Bao::shared();
    SEEDED.get_or_init(|| {
        b.enable_kv("coder", 2, None);
        b.put("coder", "app/db", json!({"password": "from-coder"}));
        b.put("coder", "db", json!({"password": "top-level"}));
        b.put("secret", "other", json!({"k": "not-shown"}));
    });
    b
}

fn run_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/coder/run.sh")
}

/// `bash run.sh ACTION` in a workspace-like environment: HOME, VAULT_ADDR,
/// and no token unless the test adds one.
fn script(h: &Home, action: &str) -> Command {
    let mut c = Command::new("bash");
    c.arg(run_sh()).arg(action);
    for (k, _) in std::env::vars() {
        if k.starts_with("VAULT") || k.starts_with("BAO_") || k.starts_with("XDG_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", h.path())
        .env("VAULT_ADDR", &bao().addr)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env_remove("NOTIFY_SOCKET");
    c
}

#[test]
fn waits_for_a_token_file_written_after_it_starts() {
    let b = bao();
    let token = b.token_with_policy("coder-list", POLICY_LIST, &[]);
    let h = Home::new();
    let mut c = script(&h, "start");
    c.env("VAULTFS_BIN", vaultfs_bin())
        .env("VAULTFS_TOKEN_WAIT", "30")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = spawn_kept(c);
    // Like `vault login` in a parallel start script, a little later.
    std::thread::sleep(Duration::from_millis(1500));
    let tmp = h.path().join(".vault-token.tmp");
    std::fs::write(&tmp, format!("{token}\n")).unwrap();
    std::fs::rename(&tmp, h.path().join(".vault-token")).unwrap();

    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    let o = rx
        .recv_timeout(Duration::from_secs(40))
        .expect("run.sh did not finish (daemon holding its output?)");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "run.sh failed: {out}{}", stderr(&o));
    assert!(out.contains("waiting up to 30s"), "{out}");
    assert!(out.contains("mounted at"), "{out}");

    let mp = h.secrets();
    assert_eq!(read(mp.join("coder/app/db/password")), "from-coder");
    // With `list`, `ls` works all the way down.
    assert_eq!(names(mp.join("coder")), ["app", "db"]);
    assert_eq!(
        names(mp.join("coder/app/db")),
        [".env", ".json", "password"]
    );
    let pid = h.pid(&mp);

    // Running start again (agent restart) replaces the mount.
    let mut again = script(&h, "start");
    again.env("VAULTFS_BIN", vaultfs_bin());
    assert_ok(&run(again, 40), "second start");
    assert!(!alive(pid));
    assert_eq!(mount_count(&mp), 1);
    let pid = h.pid(&mp);

    let mut stop = script(&h, "stop");
    stop.env("VAULTFS_BIN", vaultfs_bin());
    assert_ok(&run(stop, 20), "stop");
    assert!(!is_mounted(&mp));
    assert!(!alive(pid));
    // Stopping with nothing mounted is fine.
    let mut stop = script(&h, "stop");
    stop.env("VAULTFS_BIN", vaultfs_bin());
    assert_ok(&run(stop, 20), "second stop");
}

#[test]
fn installs_when_missing_and_applies_the_module_settings() {
    let b = bao();
    let token = b.token_with_policy("coder-read", POLICY_READ, &[]);
    let h = Home::new();
    // A release archive served from a file:// URL: the download path runs
    // for real, without a network.
    let rel = h.path().join("release");
    std::fs::create_dir(&rel).unwrap();
    std::fs::copy(vaultfs_bin(), rel.join("vaultfs")).unwrap();
    let tgz = h.path().join("vaultfs.tar.gz");
    let st = Command::new("sh")
        .arg("-c")
        .arg("tar -C \"$1\" -cf - vaultfs | gzip -1 > \"$2\"")
        .args(["sh", rel.to_str().unwrap(), tgz.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(st.success());

    let mut c = script(&h, "start");
    c.env("VAULT_TOKEN", &token)
        .env("VAULTFS_DOWNLOAD_URL", format!("file://{}", tgz.display()))
        .env("VAULTFS_MOUNT_PATH", "~/my secrets")
        .env("VAULTFS_KV_MOUNTS", "coder")
        .env("VAULTFS_TTL", "5s");
    let o = run(c, 60);
    assert_ok(&o, "run.sh start");
    let installed = h.path().join(".local/bin/vaultfs");
    assert!(
        installed.is_file(),
        "not installed at {}",
        installed.display()
    );

    let mp = h.path().join("my secrets");
    // Only the chosen KV mount is shown.
    assert_eq!(names(&mp), ["coder"]);
    // Without `list` (docs/coder.md): a secret at the top of the mount reads
    // by name and its keys list; listing folders is denied, but walking by
    // name through a folder that is not itself a secret works.
    assert_eq!(read(mp.join("coder/db/password")), "top-level");
    assert_eq!(names(mp.join("coder/db")), [".env", ".json", "password"]);
    assert_eq!(list_errno(mp.join("coder")), libc::EACCES);
    assert_eq!(list_errno(mp.join("coder/app")), libc::EACCES);
    assert_eq!(read(mp.join("coder/app/db/password")), "from-coder");

    // The installed binary is found again for stop (no VAULTFS_BIN).
    assert_ok(&run(script(&h, "stop"), 20), "stop");
    assert!(!is_mounted(&mp));
}

#[test]
fn gives_up_when_no_token_appears() {
    let h = Home::new();
    let mut c = script(&h, "start");
    c.env("VAULTFS_BIN", vaultfs_bin())
        .env("VAULTFS_TOKEN_WAIT", "1");
    let t = std::time::Instant::now();
    let o = run(c, 20);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no Vault token after 1s"),
        "{}",
        stderr(&o)
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!is_mounted(&h.secrets()));

    let mut c = script(&h, "start");
    c.env("VAULTFS_BIN", "/nonexistent/vaultfs");
    let o = run(c, 20);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("not an executable file"),
        "{}",
        stderr(&o)
    );
}
