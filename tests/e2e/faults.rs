//! Faults: a hung (SIGSTOPped) and a sealed OpenBao, each private to its
//! test; odd data OpenBao stores and hostile answers it cannot give (from a
//! loopback server); bad command lines; a leader election waited out.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::hostile::*;
use crate::harness::*;
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(2);
/// What an operation may take beyond the deadline: the fs layer's 1 s
/// backstop, plus scheduling on a loaded 2-core CI machine.
const SLACK: Duration = Duration::from_millis(1500);

fn fault_mount(bao: &Bao) -> Mount {
    Mount::with(
        bao,
        MountOpts::new(ROOT_TOKEN)
            .arg("--timeout")
            .arg("2s")
            .arg("--ttl")
            .arg("1s")
            .arg("--max-requests")
            .arg("4"),
    )
}

/// Resumes a stopped server even when the test fails half-way.
struct Resume<'a>(&'a Bao);
impl Drop for Resume<'_> {
    fn drop(&mut self) {
        self.0.signal(Signal::SIGCONT);
    }
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

#[test]
fn hung_server_eio_within_deadline_stale_served_then_recovers() {
    let bao = Bao::start(false);
    bao.put("secret", "hung/cached", json!({"v": "cached-value"}));
    for i in 0..12 {
        // In a folder never listed, so readdir's prefetch cannot warm them.
        bao.put("secret", &format!("unlisted/cold{i}"), json!({"v": "x"}));
    }
    let m = fault_mount(&bao);
    assert_eq!(read(m.p("secret/hung/cached/v")), "cached-value");
    assert_eq!(names(m.p("secret/hung")), ["cached"]);
    // Past the TTL (daemon and kernel) everything must be asked for again.
    std::thread::sleep(Duration::from_millis(1500));

    bao.signal(Signal::SIGSTOP);
    let _resume = Resume(&bao);

    // Twelve cold reads at once through 4 request slots: the queue counts
    // against the deadline, so none may wait for the others' timeouts.
    let readers: Vec<_> = (0..12)
        .map(|i| {
            let p = m.p(&format!("secret/unlisted/cold{i}/v"));
            std::thread::spawn(move || timed(|| errno_of(std::fs::read(p))))
        })
        .collect();
    for r in readers {
        let (errno, took) = r.join().unwrap();
        assert_eq!(errno, libc::EIO, "cold read: {}", m.log_text());
        assert!(took < DEADLINE + SLACK, "cold read took {took:?}");
    }

    // The cached value is served past its TTL, also within the bound.
    let (v, took) = timed(|| std::fs::read_to_string(m.p("secret/hung/cached/v")));
    assert_eq!(v.unwrap(), "cached-value");
    assert!(took < DEADLINE + SLACK, "stale read took {took:?}");
    let (ls, took) = timed(|| names(m.p("secret/hung")));
    assert_eq!(ls, ["cached"]);
    assert!(took < DEADLINE + SLACK, "stale ls took {took:?}");
    // The stale listing still answers for names it does not hold...
    let e = errno_of(std::fs::metadata(m.p("secret/never-seen")));
    assert_eq!(e, libc::ENOENT);
    // ...but in a folder never fetched nobody knows: EIO, quickly.
    let (e, took) = timed(|| errno_of(std::fs::metadata(m.p("secret/unlisted/cold0/nope"))));
    assert_eq!(e, libc::EIO);
    assert!(took < DEADLINE + SLACK, "lookup took {took:?}");
    let log = m.log_text();
    assert!(log.contains("Vault unavailable"), "{log}");
    assert!(log.contains("past its TTL"), "{log}");

    // Back: no remount needed, new values and new secrets show up.
    bao.signal(Signal::SIGCONT);
    bao.put("secret", "hung/cached", json!({"v": "after-recovery"}));
    wait_until("recovery", Duration::from_secs(15), || {
        std::fs::read_to_string(m.p("secret/hung/cached/v")).ok() == Some("after-recovery".into())
    });
    assert_eq!(read(m.p("secret/unlisted/cold3/v")), "x");
    assert!(m.log_text().contains("Vault is reachable again"));
}

