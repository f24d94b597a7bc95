//! The Coder module: contrib/coder/run.sh run with bash as a Coder agent
//! would, against a real OpenBao, installing the release archive that
//! scripts/package builds (served over loopback HTTP), with a real mount as
//! the result; its shellcheck and terraform checks.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::harness::*;
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

fn module_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/coder/modules/vaultfs")
}

fn run_sh() -> PathBuf {
    module_dir().join("run.sh")
}

/// Where the module installs vaultfs under a home.
fn installed_bin(home: &Path) -> PathBuf {
    home.join(".coder-modules/vaultfs/vaultfs/bin/vaultfs")
}

/// The archive's SHA-256, as a template author would pin it.
fn archive_sha256(p: &package::Package) -> String {
    let o = Command::new("sha256sum").arg(&p.archive).output().unwrap();
    String::from_utf8_lossy(&o.stdout)[..64].to_string()
}

/// The Coder agent's script bin directory under a home.
fn agent_bin_dir(h: &Home) -> PathBuf {
    h.path().join(".coder/bin")
}

/// `bash run.sh ACTION` in the environment the Coder agent gives scripts:
/// HOME, VAULT_ADDR, `CODER_SCRIPT_BIN_DIR` first on PATH, and no token
/// unless the test adds one.
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
    let bin_dir = agent_bin_dir(h);
    c.env("HOME", h.path())
        .env("VAULT_ADDR", &bao().addr)
        .env(
            "PATH",
            format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir.display()),
        )
        .env("CODER_SCRIPT_BIN_DIR", &bin_dir)
        .env_remove("NOTIFY_SOCKET");
    c
}

/// `vaultfs status --wait`: the wait of a script that has vaultfs on PATH
/// (the module's `wait_command` needs none, see
/// `agent_restarts_and_parallel_starts_keep_one_mount`).
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

/// A `run.sh start` running, its output collected as it comes (through
/// pipes, as a Coder agent reads it).
struct Started {
    child: std::process::Child,
    stdout: Collected,
    stderr: Collected,
}

/// What a pipe has delivered so far, and whether it is closed.
type Collected = (Arc<Mutex<Vec<u8>>>, std::thread::JoinHandle<()>);

fn collect(mut pipe: impl Read + Send + 'static) -> Collected {
    let got = Arc::new(Mutex::new(Vec::new()));
    let into = got.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    (got, reader)
}

impl Started {
    /// Until its output so far says `what`.
    fn wait_for_output(&self, what: &str) {
        wait_until(
            &format!("run.sh to say {what:?}"),
            Duration::from_secs(20),
            || String::from_utf8_lossy(&self.stdout.0.lock().unwrap()).contains(what),
        );
    }
}

/// `run.sh start` that waits up to 30 s for a token Vault accepts.
fn start_waiting_for_a_token(h: &Home) -> Started {
    let mut c = script(h, "start");
    c.env("VAULTFS_BIN", vaultfs_bin())
        .env("VAULTFS_TOKEN_WAIT", "30")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = spawn_kept(c);
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    Started {
        child,
        stdout,
        stderr,
    }
}

/// What `vault login` does: a new `~/.vault-token`, written whole.
fn login(h: &Home, token: &str) {
    let tmp = h.path().join(".vault-token.tmp");
    std::fs::write(&tmp, format!("{token}\n")).unwrap();
    std::fs::rename(&tmp, h.path().join(".vault-token")).unwrap();
}

/// The output of a `run.sh` that must end, its pipes closed, within 40 s.
fn finish(s: Started) -> std::process::Output {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Started {
            mut child,
            stdout,
            stderr,
        } = s;
        let status = child.wait().unwrap();
        let all = |(got, reader): Collected| {
            reader.join().unwrap();
            std::mem::take(&mut *got.lock().unwrap())
        };
        let (stdout, stderr) = (all(stdout), all(stderr));
        tx.send(std::process::Output {
            status,
            stdout,
            stderr,
        })
    });
    rx.recv_timeout(Duration::from_secs(40))
        .expect("run.sh did not finish (a daemon holding its output?)")
}

