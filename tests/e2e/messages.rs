//! The mistakes a user makes in setting up a mount, each answered with one
//! line that says what is wrong and what to do, against real servers on
//! loopback and the real FUSE device: the wrong scheme either way, an
//! address ending in /v1, a `--kv` name that does not exist, and a host
//! where FUSE cannot mount (/dev/fuse closed, no CAP_SYS_ADMIN, allow_other
//! without user_allow_other).

#[cfg(feature = "root_tests")]
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

/// `vaultfs mount` in the background at a fresh mount point of `h`, with
/// VAULT_ADDR=`addr`: it must fail with one line holding each of `want`
/// and none of `never`, and leave nothing mounted.
fn mount_fails(
    h: &Home,
    addr: &str,
    token: &str,
    args: &[&str],
    want: &[&str],
    never: &[&str],
) -> String {
    let mp = h.path().join("m");
    let mut c = h.cmd(Bao::shared(), token, &["mount"]);
    c.args(args).arg(&mp).env("VAULT_ADDR", addr);
    let start = Instant::now();
    let o = run(c, 60);
    for w in want {
        assert_fails(&o, w);
    }
    let err = stderr(&o);
    for n in never {
        assert!(!err.contains(n), "{n:?} in {err:?}");
    }
    assert!(!is_mounted(&mp));
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "took {:?}: {err}",
        start.elapsed()
    );
    err
}

#[test]
fn https_to_a_plain_http_server_says_use_http() {
    let b = Bao::shared();
    let addr = b.addr.replacen("http://", "https://", 1);
    mount_fails(
        &Home::new(),
        &addr,
        ROOT_TOKEN,
        &[],
        &["does not speak TLS", "use an http:// address"],
        &[],
    );
}

#[test]
fn http_to_an_https_server_says_use_https() {
    let b = Bao::start(true);
    let addr = b.addr.replacen("https://", "http://", 1);
    mount_fails(
        &Home::new(),
        &addr,
        ROOT_TOKEN,
        &[],
        &[
            "Client sent an HTTP request to an HTTPS server",
            "use an https:// address",
        ],
        &[],
    );
}

/// The token is fine: the address is not, and the message says so.
#[test]
fn an_address_ending_in_v1_is_named() {
    let b = Bao::shared();
    let token = b.token_with_policy(
        "v1-reader",
        r#"path "secret/*" { capabilities = ["read", "list"] }"#,
        &[],
    );
    for suffix in ["/v1", "/v1/"] {
        mount_fails(
            &Home::new(),
            &format!("{}{suffix}", b.addr),
            &token,
            &[],
            &["ends in /v1", "drop the /v1"],
            &["rejected", "token"],
        );
    }
}

#[test]
fn a_kv_name_that_does_not_exist_is_named() {
    let b = Bao::shared();
    mount_fails(
        &Home::new(),
        &b.addr,
        ROOT_TOKEN,
        &["--kv", "secret", "--kv", "no-such-kv"],
        &["--kv \"no-such-kv\" names no KV mount", "no such mount"],
        &["permission denied by Vault"],
    );
    mount_fails(
        &Home::new(),
        &b.addr,
        ROOT_TOKEN,
        &["--kv", "cubbyhole"],
        &["--kv \"cubbyhole\"", "another kind of secrets engine"],
        &[],
    );
}

/// Root in a container that dropped CAP_SYS_ADMIN from its bounding set:
/// neither vaultfs nor the setuid fusermount3 can mount.
#[cfg(feature = "root_tests")]
#[test]
fn no_cap_sys_admin_says_what_the_container_needs() {
    let b = Bao::shared();
    let h = Home::new();
    let mp = h.path().join("m");
    let mut c = Command::new("setpriv");
    c.args(["--inh-caps=-sys_admin", "--bounding-set=-sys_admin", "--"])
        .arg(vaultfs_bin())
        .args(["mount", "--no-mlock"])
        .arg(&mp)
        .env("HOME", h.path())
        .env("VAULT_ADDR", &b.addr)
        .env("VAULT_TOKEN", ROOT_TOKEN)
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("XDG_STATE_HOME");
    let o = run(c, 60);
    assert_fails(&o, "lacks CAP_SYS_ADMIN");
    assert_fails(&o, "--cap-add SYS_ADMIN");
    assert!(!stderr(&o).contains("installed"), "{}", stderr(&o));
    assert!(!is_mounted(&mp));
}

/// A normal user, first with a /dev/fuse only root may open, then with an
/// open one but `--allow-other` while /etc/fuse.conf lacks
/// user_allow_other. Each failure is one line naming its cause.
#[cfg(feature = "root_tests")]
#[test]
fn fuse_device_and_user_allow_other_are_named() {
    let o = run_as_nobody(
        r#"
mknod "$D/closed" c 10 229 && chmod 600 "$D/closed" || exit 30
: > "$D/fuse.conf" && mount --bind "$D/fuse.conf" /etc/fuse.conf || exit 31
echo "allow_other: $(as_user "$BIN" mount --no-mlock --allow-other 2>&1)"
mount --bind "$D/closed" /dev/fuse || exit 32
echo "closed: $(as_user "$BIN" mount --no-mlock 2>&1)"
grep -c " $H/secrets " /proc/self/mountinfo
echo done
"#,
        &[("ADDR", &Bao::shared().addr), ("TOKEN", ROOT_TOKEN)],
        90,
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.ends_with("0\ndone\n"), "{out}{}", stderr(&o));
    // Each failure on one line: two of them, the count of mounts, done.
    assert_eq!(out.lines().count(), 4, "{out}");
    let line = |tag: &str| {
        let l = out
            .lines()
            .find_map(|l| l.strip_prefix(tag))
            .unwrap_or_else(|| panic!("{tag} in {out}"));
        assert!(l.starts_with(" vaultfs: cannot mount at "), "{l}");
        l.to_string()
    };
    let l = line("allow_other:");
    assert!(
        l.contains("needs the line user_allow_other in /etc/fuse.conf"),
        "{l}"
    );
    assert!(!l.contains("installed"), "{l}");
    let l = line("closed:");
    assert!(
        l.contains("/dev/fuse (mode 0600, owner uid 0) cannot be opened")
            && l.contains("by uid 65534")
            && l.contains("--device /dev/fuse"),
        "{l}"
    );
}