#[test]
fn sealed_vault_stale_served_cold_eio_log_says_sealed() {
    let bao = Bao::start(false);
    bao.put("secret", "s/warm", json!({"v": "warm-value"}));
    bao.put("secret", "s/cold", json!({"v": "cold-value"}));
    let m = fault_mount(&bao);
    assert_eq!(read(m.p("secret/s/warm/v")), "warm-value");
    std::thread::sleep(Duration::from_millis(1500));
    bao.cli(&["operator", "seal"]);

    let (v, took) = timed(|| std::fs::read_to_string(m.p("secret/s/warm/v")));
    assert_eq!(v.unwrap(), "warm-value");
    assert!(took < DEADLINE + SLACK, "{took:?}");
    let (e, took) = timed(|| errno_of(std::fs::read(m.p("secret/s/cold/v"))));
    assert_eq!(e, libc::EIO);
    assert!(took < DEADLINE + SLACK, "{took:?}");
    let log = m.log_text();
    assert!(log.contains("Vault is sealed"), "{log}");

    // Unseal with the dev server's key: served fresh again.
    let key = std::fs::read_to_string(&bao.log)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Unseal Key: ").map(str::to_string))
        .expect("dev server prints its unseal key");
    bao.cli(&["operator", "unseal", key.trim()]);
    wait_until("unsealed read", Duration::from_secs(15), || {
        std::fs::read_to_string(m.p("secret/s/cold/v")).ok() == Some("cold-value".into())
    });
}

/// Odd but valid data that OpenBao stores: every name survives or is left
/// out by rule, nothing else breaks.
#[test]
fn odd_names_many_keys_and_big_values_from_openbao() {
    let bao = Bao::shared();
    let long = "x".repeat(300);
    bao.put(
        "secret",
        "odd",
        json!({"": "empty", ".": "dot", "..": "dotdot", "a/b": "slash", long.clone(): "long",
               "tab\tk": "tab", "nl\nk": "nl", "esc\u{1b}[31m": "esc", "%": "pct",
               ".json": "mine", "bell\u{7}": "bell", "ünï ☃": "uni"}),
    );
    // OpenBao refuses JSON with more strings than about a thousand; the
    // loopback test below serves thousands.
    let many: serde_json::Map<String, Value> = (0..400)
        .map(|i| (format!("k{i:04}"), Value::String(format!("v{i}"))))
        .collect();
    bao.put("secret", "many", Value::Object(many));
    let big = "B".repeat(4 << 20);
    bao.put("secret", "big", json!({ "blob": big }));

    let m = Mount::new(bao, ROOT_TOKEN);
    let odd = names(m.p("secret/odd"));
    let want = [
        "%25",
        "%2E",
        "%2E%2E",
        "%2Ejson",
        ".env",
        ".json",
        ".sh",
        "a%2Fb",
        "bell\u{7}",
        "esc\u{1b}[31m",
        "nl\nk",
        "tab\tk",
        "ünï ☃",
    ];
    assert_eq!(odd, want);
    for (file, value) in [
        ("%2E", "dot"),
        ("%2E%2E", "dotdot"),
        ("a%2Fb", "slash"),
        ("nl\nk", "nl"),
        ("esc\u{1b}[31m", "esc"),
        ("%2Ejson", "mine"),
        ("%25", "pct"),
    ] {
        assert_eq!(read(m.p("secret/odd").join(file)), value, "{file:?}");
    }
    // The empty and the too-long key are in .json, though they have no file.
    let env = read(m.p("secret/odd/.env"));
    assert!(env.starts_with("# vaultfs: left out"), "{env}");
    assert!(m.log_text().contains("key name too long or empty"));

    let many = names(m.p("secret/many"));
    assert_eq!(many.len(), 403);
    assert_eq!(read(m.p("secret/many/k0399")), "v399");
    let j: Value = serde_json::from_str(&read(m.p("secret/many/.json"))).unwrap();
    assert_eq!(j.as_object().unwrap().len(), 400);
    let blob = std::fs::read(m.p("secret/big/blob")).unwrap();
    assert_eq!(blob.len(), 4 << 20);
    assert!(blob.iter().all(|&b| b == b'B'));
}

// ---------------------------------------------------------------------------
// Hostile answers from a loopback HTTP peer.