#[test]
fn waits_for_a_token_file_written_after_it_starts() {
    let b = bao();
    let token = b.token_with_policy("coder-list", POLICY_LIST, &[]);
    let h = Home::new();
    let child = start_waiting_for_a_token(&h);
    // Another script waiting for the mount with vaultfs status.
    let waiter = spawn_kept(wait_for_mount(&h, 40));
    // Like `vault login` in a parallel start script, once it waits.
    child.wait_for_output("waiting up to 30s");
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
        [".env", ".json", ".sh", "password"]
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
/// `latest/download/`) holding scripts/package's archive and SHA256SUMS,
/// served over loopback HTTP; its `file://` URL is [`file_url`].
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

fn file_url(root: &Path) -> String {
    format!("file://{}", root.display())
}

#[test]
fn installs_the_release_archive_and_applies_the_module_settings() {
    let b = bao();
    let token = b.token_with_policy("coder-read", POLICY_READ, &[]);
    let p = package::package();
    let h = Home::new();
    let site = release_site(&h.path().join("site"));
    let bin_dir = agent_bin_dir(&h);

    // Plain http:// without a pinned SHA-256: refused before any download.
    let mut c = script(&h, "start");
    c.env("VAULT_TOKEN", &token)
        .env("VAULTFS_BASE_URL", &site.url)
        .env("VAULTFS_VERSION", &p.version);
    let o = run(c, 60);
    assert_fails(&o, "refusing to download vaultfs over plain http://");
    assert!(!installed_bin(h.path()).exists());
    // A wrong pin: the download is refused.
    let mut c = script(&h, "start");
    c.env("VAULT_TOKEN", &token)
        .env("VAULTFS_BASE_URL", &site.url)
        .env("VAULTFS_VERSION", &p.version)
        .env("VAULTFS_SHA256", "0".repeat(64));
    let o = run(c, 60);
    assert_fails(&o, "sha256 is pinned to 0000");
    assert!(!installed_bin(h.path()).exists());

    let mut c = script(&h, "start");
    c.env("VAULT_TOKEN", &token)
        .env("VAULTFS_BASE_URL", &site.url)
        .env("VAULTFS_VERSION", &p.version)
        .env("VAULTFS_SHA256", archive_sha256(p))
        .env("VAULTFS_MOUNT_PATH", "~/my secrets")
        .env("VAULTFS_KV_MOUNTS", "coder")
        .env("VAULTFS_TTL", "5s");
    let o = run(c, 60);
    assert_ok(&o, "run.sh start");
    // The install line names the version it installs.
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("installing vaultfs {} (", p.version)),
        "{out}"
    );
    let installed = installed_bin(h.path());
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
    assert_eq!(
        names(mp.join("coder/db")),
        [".env", ".json", ".sh", "password"]
    );
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
    let root = h.path().join("site");
    let _site = release_site(&root);
    // An older vaultfs already installed (persistent home).
    let old = installed_bin(h.path());
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
        .env("VAULTFS_BASE_URL", file_url(&root))
        .env("VAULTFS_VERSION", &p.version)
        .env(
            "PATH",
            format!(
                "{}:{}:/usr/local/bin:/usr/bin:/bin",
                agent_bin_dir(&h).display(),
                image_bin.display()
            ),
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
    assert!(!installed_bin(h.path()).exists());

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
    let _site = release_site(&root);
    // Someone else's bytes under the archive's name.
    let d = root.join(format!("download/v{}", p.version));
    let mut bytes = std::fs::read(&p.archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(d.join(p.archive.file_name().unwrap()), bytes).unwrap();

    let mut c = script(&h, "start");
    c.env("VAULT_TOKEN", "unused")
        .env("VAULTFS_BASE_URL", file_url(&root))
        .env("VAULTFS_VERSION", &p.version);
    let o = run(c, 60);
    assert_fails(&o, "checksum mismatch");
    assert!(stderr(&o).contains("refusing to install"), "{}", stderr(&o));
    assert!(!installed_bin(h.path()).exists());
    assert!(!is_mounted(&h.secrets()));

    // A version the site does not have: one line naming the URL and why.
    let mut c = script(&h, "start");
    c.env("VAULT_TOKEN", "unused")
        .env("VAULTFS_BASE_URL", file_url(&root))
        .env("VAULTFS_VERSION", "9.9.9");
    let o = run(c, 60);
    assert_fails(&o, "cannot download file://");
    assert!(
        stderr(&o).contains("/download/v9.9.9/SHA256SUMS"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("Couldn't open file"), "{}", stderr(&o));
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
    child.wait_for_output("was rejected by Vault");
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
#[cfg(feature = "root_tests")]
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

/// terraform, where installed; under CI (CI=true) a missing terraform is a
/// failure, never a skip.
fn terraform_installed() -> bool {
    if Command::new("terraform")
        .arg("version")
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "terraform is missing under CI: the module's checks need it"
    );
    eprintln!("terraform not installed: main.tf not evaluated");
    false
}

/// main.tf without what needs the `coder` provider (which is not
/// downloaded here): its `terraform` block and its resources. Its
/// variables, validation blocks, locals and outputs are left whole, and
/// an output of the exports (what both scripts start with) is added.
fn main_tf_without_provider() -> String {
    let tf = std::fs::read_to_string(module_dir().join("main.tf")).unwrap();
    let mut out = String::new();
    let mut keep = true;
    for line in tf.lines() {
        if !line.starts_with([' ', '}']) && !line.is_empty() {
            keep = !line.starts_with("resource ")
                && !line.starts_with("terraform ")
                && !line.starts_with("data ");
        }
        if keep {
            out.push_str(line);
            out.push('\n');
        }
        if line == "}" {
            keep = true;
        }
    }
    out.push_str("output \"exports\" {\n  value = local.exports\n}\n");
    out
}

/// A terraform working directory holding [`main_tf_without_provider`] and
/// run.sh, initialised. `tf(args)` runs terraform there.
struct Tf {
    dir: tempfile::TempDir,
}

impl Tf {
    fn new() -> Tf {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.tf"), main_tf_without_provider()).unwrap();
        std::fs::copy(run_sh(), dir.path().join("run.sh")).unwrap();
        let t = Tf { dir };
        let o = t.tf(&["init", "-backend=false"]);
        assert!(o.status.success(), "{}", stderr(&o));
        t
    }

    fn tf(&self, args: &[&str]) -> std::process::Output {
        let mut c = Command::new("terraform");
        c.arg(args[0]).arg("-no-color");
        if args[0] != "output" {
            c.arg("-input=false");
        }
        c.args(&args[1..])
            .current_dir(self.dir.path())
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            // No version check against HashiCorp's servers.
            .env("CHECKPOINT_DISABLE", "1");
        c.output().unwrap()
    }

    /// `terraform COMMAND [flags]` with `-var agent_id=a` and `-var K=V`
    /// for each of `vars`.
    fn with_vars(&self, command: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
        let mut args: Vec<String> = command.iter().map(|a| a.to_string()).collect();
        for (k, v) in [("agent_id", "a")].iter().chain(vars) {
            args.push("-var".into());
            args.push(format!("{k}={v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.tf(&args)
    }

    fn plan(&self, vars: &[(&str, &str)]) -> std::process::Output {
        self.with_vars(&["plan"], vars)
    }

    /// Applies with `vars`, then gives the output `name` (raw).
    fn output(&self, vars: &[(&str, &str)], name: &str) -> String {
        let o = self.with_vars(&["apply", "-auto-approve"], vars);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = self.tf(&["output", "-raw", name]);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// main.tf's variables, validation blocks and exported settings, evaluated
/// by terraform itself.
#[test]
fn main_tf_validates_variables_and_quotes_every_setting() {
    if !terraform_installed() {
        return;
    }
    let t = Tf::new();
    for (var, value, message) in [
        ("vaultfs_version", "banana", "vaultfs_version must be"),
        ("vaultfs_version", "v0.1.0", "without a leading v"),
        ("base_url", "ftp://mirror/vaultfs", "base_url must be"),
        ("sha256", "abc", "sha256 must be"),
        ("ttl", "60", "ttl must be"),
        ("token_wait", "-1", "token_wait must be"),
        ("token_wait", "1.5", "token_wait must be"),
        ("kv_mounts", "[\"a,b\"]", "kv_mounts entries"),
        ("mount_path", "secrets", "mount_path must be"),
    ] {
        let o = t.plan(&[(var, value)]);
        assert!(!o.status.success(), "{var}={value} was accepted");
        assert!(
            stderr(&o).contains(message),
            "{var}={value}: {}",
            stderr(&o)
        );
    }

    let exports = t.output(
        &[
            ("mount_path", "~/it's $HOME `x`"),
            ("kv_mounts", "[\"coder\", \"team/kv\"]"),
            ("vaultfs_version", "0.1.0"),
            ("token_wait", "30"),
            ("allow_non_empty", "true"),
            ("audit_log", "/var/log/it's $HOME.jsonl"),
        ],
        "exports",
    );
    // What run.sh sees after main.tf's prelude.
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!("{exports}\nenv | grep ^VAULTFS_ | sort"))
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    let sync = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("VAULTFS_SYNC_NAME="))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(sync.starts_with("vaultfs-vaultfs-mount-"), "{sync}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!(
            "VAULTFS_ALLOW_NON_EMPTY=true\n\
             VAULTFS_AUDIT_LOG=/var/log/it's $HOME.jsonl\n\
             VAULTFS_BASE_URL=https://github.com/vaultfs/vaultfs/releases\n\
             VAULTFS_KV_MOUNTS=coder,team/kv\n\
             VAULTFS_MOUNT_PATH=~/it's $HOME `x`\n\
             VAULTFS_SHA256=\n\
             VAULTFS_SYNC_NAME={sync}\n\
             VAULTFS_TOKEN_WAIT=30\n\
             VAULTFS_TTL=60s\n\
             VAULTFS_VERSION=0.1.0\n"
        )
    );
}

/// The `ttl` validation accepts exactly what `vaultfs mount --ttl` accepts,
/// over a table of spellings, both ways.
#[test]
fn ttl_validation_matches_what_vaultfs_accepts() {
    if !terraform_installed() {
        return;
    }
    let t = Tf::new();
    for ttl in [
        "60s", "5m", "1m30s", "1h 30m", "500ms", "2h", "1d", "0s", "90", "1.5s", "5 m", "1x", "m",
        "-1s", "1m30", "1 day",
    ] {
        let tf_ok = t.plan(&[("ttl", ttl)]).status.success();
        // clap refuses a bad --ttl before anything else; a good one gets
        // as far as the (missing) token.
        let o = Command::new(vaultfs_bin())
            .args(["mount", "/nonexistent/vaultfs-ttl-check"])
            .arg(format!("--ttl={ttl}"))
            .env_remove("VAULT_TOKEN")
            .env("HOME", "/nonexistent")
            .output()
            .unwrap();
        let vaultfs_ok = !stderr(&o).contains("--ttl");
        assert_eq!(tf_ok, vaultfs_ok, "ttl {ttl:?}: {}", stderr(&o));
    }
}

/// Every tracked file of the module passes the registry's formatters where
/// they are installed: `terraform fmt` (and, through contrib/coder/check,
/// prettier with prettier-plugin-sh).
#[test]
fn main_tf_is_terraform_fmt_clean() {
    if !terraform_installed() {
        return;
    }
    let o = Command::new("terraform")
        .args(["fmt", "-check", "-diff", "-recursive"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/coder"))
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        // No version check against HashiCorp's servers.
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

/// contrib/coder/check: prettier (with prettier-plugin-sh, as the
/// registry's `fmt:ci`), shellcheck with the registry's settings, terraform
/// fmt. It installs its npm tools itself.
#[test]
fn the_registry_checks_pass() {
    let o = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/coder/check"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        stderr(&o)
    );
}

#[cfg(feature = "root_tests")]
/// The body of the `coder_script` in docs/coder.md's ordering snippet,
/// rendered as terraform would: heredoc indentation stripped and the
/// module's `wait_command` output in place.
fn docs_ordering_snippet(wait_command: &str) -> String {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/coder.md"))
        .unwrap();
    let at = doc
        .find("resource \"coder_script\" \"needs_secrets\"")
        .expect("docs/coder.md has the ordering snippet");
    let body = &doc[at..];
    let body = &body[body.find("<<-EOT\n").unwrap() + 7..];
    let body = &body[..body.find("\n  EOT\n").unwrap() + 1];
    let indent = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap();
    let mut out = String::new();
    for l in body.lines() {
        out.push_str(l.get(indent..).unwrap_or(""));
        out.push('\n');
    }
    assert!(out.contains("${module.vaultfs.wait_command}"), "{out}");
    // Terraform's escape for a literal `${`, then the output.
    out.replace("${module.vaultfs.wait_command}", wait_command)
        .replace("$${", "${")
}

/// The module as the Coder agent runs it, as a normal user: its PATH has
/// `$CODER_SCRIPT_BIN_DIR` first (where the first start links vaultfs) and
/// vaultfs is in the image. Two starts in a row keep one daemon (the
/// second finds the link first on PATH, same version, same settings); two
/// at once both succeed with one mount; another start script running
/// docs/coder.md's snippet before vaultfs is on PATH waits for the mount.
#[cfg(feature = "root_tests")]
#[test]
fn agent_restarts_and_parallel_starts_keep_one_mount() {
    if !terraform_installed() {
        return;
    }
    let b = bao();
    let token = b.token_with_policy("coder-list", POLICY_LIST, &[]);
    let t = Tf::new();
    let wait_command = t.output(&[("kv_mounts", "[\"coder\"]")], "wait_command");
    let exports = t.output(&[("kv_mounts", "[\"coder\"]")], "exports");
    let top = tempfile::tempdir().unwrap();
    let start_sh = top.path().join("start.sh");
    // The coder_script as main.tf renders it (exports, then run.sh).
    std::fs::write(
        &start_sh,
        format!(
            "#!/usr/bin/env bash\n{exports}\nset -- start\n{}",
            std::fs::read_to_string(run_sh()).unwrap()
        ),
    )
    .unwrap();
    let snippet = top.path().join("snippet.sh");
    std::fs::write(&snippet, docs_ordering_snippet(&wait_command)).unwrap();
    for f in [&start_sh, &snippet] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(
        top.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let body = r#"
BD="$H/.coder/bin" IMG="$D/image"
mkdir -p "$BD" "$IMG" && chown 65534:65534 "$H/.coder" "$BD" && cp "$BIN" "$IMG/vaultfs" || exit 20
USER_PATH="$BD:$IMG:/usr/bin:/bin"
agent() { as_user env -u VAULTFS_BIN CODER_SCRIPT_BIN_DIR="$BD" "$@"; }
daemons() { for f in "$PIDS"/*.pid; do [ -f "$f" ] && head -n1 "$f"; done; }
mounts() { grep -c " $H/secrets " /proc/self/mountinfo; }
# Another start script, started first: nothing of vaultfs is on PATH yet.
agent bash "$SNIPPET" > "$D/snippet.out" 2>&1 &
snip=$!
sleep 1
agent "$START" > "$D/start1.out" 2>&1 || { cat "$D/start1.out"; exit 21; }
wait "$snip" || { echo "snippet failed:"; cat "$D/snippet.out"; exit 22; }
grep -q '^db password has 10 characters$' "$D/snippet.out" || { cat "$D/snippet.out"; exit 23; }
[ "$(readlink -f "$BD/vaultfs")" = "$IMG/vaultfs" ] || exit 24
pid1="$(daemons)"
echo "pid1=$pid1"
# The agent restarts: the link now comes first on PATH.
agent "$START" > "$D/start2.out" 2>&1 || { cat "$D/start2.out"; exit 25; }
cat "$D/start2.out"
echo "pid2=$(daemons)"
echo "mounts=$(mounts)"
as_user env -u VAULTFS_BIN bash -c "$(sed 's/^set -- start$/set -- stop/' "$START")" || exit 26
[ "$(mounts)" = 0 ] || exit 27
# Two starts at once.
agent "$START" > "$D/a.out" 2>&1 & a=$!
agent "$START" > "$D/b.out" 2>&1 & b=$!
wait "$a"; echo "first=$?"
wait "$b"; echo "second=$?"
cat "$D/a.out" "$D/b.out"
echo "parallel mounts=$(mounts) daemons=$(daemons | wc -l)"
echo "value=$(as_user cat "$H/secrets/coder/app/db/password")"
grep " $H/secrets " /proc/self/mountinfo | sed 's/.* - /type=/'
echo done
"#;
    let o = run_as_nobody(
        body,
        &[
            ("ADDR", b.addr.as_str()),
            ("TOKEN", token.as_str()),
            ("START", start_sh.to_str().unwrap()),
            ("SNIPPET", snippet.to_str().unwrap()),
        ],
        180,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("no {k}= in {out}"))
            .to_string()
    };
    assert!(!field("pid1").is_empty(), "{out}");
    assert_eq!(field("pid1"), field("pid2"), "the restart remounted: {out}");
    assert!(out.contains("already mounted at"), "{out}");
    assert!(!out.contains("remounting"), "{out}");
    assert_eq!(field("mounts"), "1", "{out}");
    // Two at once: both succeed (the second finds the first's mount).
    assert_eq!(
        (field("first"), field("second")),
        ("0".into(), "0".into()),
        "{out}"
    );
    assert!(
        out.contains("parallel mounts=1 daemons=1\n"),
        "two starts at once: {out}"
    );
    assert_mounted_as_nobody(&o, "from-coder");
}

/// A mount path that holds files (a persistent home) is refused with a
/// message naming the variable, before any token wait; `allow_non_empty`
/// mounts over it.
#[test]
fn a_non_empty_mount_path_is_refused_unless_allowed() {
    let b = bao();
    let token = b.token_with_policy("coder-list", POLICY_LIST, &[]);
    let h = Home::new();
    let mp = h.secrets();
    std::fs::create_dir(&mp).unwrap();
    std::fs::write(mp.join("notes.txt"), "mine").unwrap();
    let mut c = script(&h, "start");
    c.env("VAULTFS_BIN", vaultfs_bin())
        .env("VAULTFS_TOKEN_WAIT", "30");
    let t = std::time::Instant::now();
    let o = run(c, 40);
    assert_fails(&o, "is not empty");
    assert!(
        stderr(&o).contains("allow_non_empty = true"),
        "{}",
        stderr(&o)
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert!(!is_mounted(&mp));

    let mut c = script(&h, "start");
    c.env("VAULTFS_BIN", vaultfs_bin())
        .env("VAULT_TOKEN", &token)
        .env("VAULTFS_ALLOW_NON_EMPTY", "true");
    assert_ok(&run(c, 40), "start with allow_non_empty");
    assert_eq!(read(mp.join("coder/app/db/password")), "from-coder");
    let mut stop = script(&h, "stop");
    stop.env("VAULTFS_BIN", vaultfs_bin());
    assert_ok(&run(stop, 20), "stop");
    assert_eq!(read(mp.join("notes.txt")), "mine");
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

/// The module README by the registry's contributor rules: front matter
/// with the keys it knows, exactly one h1, in the h1 section a paragraph
/// and exactly one `tf` block, with the registry source and a `version`;
/// every example the same; `tf`, never `hcl`; headers one level deeper at
/// a time; no variables table (the registry shows them from main.tf). And
/// the namespace README with its avatar beside it.
#[test]
fn readmes_follow_the_registry_rules() {
    let readme = std::fs::read_to_string(module_dir().join("README.md")).unwrap();
    let rest = readme.strip_prefix("---\n").expect("front matter");
    let (front, body) = rest.split_once("\n---\n").expect("front matter end");
    for line in front.lines() {
        let key = line.split(':').next().unwrap();
        assert!(
            ["display_name", "description", "icon", "verified", "tags"].contains(&key),
            "front matter key {key:?}"
        );
    }
    assert!(front.contains("icon: ../../../../.icons/"), "{front}");
    let mut in_code = false;
    let mut level = 1;
    let mut h1 = 0;
    for line in body.lines() {
        if line.starts_with("```") {
            assert_ne!(line, "```hcl", "tf, not hcl");
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        if line.starts_with('#') {
            let n = line.chars().take_while(|&c| c == '#').count();
            assert!(n <= level + 1, "header jumps a level: {line}");
            level = n;
            h1 += usize::from(n == 1);
        }
        assert!(!line.starts_with("| Name"), "a variables table: {line}");
    }
    assert_eq!(h1, 1, "exactly one h1");
    let h1_section = &body[..body.find("\n## ").unwrap()];
    assert_eq!(h1_section.matches("```tf\n").count(), 1, "{h1_section}");
    for block in body.split("```tf\n").skip(1) {
        let block = &block[..block.find("```").unwrap()];
        if block.contains("module \"vaultfs\"") {
            assert!(
                block.lines().any(|l| l.trim_start().starts_with("source ")
                    && l.ends_with("= \"registry.coder.com/vaultfs/vaultfs/coder\"")),
                "{block}"
            );
            assert!(
                block
                    .lines()
                    .any(|l| l.trim_start().starts_with("version ")),
                "{block}"
            );
        }
    }

    let ns = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/coder");
    let ns_readme = std::fs::read_to_string(ns.join("README.md")).unwrap();
    assert!(ns_readme.starts_with("---\ndisplay_name: "), "{ns_readme}");
    assert!(ns_readme.contains("\navatar: ./.images/avatar.svg\n"));
    assert!(ns_readme.contains("\nstatus: community\n"));
    let svg = std::fs::read_to_string(ns.join(".images/avatar.svg")).unwrap();
    assert!(
        svg.contains("width=\"400\" height=\"400\""),
        "square, 400 px"
    );
}

/// A daemon killed under a live mount (OOM killer, `kill -9`) leaves a dead
/// mount; the next start sees it is not live (statfs reaches the daemon;
/// stat would be answered from the kernel's cache), recovers it and mounts
/// again, even with files under it allowed or not: the directory under a
/// dead mount is what counts.
#[test]
fn a_killed_daemon_is_recovered_by_the_next_start() {
    let b = bao();
    let token = b.token_with_policy("coder-list", POLICY_LIST, &[]);
    let h = Home::new();
    let mp = h.secrets();
    let start = || {
        let mut c = script(&h, "start");
        c.env("VAULTFS_BIN", vaultfs_bin())
            .env("VAULT_TOKEN", &token);
        run(c, 40)
    };
    assert_ok(&start(), "start");
    assert_eq!(read(mp.join("coder/app/db/password")), "from-coder");
    let pid = h.pid(&mp);
    signal(pid, Signal::SIGKILL);
    wait_until("daemon death", Duration::from_secs(10), || !alive(pid));
    let o = start();
    assert_ok(&o, "start over a dead mount");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("already mounted"),
        "a dead mount taken for live"
    );
    assert_ne!(h.pid(&mp), pid);
    assert_eq!(mount_count(&mp), 1);
    assert_eq!(read(mp.join("coder/app/db/password")), "from-coder");
    let mut stop = script(&h, "stop");
    stop.env("VAULTFS_BIN", vaultfs_bin());
    assert_ok(&run(stop, 20), "stop");
    assert!(!is_mounted(&mp));
}

/// `wait_command` as terraform renders it, with nothing mounted: one line
/// naming the mount path, after the bound (`VAULTFS_WAIT` here, 1 s).
#[test]
fn wait_command_gives_up_in_one_line() {
    if !terraform_installed() {
        return;
    }
    let t = Tf::new();
    let wait_command = t.output(&[], "wait_command");
    let h = Home::new();
    let o = Command::new("bash")
        .arg("-c")
        .arg(&wait_command)
        .env("HOME", h.path())
        .env("VAULTFS_WAIT", "1")
        .output()
        .unwrap();
    assert_fails(&o, "secrets is not mounted after 1s");
    assert!(stderr(&o).contains(&h.secrets().display().to_string()));
}
