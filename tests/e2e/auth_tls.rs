//! Token sources, token file rotation, renewal, TLS (CA file and directory,
//! server name, mTLS) and namespaces, against real OpenBao servers and real
//! FUSE mounts.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::*;
use serde_json::json;

/// The plain-HTTP server, seeded once: a secret and two policies whose
/// tokens can each read only "their" secret.
fn plain() -> &'static Bao {
    static SEEDED: OnceLock<()> = OnceLock::new();
    let b = Bao::shared();
    SEEDED.get_or_init(|| {
        b.put("secret", "only-a", json!({"k": "a"}));
        b.put("secret", "only-b", json!({"k": "b"}));
    });
    b
}

/// A `-dev-tls` server (its CA is `ca_file()`), seeded once.
fn tls() -> &'static Bao {
    static BAO: OnceLock<Bao> = OnceLock::new();
    BAO.get_or_init(|| {
        let b = Bao::start(true);
        b.put("secret", "app", json!({"k": "over-tls"}));
        b
    })
}

/// A token that can list `secret` and read `secret/<readable>`.
fn token_reading(b: &Bao, readable: &str, extra: &[&str]) -> String {
    let hcl = format!(
        r#"path "secret/metadata/*" {{ capabilities = ["list"] }}
path "secret/data/{readable}" {{ capabilities = ["read"] }}"#
    );
    b.token_with_policy(&format!("read-{readable}"), &hcl, extra)
}

/// Run `vaultfs mount --foreground` expecting it to fail before mounting;
/// returns its stderr.
fn mount_fails(mut cmd: Command) -> String {
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().with_extension("err");
    cmd.arg("mount")
        .arg("--foreground")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap());
    let mut child = spawn_kept(cmd);
    let mut exited = None;
    poll(Duration::from_secs(20), || {
        exited = child.try_wait().unwrap();
        exited.is_some() || is_mounted(dir.path())
    });
    let Some(status) = exited else {
        let _ = child.kill();
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(dir.path())
            .status();
        panic!("vaultfs mounted (or hung) where it had to fail");
    };
    let text = std::fs::read_to_string(&err).unwrap();
    // Beside the temporary directory, so not removed with it.
    let _ = std::fs::remove_file(&err);
    assert!(!status.success(), "expected a failure: {text}");
    text
}

