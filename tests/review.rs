//! Second review of the hostile-input fixes (issue 10): defects found at the
//! seams between them. Real mounts against the hostile loopback server.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::hostile::*;
use common::*;
use serde_json::json;

/// Waits for the renewal task's own `lookup-self`, so that it does not
/// meet a Vault a test then makes hang.
fn renewal_started(server: &Server) {
    wait_until("the renewal task's lookup", Duration::from_secs(5), || {
        server.count(|r| r.target.contains("lookup-self")) >= 2
    });
}

/// A SCAN refused at once by the breaker (another request found Vault
/// down a moment before) returns the breaker's "no answer within …": it
/// was never sent, so it says nothing about SCAN being slow. It disabled
/// SCAN in the mount for good.
#[test]
fn a_scan_refused_by_the_breaker_does_not_disable_scan() {
    let server = Server::start(|r| match (r.method.as_str(), r.target.as_str()) {
        (_, "/v1/secret/data/slow") => Some(Reply::After(
            Duration::from_secs(30),
            Box::new(kv2(json!({"k": "v"})).unwrap()),
        )),
        ("SCAN", "/v1/secret/metadata/b/" | "/v1/secret/metadata/c/") => {
            ok(json!({"data": {"keys": ["s"]}}))
        }
        (_, "/v1/secret/metadata/?list=true") => {
            ok(json!({"data": {"keys": ["slow", "b/", "c/"]}}))
        }
        (_, "/v1/secret/metadata/b/?list=true" | "/v1/secret/metadata/c/?list=true") => {
            ok(json!({"data": {"keys": ["s"]}}))
        }
        _ => basics(r),
    });
    let m = server.mount(&["--timeout", "2s"]);
    renewal_started(&server);
    // One read hangs past its deadline: the breaker opens for a second.
    assert_eq!(errno_of(std::fs::read(m.p("secret/slow/k"))), libc::EIO);
    // Within that second a folder is read: its SCAN is refused at once.
    let _ = std::fs::read_dir(m.p("secret/b")).map(|d| d.count());
    std::thread::sleep(Duration::from_millis(1500));
    // Vault answers again: a folder read uses SCAN.
    assert_eq!(names(m.p("secret/c")), ["s"]);
    assert_eq!(
        server.count(|r| r.method == "SCAN"),
        1,
        "{:?}",
        server.requests()
    );
    let log = m.log_text();
    assert!(!log.contains("SCAN too slow"), "{log}");
}

/// A SCAN that is the breaker's probe and times out while Vault hangs
/// got no answer: it must not close the breaker ("Vault is reachable
/// again"), or every request goes out and waits out its deadline again.
#[test]
fn a_scan_timing_out_during_an_outage_does_not_close_the_breaker() {
    let hung = Arc::new(AtomicBool::new(false));
    let h = hung.clone();
    let server = Server::start(move |r| match (r.method.as_str(), r.target.as_str()) {
        (_, "/v1/auth/token/lookup-self") => basics(r),
        _ if h.load(Ordering::SeqCst) => Some(Reply::After(
            Duration::from_secs(30),
            Box::new(status(404, r#"{"errors":[]}"#).unwrap()),
        )),
        (_, "/v1/secret/metadata/?list=true") => ok(json!({"data": {"keys": ["x", "b/"]}})),
        _ => basics(r),
    });
    let m = server.mount(&["--timeout", "2s"]);
    renewal_started(&server);
    // `secret`'s listing is cached (a lookup: LIST, no SCAN).
    assert!(std::fs::metadata(m.p("secret/b")).unwrap().is_dir());
    hung.store(true, Ordering::SeqCst);
    // Vault hangs: a read waits out its deadline and opens the breaker.
    assert_eq!(errno_of(std::fs::read(m.p("secret/x/k"))), libc::EIO);
    assert!(m.log_text().contains("Vault unavailable"));
    // A probe is due; the next request is b's SCAN, which times out.
    std::thread::sleep(Duration::from_millis(1200));
    let _ = std::fs::read_dir(m.p("secret/b")).map(|d| d.count());
    assert!(server.count(|r| r.method == "SCAN") == 1);
    let log = m.log_text();
    assert!(!log.contains("reachable again"), "{log}");
}

/// A namespace that cannot be a header value (CR, LF, other control
/// characters) cannot reach Vault's headers (the HTTP crate refuses it),
/// but it made every request fail and the mount be refused as "cannot
/// reach Vault ... builder error": a bad setting must be named as one.
#[test]
fn a_namespace_with_a_line_break_is_refused_as_a_setting() {
    let server = Server::start(basics);
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(vaultfs_bin())
        .env("VAULT_ADDR", &server.addr)
        .env("VAULT_TOKEN", "hostile-test-token")
        .env("VAULT_NAMESPACE", "team\r\nX-Injected: 1")
        .args(["mount", "--foreground"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("VAULT_NAMESPACE"), "{err}");
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}
