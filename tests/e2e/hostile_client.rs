//! What a hostile Vault (or a hostile VAULT_ADDR) can do to the HTTP client
//! and the renewal task: the real binary against the loopback server of
//! tests/e2e/harness/hostile.rs.

use std::time::Duration;

use crate::harness::hostile::*;
use crate::harness::*;
use serde_json::json;

fn lookups(server: &Server) -> usize {
    server.count(|r| r.target == "/v1/auth/token/lookup-self")
}

/// `ttl: u64::MAX` (an Instant + Duration overflow) must not end the
/// renewal task and leave the mount without renewal, silently: the task
/// still notices a new token.
#[test]
fn huge_token_ttl_keeps_renewal_alive() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "hostile-token-1").unwrap();
    let server = Server::start(|r| match r.target.as_str() {
        "/v1/auth/token/lookup-self" => ok(json!({"data": {
            "ttl": u64::MAX, "creation_ttl": u64::MAX, "renewable": true,
            "expire_time": "2999-01-01T00:00:00Z"}})),
        "/v1/auth/token/renew-self" => ok(json!({"auth": {"lease_duration": u64::MAX}})),
        _ => basics(r),
    });
    let m = server.mount(&["--token-file", token.to_str().unwrap()]);
    // The mount's own check, whose answer the renewal task starts from.
    wait_until("the mount's lookup", Duration::from_secs(10), || {
        lookups(&server) >= 1
    });
    // Any lookup of the renewal task's start has landed.
    let before = settled(|| lookups(&server));
    std::fs::write(&token, "hostile-token-2").unwrap();
    // Nothing else touches Vault: only a live renewal task (which looks at
    // the token file every 5 s) looks the new token up.
    wait_until("lookup of the new token", Duration::from_secs(15), || {
        lookups(&server) > before
    });
    let log = m.log_text();
    assert!(!log.contains("panicked"), "{log}");
}

/// A vaultfs mount that is expected to fail, with `addr` as VAULT_ADDR.
fn failing_mount(addr: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = vaultfs_cmd_at(addr, "hostile-test-token");
    cmd.env("RUST_LOG", "debug")
        .args(["mount", "--foreground", "--timeout", "2s"])
        .arg(dir.path());
    let o = run(cmd, 30);
    (o.status.success(), stderr(&o))
}

/// Userinfo in VAULT_ADDR (`http://user:pass@host`): errors and logs name
/// the host, never the credentials.
#[test]
fn address_userinfo_is_never_shown() {
    let server = Server::start(|r| match r.target.as_str() {
        "/v1/auth/token/lookup-self" => status(500, r#"{"errors":["internal error"]}"#),
        _ => basics(r),
    });
    let with_userinfo = server
        .addr
        .replace("http://", "http://vaultuser:Pa55-in-url@");
    let port = server.addr.rsplit(':').next().unwrap().to_string();
    for (addr, named) in [
        (with_userinfo.as_str(), port.as_str()),
        ("ftp://vaultuser:Pa55-in-url@127.0.0.1:1", "ftp://"),
        ("http://vaultuser:Pa55-in-url@[::1", "[::1"),
        ("http://:Pa55-in-url@127.0.0.1:1/", "127.0.0.1:1"),
    ] {
        let (ok, err) = failing_mount(addr);
        assert!(!ok, "{addr}: mounted");
        assert!(
            !err.contains("Pa55-in-url") && !err.contains("vaultuser"),
            "{addr}: {err}"
        );
        assert!(err.contains(named), "{addr}: should name {named}: {err}");
    }
}