/// The mount's log without terminal colour codes.
fn log_of(m: &Mount) -> String {
    let raw = m.log_text();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn wait_for_log(m: &Mount, what: &str, timeout: Duration) {
    assert!(
        poll(timeout, || log_of(m).contains(what)),
        "no {what:?} in the log within {timeout:?}:\n{}",
        log_of(m)
    );
}

// ---- TLS -------------------------------------------------------------------

#[test]
fn tls_ca_file_from_env_and_flag() {
    let b = tls();
    let m = Mount::new(b, ROOT_TOKEN);
    assert_eq!(read(m.p("secret/app/k")), "over-tls");
    drop(m);
    let ca = b.ca_file().unwrap();
    let m = Mount::with(
        b,
        MountOpts::new(ROOT_TOKEN)
            .env("VAULT_CACERT", "")
            .arg("--ca-cert")
            .arg(ca.to_str().unwrap()),
    );
    assert_eq!(read(m.p("secret/app/k")), "over-tls");
}

#[test]
fn tls_ca_directory() {
    let b = tls();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(b.ca_file().unwrap(), dir.path().join("vault-ca.pem")).unwrap();
    std::fs::write(dir.path().join("README"), "not a certificate\n").unwrap();
    // BAO_CAPATH: the BAO_ fallback of VAULT_CAPATH.
    let m = Mount::with(
        b,
        MountOpts::new(ROOT_TOKEN)
            .env("VAULT_CACERT", "")
            .env("BAO_CAPATH", dir.path().to_str().unwrap()),
    );
    assert_eq!(read(m.p("secret/app/k")), "over-tls");
}

#[test]
fn tls_untrusted_certificate_is_refused_naming_the_fix() {
    let b = tls();
    let mut cmd = vaultfs_cmd(b, ROOT_TOKEN);
    cmd.env_remove("VAULT_CACERT");
    let err = mount_fails(cmd);
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(
        err.contains("set VAULT_CACERT or --ca-cert"),
        "the error must name the fix: {err}"
    );
    // A CA that did not sign Vault's certificate: refused the same way.
    let other = tempfile::tempdir().unwrap();
    let ca = make_ca(other.path(), "other");
    let mut cmd = vaultfs_cmd(b, ROOT_TOKEN);
    cmd.env("VAULT_CACERT", &ca);
    let err = mount_fails(cmd);
    assert!(err.contains("set VAULT_CACERT or --ca-cert"), "{err}");
}

#[test]
fn tls_skip_verify_works_and_warns() {
    let b = tls();
    let m = Mount::with(
        b,
        MountOpts::new(ROOT_TOKEN)
            .env("VAULT_CACERT", "")
            .env("VAULT_SKIP_VERIFY", "1"),
    );
    assert_eq!(read(m.p("secret/app/k")), "over-tls");
    let log = log_of(&m);
    assert!(
        log.contains("WARN") && log.contains("NOT verified"),
        "{log}"
    );
}

#[test]
fn tls_server_name_is_what_is_verified() {
    let b = tls();
    // The address is 127.0.0.1; the certificate also names localhost4.
    let m = Mount::with(
        b,
        MountOpts::new(ROOT_TOKEN)
            .arg("--tls-server-name")
            .arg("localhost4"),
    );
    assert_eq!(read(m.p("secret/app/k")), "over-tls");
    drop(m);
    // 127.0.0.1 is in the certificate too: only a name that really replaces
    // it in verification makes this fail.
    let mut cmd = vaultfs_cmd(b, ROOT_TOKEN);
    cmd.env("VAULT_TLS_SERVER_NAME", "not-in-cert.example");
    let err = mount_fails(cmd);
    assert!(err.contains("not valid for name"), "{err}");
    assert!(err.contains("--tls-server-name"), "{err}");
}

// ---- mutual TLS --------------------------------------------------------------

fn openssl(dir: &Path, args: &[&str]) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (needed to make test certificates)");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

const EC: &[&str] = &[
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A CA `<name>-ca.pem` / `<name>-ca.key` in `dir`.
fn make_ca(dir: &Path, name: &str) -> PathBuf {
    let (cert, key) = (format!("{name}-ca.pem"), format!("{name}-ca.key"));
    let subj = format!("/CN=vaultfs test CA {name}");
    let mut a = vec!["req", "-x509"];
    a.extend_from_slice(EC);
    a.extend(["-keyout", &key, "-out", &cert, "-days", "2", "-subj", &subj]);
    openssl(dir, &a);
    dir.join(cert)
}

/// `<name>.pem` / `<name>.key` signed by CA `<ca>`, with extensions `ext`.
fn make_leaf(dir: &Path, ca: &str, name: &str, ext: &str) -> (PathBuf, PathBuf) {
    let (csr, key, cert, extf) = (
        format!("{name}.csr"),
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    std::fs::write(dir.join(&extf), ext).unwrap();
    let subj = format!("/CN={name}");
    let mut a = vec!["req", "-new"];
    a.extend_from_slice(EC);
    a.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
    openssl(dir, &a);
    let (cacert, cakey) = (format!("{ca}-ca.pem"), format!("{ca}-ca.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &cacert,
            "-CAkey",
            &cakey,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            &extf,
        ],
    );
    (dir.join(cert), dir.join(key))
}

#[test]
fn mtls_client_certificate() {
    // `bao server -dev` cannot require client certificates: a real server
    // from a listener config, initialised and unsealed here.
    let certs = tempfile::tempdir().unwrap();
    let d = &certs.path().to_path_buf();
    // vault-ca.pem: where Bao::ca_file() looks, so that bao.cmd() and
    // vaultfs_cmd() trust it.
    let ca = make_ca(d, "vault");
    let (srv_cert, srv_key) = make_leaf(
        d,
        "vault",
        "server",
        "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    let client_ext = "basicConstraints=critical,CA:FALSE\nextendedKeyUsage=clientAuth\n";
    let (cli_cert, cli_key) = make_leaf(d, "vault", "client", client_ext);
    make_ca(d, "rogue");
    let (rogue_cert, rogue_key) = make_leaf(d, "rogue", "rogue-client", client_ext);

    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let config = d.join("bao.hcl");
    std::fs::write(
        &config,
        format!(
            r#"storage "inmem" {{}}
disable_mlock = true
api_addr = "https://{addr}"
listener "tcp" {{
  address = "{addr}"
  tls_cert_file = "{}"
  tls_key_file = "{}"
  tls_client_ca_file = "{}"
  tls_require_and_verify_client_cert = true
}}
"#,
            srv_cert.display(),
            srv_key.display(),
            ca.display()
        ),
    )
    .unwrap();
    let bin = bao_bin();
    let log = d.join("bao.log");
    let mut cmd = Command::new(&bin);
    cmd.arg("server")
        .arg(format!("-config={}", config.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null());
    let child = spawn_kept(cmd);
    let pid = child.id();
    // A Bao over this server; the client certificate is added per call.
    let b = Bao {
        addr: format!("https://{addr}"),
        bin,
        child: std::sync::Mutex::new(child),
        pid,
        tls_dir: Some(certs),
        log,
    };
    assert_eq!(b.ca_file().unwrap(), ca);
    let cli = |b: &Bao, token: &str, args: &[&str]| {
        let mut c = b.cmd(args);
        c.env("VAULT_TOKEN", token)
            .env("VAULT_CLIENT_CERT", &cli_cert)
            .env("VAULT_CLIENT_KEY", &cli_key);
        c.output().unwrap()
    };
    wait_until("mTLS server", Duration::from_secs(30), || {
        // `status` exits 2 when sealed, 1 when unreachable.
        cli(&b, "", &["status"]).status.code() == Some(2)
    });
    let (root, _) = init_and_unseal(|args| cli(&b, "", args));
    wait_until("active and KV enabled", Duration::from_secs(30), || {
        cli(&b, &root, &["secrets", "enable", "-path=secret", "kv-v2"])
            .status
            .success()
    });
    let put = cli(
        &b,
        &root,
        &["kv", "put", "-mount=secret", "app", "k=over-mtls"],
    );
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );

    let m = Mount::with(
        &b,
        MountOpts::new(&root)
            .env("VAULT_CLIENT_CERT", cli_cert.to_str().unwrap())
            .env("VAULT_CLIENT_KEY", cli_key.to_str().unwrap()),
    );
    assert_eq!(read(m.p("secret/app/k")), "over-mtls");
    drop(m);
    // The flags do the same.
    let m = Mount::with(
        &b,
        MountOpts::new(&root)
            .arg("--client-cert")
            .arg(cli_cert.to_str().unwrap())
            .arg("--client-key")
            .arg(cli_key.to_str().unwrap()),
    );
    assert_eq!(read(m.p("secret/app/k")), "over-mtls");
    drop(m);

    let err = mount_fails(vaultfs_cmd(&b, &root));
    assert!(
        err.contains("VAULT_CLIENT_CERT"),
        "no client certificate: {err}"
    );

    let mut cmd = vaultfs_cmd(&b, &root);
    cmd.env("VAULT_CLIENT_CERT", &rogue_cert)
        .env("VAULT_CLIENT_KEY", &rogue_key);
    let err = mount_fails(cmd);
    assert!(
        // The alert reaches us, or (HTTP/2 over TLS 1.3) only the close.
        err.contains("signed by a CA that Vault's listener trusts"),
        "client certificate from another CA: {err}"
    );

    let mut cmd = vaultfs_cmd(&b, &root);
    cmd.env("VAULT_CLIENT_CERT", &cli_cert);
    let err = mount_fails(cmd);
    assert!(
        err.contains("VAULT_CLIENT_KEY"),
        "half a client identity: {err}"
    );

    let _ = b.child.lock().unwrap().kill();
}

// ---- token sources -----------------------------------------------------------

#[test]
fn token_sources_in_order() {
    let b = plain();
    let a = token_reading(b, "only-a", &[]);
    let other = token_reading(b, "only-b", &[]);
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("agent-token");
    std::fs::write(&file, format!("{a}\n")).unwrap();
    let home_a = tempfile::tempdir().unwrap();
    std::fs::write(home_a.path().join(".vault-token"), &a).unwrap();
    let home_other = tempfile::tempdir().unwrap();
    std::fs::write(home_other.path().join(".vault-token"), &other).unwrap();
    let (h_a, h_o) = (
        home_a.path().to_str().unwrap(),
        home_other.path().to_str().unwrap(),
    );

    // Each case: the token "a" must win over every later source, which all
    // hold the other token.
    let flag = MountOpts::new(&other)
        .env("BAO_TOKEN", &other)
        .env("HOME", h_o)
        .arg("--token-file")
        .arg(file.to_str().unwrap());
    let vault_env = MountOpts::new(&a).env("BAO_TOKEN", &other).env("HOME", h_o);
    let bao_env = MountOpts::new("").env("BAO_TOKEN", &a).env("HOME", h_o);
    let home_file = MountOpts::new("").env("HOME", h_a);
    for (opts, source) in [
        (flag, "--token-file".to_string()),
        (vault_env, "$VAULT_TOKEN".to_string()),
        (bao_env, "$BAO_TOKEN".to_string()),
        (home_file, format!("{h_a}/.vault-token")),
    ] {
        let m = Mount::with(b, opts);
        assert_eq!(read(m.p("secret/only-a/k")), "a", "{source}");
        assert!(
            std::fs::read(m.p("secret/only-b/k")).is_err(),
            "{source}: the other token was used"
        );
        let log = log_of(&m);
        assert!(log.contains(&format!("source={source}")), "{source}: {log}");
        assert!(!log.contains(&a) && !log.contains(&other), "token in log");
    }

    let mut cmd = vaultfs_cmd(b, "");
    cmd.env("HOME", home.path());
    let err = mount_fails(cmd);
    assert!(err.contains("no Vault token"), "{err}");
}

/// Wait out the cache TTL (`--ttl 1s`) so the next read reaches Vault.
/// A mount (TTL 1s) whose token comes from a file holding `token`.
fn mount_with_token_file(b: &Bao, token: &str) -> (tempfile::TempDir, PathBuf, Mount) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, token).unwrap();
    let m = Mount::with(
        b,
        MountOpts::new("")
            .arg("--token-file")
            .arg(file.to_str().unwrap())
            .arg("--ttl")
            .arg("1s"),
    );
    (dir, file, m)
}

fn past_ttl() {
    std::thread::sleep(Duration::from_millis(1300));
}

#[test]
fn token_file_replaced_is_picked_up() {
    let b = plain();
    b.put("secret", "replaced", json!({"k": "v0"}));
    let t1 = token_reading(b, "replaced", &[]);
    let t2 = token_reading(b, "replaced", &[]);
    let (dir, file, m) = mount_with_token_file(b, &t1);
    assert_eq!(read(m.p("secret/replaced/k")), "v0");
    // As Vault Agent does: write a new file, rename it over the old one.
    let tmp = dir.path().join("token.tmp");
    std::fs::write(&tmp, format!("{t2}\n")).unwrap();
    std::fs::rename(&tmp, &file).unwrap();
    b.cli(&["token", "revoke", &t1]);
    b.put("secret", "replaced", json!({"k": "v1"}));
    past_ttl();
    assert_eq!(read(m.p("secret/replaced/k")), "v1");
    let log = log_of(&m);
    assert!(log.contains("token file changed"), "{log}");
    assert!(!log.contains(&t1) && !log.contains(&t2), "token in log");
}

#[test]
fn token_file_rewritten_unnoticed_is_reread_on_403() {
    let b = plain();
    b.put("secret", "rewritten", json!({"k": "v0"}));
    let t1 = token_reading(b, "rewritten", &[]);
    let t2 = token_reading(b, "rewritten", &[]);
    assert_eq!(t1.len(), t2.len());
    let (_dir, file, m) = mount_with_token_file(b, &t1);
    assert_eq!(read(m.p("secret/rewritten/k")), "v0");
    // Rewrite in place with the same size and put the mtime back: nothing a
    // stat shows, so only the 403 can reveal the new token.
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, &t2).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    b.cli(&["token", "revoke", &t1]);
    b.put("secret", "rewritten", json!({"k": "after-403"}));
    past_ttl();
    assert_eq!(read(m.p("secret/rewritten/k")), "after-403");
    let log = log_of(&m);
    assert!(
        log.contains("permission denied: token file holds a new token"),
        "{log}"
    );
    assert!(!log.contains("token file changed"), "{log}");
}

// ---- renewal -----------------------------------------------------------------

#[test]
fn renewal_keeps_a_short_token_alive() {
    let b = plain();
    b.put("secret", "renewed", json!({"k": "v0"}));
    let t = token_reading(b, "renewed", &["-ttl=8s", "-explicit-max-ttl=5m"]);
    let m = Mount::with(b, MountOpts::new(&t).arg("--ttl").arg("1s"));
    assert_eq!(read(m.p("secret/renewed/k")), "v0");
    let start = Instant::now();
    for (i, at) in [10u64, 21].into_iter().enumerate() {
        let until = Duration::from_secs(at).saturating_sub(start.elapsed());
        std::thread::sleep(until);
        let v = format!("renewed-{i}");
        b.put("secret", "renewed", json!({"k": v}));
        past_ttl();
        assert_eq!(
            read(m.p("secret/renewed/k")),
            v,
            "after {:?}",
            start.elapsed()
        );
    }
    let log = log_of(&m);
    assert!(log.contains("token renewed"), "{log}");
    let look = b.cli(&["token", "lookup", "-format=json", &t]);
    let look: serde_json::Value = serde_json::from_str(&look).unwrap();
    assert!(look["data"]["ttl"].as_u64().unwrap() > 0);
}

#[test]
fn expiry_is_warned_ahead_when_renewal_cannot_help() {
    let b = plain();
    // Each mounted as soon as its token exists: the TTLs are short, and a
    // loaded machine takes seconds to mount.
    let fixed = token_reading(b, "app", &["-ttl=5s", "-renewable=false"]);
    let mf = Mount::new(b, &fixed);
    let capped = token_reading(b, "app", &["-ttl=4s", "-explicit-max-ttl=6s"]);
    let mc = Mount::new(b, &capped);
    for (m, why) in [
        (&mf, "it is not renewable"),
        (&mc, "its max TTL is reached"),
    ] {
        wait_for_log(m, "token expired", Duration::from_secs(15));
        let log = log_of(m);
        let soon = log
            .find("token expires soon")
            .unwrap_or_else(|| panic!("{log}"));
        assert!(soon < log.find("token expired").unwrap(), "{log}");
        assert!(log.contains(why), "{log}");
        assert!(log.contains("remount with a new token"), "{log}");
    }
}

// ---- namespaces ----------------------------------------------------------------

#[test]
fn namespace_shows_its_own_mounts() {
    let b = plain();
    b.cli(&["namespace", "create", "nsauth"]);
    b.enable_kv("nskv", 2, Some("nsauth"));
    b.cli(&[
        "kv",
        "put",
        "-namespace=nsauth",
        "-mount=nskv",
        "app",
        "k=in-namespace",
    ]);
    let m = Mount::with(
        b,
        MountOpts::new(ROOT_TOKEN).env("VAULT_NAMESPACE", "nsauth"),
    );
    assert_eq!(names(m.path()), ["nskv"]);
    assert_eq!(read(m.p("nskv/app/k")), "in-namespace");
    drop(m);
    let m = Mount::with(
        b,
        MountOpts::new(ROOT_TOKEN).arg("--namespace").arg("nsauth"),
    );
    assert_eq!(names(m.path()), ["nskv"]);
    drop(m);
    // Without a namespace: the root namespace's mounts, not nskv.
    let m = Mount::new(b, ROOT_TOKEN);
    let root = names(m.path());
    assert!(root.contains(&"secret".to_string()) && !root.contains(&"nskv".to_string()));
}