fn hostile(r: &Request) -> Option<Reply> {
    let long = "y".repeat(300);
    match r.target.as_str() {
        "/v1/secret/metadata/?list=true" => ok(json!({"data": {"keys": [
            "ok", "malformed", "wrongtype", "nodata", "huge", "slowloris", "e500", "manykeys", "flaky",
            "folder/", "hugelist/", "badlist/", 42, null, {"k": 1}, "", "..", "a/b", long]}})),
        "/v1/secret/data/ok" => kv2(json!({"k": "fine"})),
        // 503, 429, 502, then the answer: retried within the deadline.
        "/v1/secret/data/flaky" => {
            static HITS: AtomicUsize = AtomicUsize::new(0);
            match HITS.fetch_add(1, Ordering::SeqCst) {
                0 => status(503, r#"{"errors":["standby"]}"#),
                1 => status(429, r#"{"errors":[]}"#),
                2 => status(502, "<html>bad gateway</html>"),
                _ => kv2(json!({"k": "eventually"})),
            }
        }
        "/v1/secret/data/manykeys" => kv2(Value::Object(
            (0..5000).map(|i| (format!("k{i}"), json!(i))).collect(),
        )),
        "/v1/secret/data/malformed" => status(200, r#"{"data": {"data": {"k": "v"#),
        "/v1/secret/data/wrongtype" => ok(json!({"data": {"data": ["k", "v"], "metadata": 7}})),
        "/v1/secret/data/nodata" => ok(json!({"warnings": null})),
        // Over the 1 MiB cap the test mounts with.
        "/v1/secret/data/huge" => kv2(json!({"k": "h".repeat(3 << 20)})),
        "/v1/secret/data/e500" => status(500, r#"{"errors":["internal\nFORGED LOG LINE"]}"#),
        "/v1/secret/metadata/folder/?list=true" => ok(json!({"data": {"keys": [
            "ok", ".", "..", "", "a/b", "x/", "%", "y".repeat(300), 7, null]}})),
        "/v1/secret/metadata/hugelist/?list=true" => ok(json!({"data": {"keys":
            (0..20000).map(|i| format!("s{i:05}")).collect::<Vec<_>>()}})),
        "/v1/secret/metadata/badlist/?list=true" => ok(json!({"data": {"keys": "nope"}})),
        "/v1/secret/data/folder/ok" => kv2(json!({"k": "nested"})),
        "/v1/secret/data/slowloris" => Some(Reply::Slowloris),
        _ => basics(r),
    }
}

#[test]
fn hostile_answers_fail_cleanly_and_do_not_corrupt_the_tree() {
    let m = Server::start(hostile).mount(&["--max-response-mib", "1", "--timeout", "3s"]);
    let root = names(m.p("secret"));
    assert_eq!(
        root,
        [
            "badlist",
            "e500",
            "flaky",
            "folder",
            "huge",
            "hugelist",
            "malformed",
            "manykeys",
            "nodata",
            "ok",
            "slowloris",
            "wrongtype"
        ]
    );
    assert_eq!(read(m.p("secret/ok/k")), "fine");
    let (v, took) = timed(|| read(m.p("secret/flaky/k")));
    assert_eq!(v, "eventually");
    assert!(took < Duration::from_secs(3), "{took:?}");
    for bad in ["malformed", "wrongtype", "nodata", "huge", "e500"] {
        let e = errno_of(std::fs::read(m.p(&format!("secret/{bad}/k"))));
        assert_eq!(e, libc::EIO, "{bad}");
    }
    // `.` and `..` can be no folder or secret (docs/security.md).
    assert_eq!(names(m.p("secret/folder")), ["%25", "ok", "x"]);
    assert_eq!(read(m.p("secret/folder/ok/k")), "nested");
    assert_eq!(names(m.p("secret/hugelist")).len(), 20000);
    assert_eq!(names(m.p("secret/manykeys")).len(), 5003);
    assert_eq!(read(m.p("secret/manykeys/k4999")), "4999");
    assert_eq!(list_errno(m.p("secret/badlist")), libc::EIO);

    // Last: a hung peer trips fail-fast for everything else.
    let (e, took) = timed(|| errno_of(std::fs::read(m.p("secret/slowloris/k"))));
    assert_eq!(e, libc::EIO, "slowloris");
    assert!(
        took < Duration::from_secs(3) + SLACK,
        "slowloris took {took:?}"
    );
    // Still whole: the good secret reads, the daemon lives.
    assert_eq!(read(m.p("secret/ok/k")), "fine");
    let log = m.log_text();
    assert!(log.contains("invalid JSON"), "{log}");
    assert!(log.contains("larger than 1048576 bytes"), "{log}");
    assert!(log.contains("without data"), "{log}");
    assert!(log.contains("internal FORGED LOG LINE"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED")),
        "a Vault error forged a log line: {log}"
    );
}

// ---------------------------------------------------------------------------
// Bad command lines and environments: one line on stderr, non-zero exit.

fn fails_with_one_line(mut cmd: Command, want: &str) {
    let o = cmd
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{want}: exited 0");
    assert_eq!(err.lines().count(), 1, "{want}: {err}");
    assert!(
        err.starts_with("vaultfs: ") && err.contains(want),
        "{want}: {err}"
    );
}

fn vaultfs_env(addr: &str) -> Command {
    let mut c = vaultfs_cmd_at(addr, "t");
    c.env("HOME", "/nonexistent");
    c
}

#[test]
fn bad_command_lines_give_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mp = dir.path().join("mnt");
    let mount = |addr: &str| {
        let mut c = vaultfs_env(addr);
        c.args(["mount", "--foreground"]).arg(&mp);
        c
    };
    fails_with_one_line(mount("not a url"), "invalid Vault address");
    fails_with_one_line(mount("ftp://127.0.0.1:1"), "invalid Vault address");

    let mut c = mount("https://127.0.0.1:1");
    c.env("VAULT_CACERT", dir.path().join("missing-ca.pem"));
    fails_with_one_line(c, "cannot read CA certificate");

    let mut c = mount("https://127.0.0.1:1");
    c.arg("--token-file").arg(dir.path().join("no-token"));
    fails_with_one_line(c, "cannot read token file");
    let mut c = mount("https://127.0.0.1:1");
    c.arg("--token-file").arg(dir.path());
    fails_with_one_line(c, "cannot read token file");

    // Reaches a (hostile-but-sane) Vault, then refuses the mountpoint.
    let addr = Server::start(hostile).addr;
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let mut c = vaultfs_env(&addr);
    c.args(["mount", "--foreground"]).arg(&file);
    fails_with_one_line(c, "not a directory");

    // Nothing listening: a clear error, after retrying within the deadline.
    let port = free_port();
    let mut c = mount(&format!("http://127.0.0.1:{port}"));
    c.args(["--timeout", "1s"]);
    let (_, took) = timed(|| fails_with_one_line(c, "cannot reach Vault"));
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// The Vault CLI's VAULT_CLIENT_TIMEOUT and VAULT_MAX_RETRIES are the
/// defaults of `--timeout` and `--max-retries`.
#[test]
fn vault_cli_timeout_and_retries_are_honoured() {
    let server = Server::start(|r| match r.target.as_str() {
        "/v1/secret/metadata/?list=true" => ok(json!({"data": {"keys": ["busy", "hung"]}})),
        "/v1/secret/data/busy" => status(503, r#"{"errors":["standby"]}"#),
        "/v1/secret/data/hung" => Some(Reply::After(
            Duration::from_secs(30),
            Box::new(Reply::Status(200, b"{}".to_vec())),
        )),
        _ => basics(r),
    });
    let env = [("VAULT_CLIENT_TIMEOUT", "1"), ("VAULT_MAX_RETRIES", "2")];
    let m = server.mount_env(&env, &["--no-scan"]);
    // First, while Vault is not yet taken for down (that fails fast).
    let (e, took) = timed(|| errno_of(std::fs::read(m.p("secret/hung/k"))));
    assert_eq!(e, libc::EIO);
    let second = Duration::from_secs(1);
    assert!(took >= second * 9 / 10 && took < second + SLACK, "{took:?}");
    drop(m);
    let m = server.mount_env(&env, &["--no-scan"]);
    let busy = |s: &Server| s.count(|r| r.target == "/v1/secret/data/busy");
    let e = errno_of(std::fs::read(m.p("secret/busy/k")));
    assert_eq!(e, libc::EIO);
    // The first try and two retries.
    assert_eq!(busy(&server), 3);
    drop(m);

    // A flag wins over the environment.
    server.clear();
    let m = server.mount_env(&env, &["--no-scan", "--max-retries", "0"]);
    let _ = std::fs::read(m.p("secret/busy/k"));
    assert_eq!(busy(&server), 1);
}

/// A standby between leaders answers 500 "active cluster node not found":
/// retried within the deadline like a 503, not an error for the reader.
#[test]
fn a_leader_election_is_waited_out() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static TRIES: AtomicUsize = AtomicUsize::new(0);
    let server = Server::start(|r| match r.target.as_str() {
        "/v1/secret/metadata/?list=true" => ok(json!({"data": {"keys": ["db"]}})),
        "/v1/secret/data/db" if TRIES.fetch_add(1, Ordering::SeqCst) < 2 => status(
            500,
            r#"{"errors":["local node not active but active cluster node not found"]}"#,
        ),
        "/v1/secret/data/db" => kv2(json!({"password": "after-election"})),
        _ => basics(r),
    });
    let m = server.mount(&["--no-scan", "--timeout", "5s"]);
    assert_eq!(read(m.p("secret/db/password")), "after-election");
    assert_eq!(TRIES.load(Ordering::SeqCst), 3);
}
