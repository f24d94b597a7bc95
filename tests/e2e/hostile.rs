//! Hostile input: crafted names that try to leave their KV mount, hostile
//! Vault answers (slow SCANs, outages met mid-SCAN) and settings that cannot
//! be sent. Real OpenBao where it can produce the case, a loopback server
//! where it cannot.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::hostile::*;
use crate::harness::*;
use serde_json::json;

/// Every percent-encoded form a file name could take of `.`, `..`, `/`,
/// `?`, `#` and NUL, alone and next to other segments.
const CRAFTED: &[&str] = &[
    "%2E%2E",
    "%2e%2e",
    ".%2E",
    "%2E.",
    ".%2e",
    "%2E",
    "%2e",
    "..%2F..",
    "%2E%2E%2F%2E%2E",
    "%2F",
    "%252E%252E",
    "%3F",
    "%23",
    "%00",
    "..%00",
    "?list=true",
    "#",
    "..\\..",
    "%5C..",
];

/// With the least-privilege policy the Coder README recommends (read, no
/// list), no crafted name reaches anything outside the KV mount: above all
/// not `auth/token/lookup-self`, whose answer holds the token itself.
#[test]
fn crafted_names_never_leave_the_kv_mount() {
    let b = Bao::shared();
    b.enable_kv("legacy", 1, None);
    b.cli(&["kv", "put", "-mount=legacy", "app/db", "password=kept"]);
    let token = b.token_with_policy(
        "legacy-read-only",
        r#"path "legacy/*" { capabilities = ["read"] }"#,
        &[],
    );
    let m = Mount::with(
        b,
        MountOpts::new(&token)
            .arg("--kv")
            .arg("legacy")
            .env("RUST_LOG", "debug"),
    );
    // The way in works: a read-only token walks to what it knows.
    assert_eq!(read(m.p("legacy/app/db/password")), "kept");
    let before = m.log_text().len();

    let targets = ["auth/token/lookup-self/id", "auth/token/lookup-self/.json"];
    for name in CRAFTED {
        for prefix in ["legacy", "legacy/app", "legacy/app/db"] {
            for depth in [1, 2, 3] {
                let up = vec![*name; depth].join("/");
                for t in targets {
                    let p = m.p(&format!("{prefix}/{up}/{t}"));
                    match std::fs::read(&p) {
                        Ok(bytes) => {
                            let text = String::from_utf8_lossy(&bytes);
                            assert!(
                                !text.contains(&token),
                                "the token leaked through {}",
                                p.display()
                            );
                            panic!("{} read as {text:?}", p.display());
                        }
                        // EISDIR: a name that stays inside the mount
                        // (`%252E` is a real name) is taken for a folder when
                        // LIST is refused, as docs/semantics.md says.
                        Err(e) => assert!(
                            matches!(
                                e.raw_os_error(),
                                Some(libc::ENOENT | libc::EACCES | libc::EISDIR)
                            ),
                            "{}: {e}",
                            p.display()
                        ),
                    }
                }
            }
        }
    }
    let log = m.log_text();
    assert!(!log.contains(&token), "token in the log");
    // Nothing outside the mount was even asked for.
    let asked: Vec<&str> = log[before..]
        .lines()
        .filter(|l| l.contains("Vault answered"))
        .collect();
    assert!(!asked.is_empty(), "the log shows no request: {log}");
    for line in asked {
        let path = line.split("path=").nth(1).unwrap_or("");
        let path = path.trim_start_matches('"');
        assert!(path.starts_with("legacy/"), "{line}");
        assert!(!path.split('/').any(|s| s == "." || s == ".."), "{line}");
    }
}

