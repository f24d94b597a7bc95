//! Issue #10, the client's share: what a hostile Vault (or a hostile
//! VAULT_ADDR) can do to the HTTP client and the renewal task. Every test
//! runs the real binary against the loopback server of tests/common.

mod common;

use std::time::Duration;

use common::hostile::*;
use common::*;
use serde_json::json;

fn lookups(server: &Server) -> usize {
    server.count(|r| r.target == "/v1/auth/token/lookup-self")
}

/// Defect 9: `ttl: u64::MAX` used to panic the renewal task (Instant +
/// Duration overflow) and leave the mount without renewal, silently. The
/// task must survive it: proven by it still noticing a new token.
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
    // The mount's own check, then the renewal task's first lookup.
    wait_until("renewal's first lookup", Duration::from_secs(10), || {
        lookups(&server) >= 2
    });
    std::thread::sleep(Duration::from_millis(500));
    let before = lookups(&server);
    std::fs::write(&token, "hostile-token-2").unwrap();
    // Nothing else touches Vault: only a live renewal task (which looks at
    // the token file every 5 s) looks the new token up.
    wait_until("lookup of the new token", Duration::from_secs(15), || {
        lookups(&server) > before
    });
    let log = m.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
