//! The Coder module: contrib/coder/run.sh run with bash as a Coder agent
//! would, against a real OpenBao, installing the release archive that
//! scripts/package builds (served over loopback HTTP), with a real mount as
//! the result; its shellcheck and terraform checks.

mod common;
#[path = "common/package.rs"]
mod package;

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
        if k.starts_with("VAULT")
            || k.starts_with("BAO_")
            || k.starts_with("XDG_")
            || k.starts_with("CODER_")
        {
            c.env_remove(k);
        }
    }
    c.env("HOME", h.path())
        .env("VAULT_ADDR", &bao().addr)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env_remove("NOTIFY_SOCKET");
    c
}

/// The wait docs/coder.md gives other start scripts.
fn wait_for_mount(h: &Home, secs: u32) -> Command {
    let mut c = Command::new(vaultfs_bin());
    c.args(["status", "--wait", &format!("{secs}s")])
        .arg(h.secrets())
        .env("HOME", h.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// `run.sh start` that waits up to 30 s for a token Vault accepts.
fn start_waiting_for_a_token(h: &Home) -> std::process::Child {
    let mut c = script(h, "start");
    c.env("VAULTFS_BIN", vaultfs_bin())
        .env("VAULTFS_TOKEN_WAIT", "30")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    spawn_kept(c)
}

/// What `vault login` does: a new `~/.vault-token`, written whole.
fn login(h: &Home, token: &str) {
    let tmp = h.path().join(".vault-token.tmp");
    std::fs::write(&tmp, format!("{token}\n")).unwrap();
    std::fs::rename(&tmp, h.path().join(".vault-token")).unwrap();
}

/// The output of a `run.sh` that must end within 40 s.
fn finish(child: std::process::Child) -> std::process::Output {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output().unwrap()));
    rx.recv_timeout(Duration::from_secs(40))
        .expect("run.sh did not finish (a daemon holding its output?)")
}