/// A hostile server names mounts, folders and SCAN keys with dot segments:
/// none is shown, and no request vaultfs makes for them leaves `secret/`.
#[test]
fn hostile_names_from_vault_never_move_a_request() {
    let server = Server::start(|r| match (r.method.as_str(), r.target.as_str()) {
        (_, "/v1/sys/internal/ui/mounts") => ok(json!({"data": {"secret": {
            "secret/": {"type": "kv", "options": {"version": "2"}},
            "../auth/token/": {"type": "kv", "options": {"version": "1"}},
            "a/../../sys/": {"type": "kv", "options": {"version": "1"}},
        }}})),
        ("SCAN", "/v1/secret/metadata/") => ok(json!({"data": {"keys": [
            "../x", "a/../../auth/token/lookup-self", "a/./b", "a/b", "./c", "ok",
        ]}})),
        (_, "/v1/secret/metadata/?list=true") => ok(json!({"data": {"keys": [
            "..", "../", ".", "./", "../../auth/token/lookup-self", "a/", "ok", "nul\u{0}/",
        ]}})),
        (_, "/v1/secret/metadata/a/?list=true") => {
            ok(json!({"data": {"keys": ["..", "../", "b"]}}))
        }
        (_, "/v1/secret/data/ok") => kv2(json!({"..": "dots", "k": "v"})),
        (_, "/v1/secret/data/a/b") => kv2(json!({"k": "deep"})),
        _ => basics(r),
    });
    let m = server.mount(&[]);
    let lookups = || server.count(|r| r.target.contains("lookup-self"));
    let at_start = lookups();
    assert_eq!(names(m.path()), ["secret"]);
    assert_eq!(names(m.p("secret")), ["a", "ok"]);
    assert_eq!(names(m.p("secret/a")), ["b"]);
    assert_eq!(read(m.p("secret/a/b/k")), "deep");
    // A key may be named `..`: it is a file, never part of a path.
    assert_eq!(
        names(m.p("secret/ok")),
        ["%2E%2E", ".env", ".json", ".sh", "k"]
    );
    assert_eq!(read(m.p("secret/ok/%2E%2E")), "dots");
    for p in [
        "secret/%2E%2E",
        "secret/%2E",
        "secret/a/%2E%2E/ok",
        "%2E%2E",
        "secret/nul%00",
    ] {
        let e = errno_of(std::fs::metadata(m.p(p)));
        assert_eq!(e, libc::ENOENT, "{p}");
    }
    let requests = server.requests();
    // The walk above really asked: a SCAN and both secrets.
    let data = requests
        .iter()
        .filter(|r| r.target.starts_with("/v1/secret/data/"));
    assert!(
        data.count() >= 2 && requests.iter().any(|r| r.method == "SCAN"),
        "{requests:?}"
    );
    for r in requests {
        let path = r.target.split('?').next().unwrap();
        let inside = path.starts_with("/v1/secret/")
            || path == "/v1/sys/internal/ui/mounts"
            || path == "/v1/auth/token/lookup-self";
        assert!(inside, "{r:?}");
        let segs: Vec<&str> = path.split('/').collect();
        assert!(
            !segs
                .iter()
                .any(|s| *s == "." || *s == ".." || s.contains("%00")),
            "{r:?}"
        );
    }
    // lookup-self only at start-up, never through a name.
    assert_eq!(lookups(), at_start);
}

/// A SCAN slower than `--timeout` (OpenBao walking a very deep mount takes
/// minutes) costs one directory read part of its deadline, then LIST
/// answers; it does not mark Vault as down, and SCAN is not tried again.
#[test]
fn a_scan_slower_than_the_deadline_falls_back_to_list() {
    let server = Server::start(|r| match (r.method.as_str(), r.target.as_str()) {
        ("SCAN", _) => Some(Reply::After(
            Duration::from_secs(30),
            Box::new(ok(json!({"data": {"keys": ["a/s", "b/s"]}})).unwrap()),
        )),
        (_, "/v1/secret/metadata/?list=true") => ok(json!({"data": {"keys": ["a/", "b/"]}})),
        (_, "/v1/secret/metadata/a/?list=true" | "/v1/secret/metadata/b/?list=true") => {
            ok(json!({"data": {"keys": ["s"]}}))
        }
        (_, "/v1/secret/data/a/s" | "/v1/secret/data/b/s") => kv2(json!({"k": "v"})),
        _ => basics(r),
    });
    let m = server.mount(&["--timeout", "2s"]);
    let start = Instant::now();
    assert_eq!(names(m.p("secret")), ["a", "b"]);
    let took = start.elapsed();
    // One deadline at most (2 s), plus scheduling on a loaded machine.
    assert!(took < Duration::from_millis(3500), "ls took {took:?}");
    // Vault is not taken for down: the next reads are answered at once.
    let start = Instant::now();
    assert_eq!(read(m.p("secret/a/s/k")), "v");
    assert_eq!(names(m.p("secret/b")), ["s"]);
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(server.count(|r| r.method == "SCAN"), 1);
    let log = m.log_text();
    assert!(!log.contains("Vault unavailable"), "{log}");
}

/// A SCAN refused at once by the breaker (another request found Vault
/// down a moment before) returns the breaker's "no answer within …": it
/// was never sent, so it says nothing about SCAN being slow and must not
/// disable SCAN for the mount.
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
    // `secret`'s listing is cached (a lookup: LIST, no SCAN).
    assert!(std::fs::metadata(m.p("secret/b")).unwrap().is_dir());
    hung.store(true, Ordering::SeqCst);
    // Vault hangs: a read waits out its deadline and opens the breaker.
    assert_eq!(errno_of(std::fs::read(m.p("secret/x/k"))), libc::EIO);
    assert!(m.log_text().contains("Vault unavailable"));
    // Once a probe is due, the next request is b's SCAN, which times out
    // (until then each listing fails at once, asking nothing).
    wait_until("b's SCAN as the probe", Duration::from_secs(10), || {
        let _ = std::fs::read_dir(m.p("secret/b")).map(|d| d.count());
        server.count(|r| r.method == "SCAN") > 0
    });
    assert_eq!(server.count(|r| r.method == "SCAN"), 1);
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
    let out = vaultfs_cmd_at(&server.addr, "hostile-test-token")
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
