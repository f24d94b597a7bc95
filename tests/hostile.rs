//! Hostile input: crafted names that try to leave their KV mount, and
//! hostile Vault answers (slow SCANs, revalidation storms). Real OpenBao
//! where it can produce the case, a loopback server where it cannot.

mod common;

use std::time::{Duration, Instant};

use common::hostile::*;
use common::*;
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
    // One at start-up, one when the renewal task starts.
    wait_until("the renewal task's lookup", Duration::from_secs(5), || {
        lookups() == 2
    });
    let at_start = lookups();
    assert_eq!(names(m.path()), ["secret"]);
    assert_eq!(names(m.p("secret")), ["a", "ok"]);
    assert_eq!(names(m.p("secret/a")), ["b"]);
    assert_eq!(read(m.p("secret/a/b/k")), "deep");
    // A key may be named `..`: it is a file, never part of a path.
    assert_eq!(names(m.p("secret/ok")), ["%2E%2E", ".env", ".json", "k"]);
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
    assert!(requests.len() > 5, "{requests:?}");
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