#[test]
fn waits_for_a_token_file_written_after_it_starts() {
    let b = bao();
    let token = b.token_with_policy("coder-list", POLICY_LIST, &[]);
    let h = Home::new();
    let child = start_waiting_for_a_token(&h);
    // Another start script waiting for the mount as docs/coder.md says.
    let waiter = spawn_kept(wait_for_mount(&h, 40));
    // Like `vault login` in a parallel start script, a little later.
    std::thread::sleep(Duration::from_millis(1500));
    login(&h, &token);
    let o = finish(child);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "run.sh failed: {out}{}", stderr(&o));
    assert!(out.contains("waiting up to 30s"), "{out}");
    assert!(out.contains("mounted at"), "{out}");

    let mp = h.secrets();
    let w = waiter.wait_with_output().unwrap();
    assert!(w.status.success(), "{}", stderr(&w));
    assert_eq!(read(mp.join("coder/app/db/password")), "from-coder");
    // With `list`, `ls` works all the way down.
    assert_eq!(names(mp.join("coder")), ["app", "db"]);
    assert_eq!(
        names(mp.join("coder/app/db")),
        [".env", ".json", "password"]
    );
    let pid = h.pid(&mp);

    // Running start again (agent restart) with the same settings keeps the
    // live mount, even while it is busy (a file open in it).
    let busy = std::fs::File::open(mp.join("coder/app/db/password")).unwrap();
    let mut again = script(&h, "start");
    again.env("VAULTFS_BIN", vaultfs_bin());
    let o = run(again, 40);
    assert_ok(&o, "second start");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("already mounted"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(h.pid(&mp), pid);
    assert_eq!(mount_count(&mp), 1);
    drop(busy);
    // Other settings: the mount is replaced.
    let mut other = script(&h, "start");
    other
        .env("VAULTFS_BIN", vaultfs_bin())
        .env("VAULTFS_TTL", "5s");
    assert_ok(&run(other, 40), "start with another TTL");
    assert!(!alive(pid));
    assert_eq!(mount_count(&mp), 1);
    let pid = h.pid(&mp);
    // `run.sh wait` returns at once on a live mount.
    assert_ok(&run(script(&h, "wait"), 20), "wait");

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

/// `python3 -m http.server` on loopback, serving `dir`; killed on drop.
struct Http {
    child: std::process::Child,
    url: String,
}

impl Http {
    fn serve(dir: &Path) -> Http {
        let port = free_port();
        let mut c = Command::new("python3");
        c.args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = spawn_kept(c);
        wait_until("the HTTP server", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Http {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A release site laid out like GitHub's (`download/v<version>/` and
/// `latest/download/`) holding scripts/package's archive and SHA256SUMS.
fn release_site(root: &Path) -> Http {
    let p = package::package();
    for d in [format!("download/v{}", p.version), "latest/download".into()] {
        let d = root.join(d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(&p.archive, d.join(p.archive.file_name().unwrap())).unwrap();
        std::fs::copy(p.dir.join("SHA256SUMS"), d.join("SHA256SUMS")).unwrap();
    }
    Http::serve(root)
}

#[test]
fn installs_the_release_archive_and_applies_the_module_settings() {
    let b = bao();
    let token = b.token_with_policy("coder-read", POLICY_READ, &[]);
    let h = Home::new();
    let site = release_site(&h.path().join("site"));
    let bin_dir = h.path().join("coder-bin");

    let mut c = script(&h, "start");
    c.env("VAULT_TOKEN", &token)
        .env("VAULTFS_BASE_URL", &site.url)
        .env("CODER_SCRIPT_BIN_DIR", &bin_dir)
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
    // On the workspace's PATH: Coder's script bin directory links to it.
    assert_eq!(
        std::fs::read_link(bin_dir.join("vaultfs")).unwrap(),
        installed
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

    // The installed binary is found again for stop (no VAULTFS_BIN), twice.
    for n in ["stop", "second stop"] {
        let mut stop = script(&h, "stop");
        stop.env("VAULTFS_MOUNT_PATH", "~/my secrets");
        assert_ok(&run(stop, 20), n);
        assert!(!is_mounted(&mp), "{n}: still mounted");
    }
}

#[test]
fn a_pinned_version_replaces_another_installed_one() {
    let b = bao();
    let token = b.token_with_policy("coder-list", POLICY_LIST, &[]);
    let p = package::package();
    let h = Home::new();
    let site = release_site(&h.path().join("site"));
    // An older vaultfs already in ~/.local/bin (persistent home).
    let old = h.path().join(".local/bin/vaultfs");
    std::fs::create_dir_all(old.parent().unwrap()).unwrap();
    std::fs::write(&old, "#!/bin/sh\necho 'vaultfs 0.0.1'\n").unwrap();
    std::fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // And another in the image, on PATH.
    let image_bin = h.path().join("image-bin");
    std::fs::create_dir(&image_bin).unwrap();
    std::fs::write(
        image_bin.join("vaultfs"),
        "#!/bin/sh\necho 'vaultfs 0.0.2'\n",
    )
    .unwrap();
    std::fs::set_permissions(
        image_bin.join("vaultfs"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let mut c = script(&h, "start");
    c.env("VAULT_TOKEN", &token)
        .env("VAULTFS_BASE_URL", &site.url)
        .env("VAULTFS_VERSION", &p.version)
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", image_bin.display()),
        );
    let o = run(c, 60);
    assert_ok(&o, "run.sh start");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("is vaultfs 0.0.2, not"), "{out}");
    assert!(out.contains("is vaultfs 0.0.1, not"), "{out}");
    let v = Command::new(&old).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        format!("vaultfs {}", p.version)
    );
    assert_eq!(read(h.secrets().join("coder/db/password")), "top-level");
    assert_ok(&run(script(&h, "stop"), 20), "stop");
    assert!(!is_mounted(&h.secrets()));
}

/// VAULTFS_DOWNLOAD_URL, which scripts set by hand before base_url existed:
/// one archive's URL (file:// too), verified against the SHA256SUMS beside it.
#[test]
fn a_download_url_is_verified_against_the_sha256sums_beside_it() {
    let b = bao();
    let token = b.token_with_policy("coder-list", POLICY_LIST, &[]);
    let p = package::package();
    let h = Home::new();
    let archive = h.path().join("rel").join(p.archive.file_name().unwrap());
    std::fs::create_dir(archive.parent().unwrap()).unwrap();
    std::fs::copy(&p.archive, &archive).unwrap();
    let start = || {
        let mut c = script(&h, "start");
        c.env("VAULT_TOKEN", &token).env(
            "VAULTFS_DOWNLOAD_URL",
            format!("file://{}", archive.display()),
        );
        run(c, 60)
    };
    // No SHA256SUMS beside it: nothing is installed unverified.
    assert_fails(&start(), "cannot download file://");
    assert!(!h.path().join(".local/bin/vaultfs").exists());

    std::fs::copy(
        p.dir.join("SHA256SUMS"),
        archive.with_file_name("SHA256SUMS"),
    )
    .unwrap();
    assert_ok(&start(), "start");
    assert_eq!(read(h.secrets().join("coder/db/password")), "top-level");
    assert_ok(&run(script(&h, "stop"), 20), "stop");
    assert!(!is_mounted(&h.secrets()));
}

#[test]
fn a_checksum_mismatch_is_refused_in_one_line() {
    let p = package::package();
    let h = Home::new();
    let root = h.path().join("site");
    let site = release_site(&root);
    // Someone else's bytes under the archive's name.
    let d = root.join(format!("download/v{}", p.version));
    let mut bytes = std::fs::read(&p.archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(d.join(p.archive.file_name().unwrap()), bytes).unwrap();

    let mut c = script(&h, "start");
    c.env("VAULT_TOKEN", "unused")
        .env("VAULTFS_BASE_URL", &site.url)
        .env("VAULTFS_VERSION", &p.version);
    let o = run(c, 60);
    assert_fails(&o, "checksum mismatch");
    assert!(stderr(&o).contains("refusing to install"), "{}", stderr(&o));
    assert!(!h.path().join(".local/bin/vaultfs").exists());
    assert!(!is_mounted(&h.secrets()));

    // A version the site does not have: one line naming the URL and why.
    let mut c = script(&h, "start");
    c.env("VAULT_TOKEN", "unused")
        .env("VAULTFS_BASE_URL", &site.url)
        .env("VAULTFS_VERSION", "9.9.9");
    let o = run(c, 60);
    assert_fails(&o, "cannot download http://127.0.0.1:");
    assert!(
        stderr(&o).contains("/download/v9.9.9/SHA256SUMS"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("404"), "{}", stderr(&o));
}

/// A persistent home keeps the token of an earlier login; the new login
/// lands a few seconds after the start script began.
#[test]
fn a_stale_token_is_replaced_during_the_wait_and_mounted() {
    let b = bao();
    let token = b.token_with_policy("coder-list", POLICY_LIST, &[]);
    let stale = "hvs.stale-token-from-last-week";
    let h = Home::new();
    std::fs::write(h.path().join(".vault-token"), stale).unwrap();
    let child = start_waiting_for_a_token(&h);
    std::thread::sleep(Duration::from_millis(2500));
    login(&h, &token);
    let o = finish(child);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "run.sh failed: {out}{}", stderr(&o));
    assert!(out.contains("for a token Vault accepts"), "{out}");
    assert!(out.contains("was rejected by Vault"), "{out}");
    assert!(!out.contains(stale) && !stderr(&o).contains(stale));
    assert_eq!(
        read(h.secrets().join("coder/app/db/password")),
        "from-coder"
    );
    let mut stop = script(&h, "stop");
    stop.env("VAULTFS_BIN", vaultfs_bin());
    assert_ok(&run(stop, 20), "stop");
    assert!(!is_mounted(&h.secrets()));
}

#[test]
fn a_token_that_never_becomes_valid_fails_within_the_wait() {
    let stale = "hvs.never-valid";
    let h = Home::new();
    std::fs::write(h.path().join(".vault-token"), stale).unwrap();
    let mut c = script(&h, "start");
    c.env("VAULTFS_BIN", vaultfs_bin())
        .env("VAULTFS_TOKEN_WAIT", "3");
    let t = std::time::Instant::now();
    let o = run(c, 30);
    assert_fails(&o, "no token Vault accepts after 3s");
    assert!(
        stderr(&o).contains("was rejected by Vault"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains(stale));
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(!is_mounted(&h.secrets()));
    // And nothing is mounted for `wait` either: it gives up in one line.
    let mut w = script(&h, "wait");
    w.arg("1");
    assert_fails(&run(w, 20), "is not mounted after 1s");
}

/// A FUSE 2 image: `fusermount` but no `fusermount3`. As a normal user
/// (root would mount directly), in a private mount namespace.
#[test]
fn works_with_fusermount_when_fusermount3_is_missing() {
    let b = bao();
    let token = b.token_with_policy("coder-list", POLICY_LIST, &[]);
    let script = r#"
P="$D/path" RUN="$D/run.sh"
cp "$RUN_SH" "$RUN" || exit 20
mkdir "$P" && for f in /usr/bin/*; do [ "${f##*/}" = fusermount3 ] || ln -s "$f" "$P/"; done
USER_PATH="$P"
as_user sh -c 'command -v fusermount3' && exit 19
as_user bash "$RUN" start || exit 21
echo "value=$(as_user cat "$H/secrets/coder/app/db/password")"
grep " $H/secrets " /proc/self/mountinfo | sed 's/.* - /type=/'
as_user bash "$RUN" start || exit 22
as_user bash "$RUN" stop || exit 23
grep -q " $H/secrets " /proc/self/mountinfo && exit 24
rm "$P/fusermount"
as_user bash "$RUN" start 2>&1 | grep "neither fusermount3 nor fusermount" || exit 25
echo done
"#;
    let sh = run_sh();
    let env = [
        ("ADDR", b.addr.as_str()),
        ("TOKEN", token.as_str()),
        ("RUN_SH", sh.to_str().unwrap()),
    ];
    assert_mounted_as_nobody(&run_as_nobody(script, &env, 90), "from-coder");
}

/// The Coder registry lints module scripts with shellcheck; so do we, and
/// the repository's own scripts too.
#[test]
fn run_sh_and_scripts_pass_shellcheck() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut c = Command::new("shellcheck");
    c.arg(run_sh()).arg(root.join(".ci/run"));
    for f in ["setup", "test", "demo", "bench", "package"] {
        c.arg(root.join("scripts").join(f));
    }
    let o = c
        .output()
        .expect("shellcheck is missing: run scripts/setup (apt-get install shellcheck)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

/// main.tf's variables, validation blocks and exported settings, evaluated
/// by terraform itself: the module without its `coder` resources (the
/// provider is not downloaded here), plus an output of the exports.
#[test]
fn main_tf_validates_variables_and_quotes_every_setting() {
    if Command::new("terraform").arg("version").output().is_err() {
        eprintln!("terraform not installed: main.tf not evaluated");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let tf = std::fs::read_to_string(run_sh().with_file_name("main.tf")).unwrap();
    let vars = &tf[tf.find("variable \"agent_id\"").unwrap()..tf.find("resource \"").unwrap()];
    std::fs::write(
        dir.path().join("main.tf"),
        format!("{vars}\noutput \"exports\" {{\n  value = local.exports\n}}\n"),
    )
    .unwrap();
    std::fs::copy(run_sh(), dir.path().join("run.sh")).unwrap();
    let tf = |args: &[&str]| {
        let mut c = Command::new("terraform");
        c.arg(args[0]).arg("-no-color");
        if args[0] != "output" {
            c.arg("-input=false");
        }
        c.args(&args[1..])
            .current_dir(dir.path())
            .env("TF_IN_AUTOMATION", "1");
        c.output().unwrap()
    };
    let o = tf(&["init", "-backend=false"]);
    assert!(o.status.success(), "{}", stderr(&o));

    for (var, value, message) in [
        ("vaultfs_version", "banana", "vaultfs_version must be"),
        ("base_url", "ftp://mirror/vaultfs", "base_url must be"),
        ("ttl", "60", "ttl must be"),
        ("token_wait", "-1", "token_wait must be"),
        ("token_wait", "1.5", "token_wait must be"),
        ("kv_mounts", "[\"a,b\"]", "kv_mounts entries"),
        ("mount_path", "secrets", "mount_path must be"),
    ] {
        let o = tf(&[
            "plan",
            "-var",
            "agent_id=a",
            "-var",
            &format!("{var}={value}"),
        ]);
        assert!(!o.status.success(), "{var}={value} was accepted");
        assert!(
            stderr(&o).contains(message),
            "{var}={value}: {}",
            stderr(&o)
        );
    }

    let o = tf(&[
        "apply",
        "-auto-approve",
        "-var",
        "agent_id=a",
        "-var",
        "mount_path=~/it's $HOME `x`",
        "-var",
        "kv_mounts=[\"coder\", \"team/kv\"]",
        "-var",
        "vaultfs_version=0.1.0",
        "-var",
        "token_wait=30",
        "-var",
        "audit_log=/var/log/it's $HOME.jsonl",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = tf(&["output", "-raw", "exports"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let exports = String::from_utf8_lossy(&o.stdout).into_owned();
    // What run.sh sees after main.tf's prelude.
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!("{exports}\nenv | grep ^VAULTFS_ | sort"))
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "VAULTFS_AUDIT_LOG=/var/log/it's $HOME.jsonl\n\
         VAULTFS_BASE_URL=https://github.com/vaultfs/vaultfs/releases\n\
         VAULTFS_KV_MOUNTS=coder,team/kv\n\
         VAULTFS_MOUNT_PATH=~/it's $HOME `x`\n\
         VAULTFS_TOKEN_WAIT=30\n\
         VAULTFS_TTL=60s\n\
         VAULTFS_VERSION=0.1.0\n"
    );
}

/// `terraform fmt -check` where terraform is installed (the registry's
/// check); CI without terraform says so on stderr.
#[test]
fn main_tf_is_terraform_fmt_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/coder");
    match Command::new("terraform")
        .args(["fmt", "-check", "-diff"])
        .arg(&dir)
        .output()
    {
        Ok(o) => assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout)),
        Err(e) => eprintln!("terraform not installed ({e}): fmt not checked"),
    }
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
    assert!(!run(wait_for_mount(&h, 1), 20).status.success());

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
