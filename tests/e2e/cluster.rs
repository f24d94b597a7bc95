//! vaultfs against a real three-node OpenBao HA cluster (`harness::cluster`):
//! a standby, a step-down, the active node killed, a node restarted sealed,
//! and a bounded soak with a failover. The windows measured are printed
//! (`-- --nocapture`); docs/reliability.md quotes them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::harness::cluster::*;
use crate::harness::rotation::Rotation;
use crate::harness::*;
use serde_json::json;

/// Cluster tests run one at a time: each starts three servers on a 2-core
/// machine, and the windows they measure would mostly measure each other.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// `--timeout` of the mounts under failover.
const TIMEOUT: Duration = Duration::from_secs(2);
/// What one `read` of `secret/t/fX/sY/v` may take at worst: a lookup per
/// path component and the read can each hit the deadline plus the fs
/// backstop, but the breaker makes all but the first fail at once; plus
/// scheduling on a loaded 2-core machine. Far below a hang.
const READ_BOUND: Duration = Duration::from_secs(8);

const FOLDERS: usize = 4;
const PER_FOLDER: usize = 8;

fn tree_value(f: usize, s: usize) -> String {
    format!("t/f{f}/s{s}=value-{f}-{s}")
}

/// A tree of FOLDERS × PER_FOLDER secrets, and `cold` secrets in a folder
/// no test reads before the event; waits until every node serves them.
fn seed(c: &Cluster, cold: usize) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for f in 0..FOLDERS {
        for s in 0..PER_FOLDER {
            c.put(&format!("t/f{f}/s{s}"), json!({ "v": tree_value(f, s) }));
            files.push((format!("secret/t/f{f}/s{s}/v"), tree_value(f, s)));
        }
    }
    for i in 0..cold {
        c.put(&format!("cold/c{i}"), json!({ "v": format!("cold-{i}") }));
    }
    c.wait_replicated(&format!("t/f{}/s{}", FOLDERS - 1, PER_FOLDER - 1));
    if cold > 0 {
        c.wait_replicated(&format!("cold/c{}", cold - 1));
    }
    files
}

/// Read every file of the tree once through `m` (so it is cached).
fn warm(m: &Mount, files: &[(String, String)]) {
    for (p, want) in files {
        assert_eq!(&read(m.p(p)), want, "{p}");
    }
}

/// What a group of readers saw. Times are since the test's `t0`.
#[derive(Default, Debug)]
struct Seen {
    reads: u64,
    /// (when, file, errno)
    errors: Vec<(Duration, String, i32)>,
    wrong: Vec<String>,
    /// The slowest read: (how long, when it started).
    slowest: (Duration, Duration),
}

impl Seen {
    fn merge(&mut self, o: Seen) {
        self.reads += o.reads;
        self.errors.extend(o.errors);
        self.wrong.extend(o.wrong);
        if o.slowest.0 > self.slowest.0 {
            self.slowest = o.slowest;
        }
    }
    fn error_window(&self) -> Option<(Duration, Duration)> {
        let first = self.errors.iter().map(|e| e.0).min()?;
        let last = self.errors.iter().map(|e| e.0).max()?;
        Some((first, last))
    }
}

/// `n` threads reading `files` through mount directory `root` in a loop
/// (a file every 2 ms each) until `stop`; each read is checked against its
/// expected value.
struct Readers {
    stop: Arc<AtomicBool>,
    rx: mpsc::Receiver<Seen>,
    n: usize,
}

impl Readers {
    fn start(n: usize, root: PathBuf, files: &[(String, String)], t0: Instant) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let files = Arc::new(files.to_vec());
        let (tx, rx) = mpsc::channel();
        for r in 0..n {
            let (stop, files, root, tx) = (stop.clone(), files.clone(), root.clone(), tx.clone());
            std::thread::spawn(move || {
                let mut seen = Seen::default();
                let mut k = r * 5;
                while !stop.load(Ordering::SeqCst) {
                    let (p, want) = &files[k % files.len()];
                    k += 1;
                    let start = Instant::now();
                    let got = std::fs::read_to_string(root.join(p));
                    let took = start.elapsed();
                    if took > seen.slowest.0 {
                        seen.slowest = (took, start - t0);
                    }
                    seen.reads += 1;
                    // A pause, so the readers leave the servers some of
                    // the two CPUs: the elections measured are OpenBao's.
                    std::thread::sleep(Duration::from_millis(2));
                    match got {
                        Ok(v) if &v == want => {}
                        Ok(v) => seen.wrong.push(format!("{p}: {v:?}, want {want:?}")),
                        Err(e) => {
                            seen.errors.push((
                                start - t0,
                                p.clone(),
                                e.raw_os_error().unwrap_or(-1),
                            ));
                            // Do not spin on a fast error.
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                }
                let _ = tx.send(seen);
            });
        }
        Readers { stop, rx, n }
    }

    /// Stop and collect; a reader stuck in a read for 30 s is a hang.
    fn finish(self) -> Seen {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Seen::default();
        for _ in 0..self.n {
            all.merge(
                self.rx
                    .recv_timeout(Duration::from_secs(30))
                    .expect("a reader hung in a read for 30 s"),
            );
        }
        all
    }
}

fn errnos(s: &Seen) -> Vec<i32> {
    let mut e: Vec<i32> = s.errors.iter().map(|e| e.2).collect();
    e.sort();
    e.dedup();
    e
}

fn report(what: &str, s: &Seen, event: Duration) {
    let win = s
        .error_window()
        .map(|(a, b)| {
            format!(
                "errors from {:+.2}s to {:+.2}s after the event",
                a.as_secs_f64() - event.as_secs_f64(),
                b.as_secs_f64() - event.as_secs_f64()
            )
        })
        .unwrap_or_else(|| "no errors".into());
    eprintln!(
        "{what}: {} reads, {} errors (errnos {:?}), {} wrong values; {win}; slowest read {:.2?} \
         (started {:+.2}s after the event)",
        s.reads,
        s.errors.len(),
        errnos(s),
        s.wrong.len(),
        s.slowest.0,
        s.slowest.1.as_secs_f64() - event.as_secs_f64()
    );
}

/// Poll `path` through the mount until it reads `want`; returns how long.
fn until_readable(m: &Mount, path: &str, want: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    wait_until(&format!("{path} through the mount"), limit, || {
        std::fs::read_to_string(m.p(path)).ok().as_deref() == Some(want)
    });
    t.elapsed()
}

/// From `t` to `later` (the election's end from `sys/leader`).
fn since(t: std::time::SystemTime, later: Option<std::time::SystemTime>) -> Duration {
    later
        .and_then(|l| l.duration_since(t).ok())
        .unwrap_or_default()
}

/// `--stale-if-error` of the mounts: the default (1h), or
/// VAULTFS_TEST_STALE (`0s` shows what the tests catch without it).
fn stale() -> String {
    std::env::var("VAULTFS_TEST_STALE").unwrap_or_else(|_| "1h".into())
}

/// A root mount of `node` with a 1 s TTL, the TIMEOUT deadline and [`stale`].
fn failover_mount(c: &Cluster, node: usize) -> Mount {
    let timeout = format!("{}s", TIMEOUT.as_secs());
    let args = [
        "--ttl",
        "1s",
        "--timeout",
        &timeout,
        "--stale-if-error",
        &stale(),
    ];
    c.mount(node, &c.root_token, &args)
}

// ---------------------------------------------------------------------------

/// Audit entries (operation, path) of one node's log from byte `from` on.
fn audited(c: &Cluster, node: usize, from: u64) -> Vec<(String, String)> {
    let all = std::fs::read(c.audit_path(node)).unwrap_or_default();
    audit_requests(all.get(from as usize..).unwrap_or_default())
}

fn audit_sizes(c: &Cluster) -> Vec<u64> {
    (0..c.len())
        .map(|i| {
            std::fs::metadata(c.audit_path(i))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .collect()
}

/// Wait until no node has logged a request for a while; returns the sizes.
fn settle(c: &Cluster) -> Vec<u64> {
    settled(|| audit_sizes(c))
}

/// Pointed at a standby, vaultfs works, and a cold walk costs exactly what
/// it costs against the active node (one SCAN, one GET per secret, the
/// mount table once, the token check): OpenBao's standbys answer reads
/// themselves ("read-enabled standby"), so the requests show up in the
/// standby's audit log and none reach the active node.
#[test]
fn standby_serves_reads_with_single_node_request_counts() {
    let _serial = serial();
    let c = Cluster::start_audited();
    let files = seed(&c, 0);
    let active = c.active().unwrap();
    let standby = c.standby();
    let mut per_target = Vec::new();
    for (name, node) in [("active", active), ("standby", standby)] {
        let before = settle(&c);
        let m = c.mount(node, &c.root_token, &[]);
        let found = names(m.p("secret/t"));
        assert_eq!(found.len(), FOLDERS, "{name}: {found:?}");
        warm(&m, &files);
        settle(&c);
        let per_node: Vec<Vec<(String, String)>> =
            (0..c.len()).map(|i| audited(&c, i, before[i])).collect();
        let all: Vec<(String, String)> = per_node.iter().flatten().cloned().collect();
        let count = |op: &str, prefix: &str| {
            all.iter()
                .filter(|(o, p)| o == op && p.starts_with(prefix))
                .count()
        };
        let counts = (
            count("scan", "secret/"),
            count("list", "secret/"),
            count("read", "secret/data/"),
            count("read", "sys/internal/ui/mounts"),
            all.len(),
        );
        eprintln!(
            "via the {name} node {node}: (scans, lists, secret reads, mount-table reads, all) = \
             {counts:?}; requests logged per node: {:?}",
            per_node.iter().map(|v| v.len()).collect::<Vec<_>>()
        );
        // One SCAN, one GET per secret, the mount table once (the LISTs
        // are the walk's own readdirs; compared between targets below).
        assert_eq!(
            (counts.0, counts.2, counts.3),
            (1, files.len(), 1),
            "{name}: {all:?}"
        );
        // All of it answered by the node vaultfs talks to.
        assert_eq!(per_node[node].len(), all.len(), "{name}: {per_node:?}");
        per_target.push(counts);
        drop(m);
    }
    assert_eq!(
        per_target[0], per_target[1],
        "standby costs what the active costs"
    );
}

/// `bao operator step-down` on the active node while 16 readers loop over
/// the tree through a mount of that very node (which becomes a standby):
/// no error, no wrong value; the longest read is the stall. A secret
/// written after the step-down is readable without a remount.
#[test]
fn step_down_under_16_readers_no_errors_no_wrong_values() {
    let _serial = serial();
    let c = Cluster::start();
    let files = seed(&c, 0);
    let old = c.active().unwrap();
    let m = failover_mount(&c, old);
    warm(&m, &files);
    let t0 = Instant::now();
    let readers = Readers::start(16, m.path().to_path_buf(), &files, t0);
    std::thread::sleep(Duration::from_secs(2));
    let event = t0.elapsed();
    let stepped_at = std::time::SystemTime::now();
    let stepped = Instant::now();
    c.step_down();
    // Under load a step-down has taken 20 s (docs/reliability.md).
    let new = c.wait_new_active(Some(old), Duration::from_secs(90));
    let elected = since(stepped_at, c.active_since(new));
    c.put("after/step-down", json!({"v": "new"}));
    until_readable(
        &m,
        "secret/after/step-down/v",
        "new",
        Duration::from_secs(30),
    );
    let readable = stepped.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let seen = readers.finish();
    eprintln!(
        "step-down: node {old} -> {new}: new active after {elected:.2?}; a secret written then \
         readable through the mount {:.2?} after the step-down",
        readable
    );
    report("step-down, 16 readers", &seen, event);
    assert!(seen.reads > 500, "only {} reads", seen.reads);
    assert!(seen.wrong.is_empty(), "wrong values: {:?}", seen.wrong);
    assert!(
        seen.errors.is_empty(),
        "errors: {:?}\n{}",
        &seen.errors[..seen.errors.len().min(10)],
        m.log_text()
    );
    assert!(seen.slowest.0 < READ_BOUND, "stall {:?}", seen.slowest);
}

/// SIGKILL of the active node while readers loop over two mounts: one of
/// the killed node itself, one of a standby.
///
/// - The killed node's mount serves every cached answer (stale-if-error) and
///   fails uncached reads with EIO within the deadline, never hanging.
/// - The standby's mount keeps answering everything: OpenBao standbys serve
///   reads themselves, also while there is no leader.
/// - Once a new leader is elected, a secret written to it is readable
///   through the standby's mount without a remount.
#[test]
fn active_killed_stale_served_cold_eio_new_secrets_after_election() {
    let _serial = serial();
    let c = Cluster::start();
    let files = seed(&c, 8);
    let old = c.active().unwrap();
    let standby = c.standby();
    let on_dead = failover_mount(&c, old);
    let on_standby = failover_mount(&c, standby);
    warm(&on_dead, &files);
    warm(&on_standby, &files);
    let t0 = Instant::now();
    let dead_readers = Readers::start(8, on_dead.path().to_path_buf(), &files, t0);
    let standby_readers = Readers::start(8, on_standby.path().to_path_buf(), &files, t0);
    std::thread::sleep(Duration::from_secs(2));

    let event = t0.elapsed();
    let killed = Instant::now();
    let killed_at = std::time::SystemTime::now();
    c.kill(old);
    // Past the TTL (1 s, daemon and kernel): every read asks again.
    std::thread::sleep(Duration::from_millis(1500));
    // Never-read secrets through the dead node's mount: EIO, in time.
    let mut cold_took = Duration::ZERO;
    for i in 0..4 {
        let t = Instant::now();
        let e = errno_of(std::fs::read(on_dead.p(&format!("secret/cold/c{i}/v"))));
        let took = t.elapsed();
        cold_took = cold_took.max(took);
        assert_eq!(e, libc::EIO, "cold read on the dead node's mount");
        assert!(took < READ_BOUND, "cold read took {took:?}");
    }
    // ...and through the standby's: answered.
    for i in 4..8 {
        assert_eq!(
            read(on_standby.p(&format!("secret/cold/c{i}/v"))),
            format!("cold-{i}")
        );
    }
    let new = c.wait_new_active(Some(old), Duration::from_secs(90));
    let elected = since(killed_at, c.active_since(new));
    c.put("after/kill", json!({"v": "new"}));
    until_readable(
        &on_standby,
        "secret/after/kill/v",
        "new",
        Duration::from_secs(60),
    );
    let readable = killed.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let dead_seen = dead_readers.finish();
    let standby_seen = standby_readers.finish();

    eprintln!(
        "kill: node {old} killed; node {new} active after {elected:.2?}; a secret written then \
         readable through the standby's mount {readable:.2?} after the kill; cold reads on the \
         dead node's mount: EIO in at most {cold_took:.2?} (--timeout {TIMEOUT:?})"
    );
    report(
        "kill, 8 readers on the killed node's mount",
        &dead_seen,
        event,
    );
    report("kill, 8 readers on a standby's mount", &standby_seen, event);
    for (what, seen, m) in [
        ("killed node's mount", &dead_seen, &on_dead),
        ("standby's mount", &standby_seen, &on_standby),
    ] {
        assert!(seen.reads > 200, "{what}: only {} reads", seen.reads);
        assert!(
            seen.wrong.is_empty(),
            "{what}: wrong values: {:?}",
            seen.wrong
        );
        assert!(
            seen.errors.is_empty(),
            "{what}: cached files failed: {:?}\n{}",
            &seen.errors[..seen.errors.len().min(10)],
            m.log_text()
        );
        assert!(
            seen.slowest.0 < READ_BOUND,
            "{what}: stall {:?}",
            seen.slowest
        );
    }
    let log = on_dead.log_text();
    assert!(log.contains("Vault unavailable"), "{log}");
    assert!(log.contains("past its TTL"), "{log}");
}

/// The node vaultfs talks to (the active one) is killed, restarted (it
/// comes back sealed), then unsealed, while readers loop: cached answers
/// are served throughout, uncached reads fail with EIO within the deadline
/// while it is down and while it is sealed, and once it is unsealed (now a
/// standby) the mount recovers by itself: a secret written during the
/// outage becomes readable without a remount.
#[test]
fn node_restarted_sealed_then_unsealed_mount_recovers_by_itself() {
    let _serial = serial();
    let c = Cluster::start();
    let files = seed(&c, 8);
    let node = c.active().unwrap();
    let m = failover_mount(&c, node);
    warm(&m, &files);
    let t0 = Instant::now();
    let readers = Readers::start(8, m.path().to_path_buf(), &files, t0);
    std::thread::sleep(Duration::from_secs(2));
    let event = t0.elapsed();
    let killed = Instant::now();
    let killed_at = std::time::SystemTime::now();
    c.kill(node);
    let new = c.wait_new_active(Some(node), Duration::from_secs(60));
    let elected = since(killed_at, c.active_since(new));
    c.put("after/restart", json!({"v": "new"}));
    let cold_eio = |i: usize, when: &str| {
        let t = Instant::now();
        let e = errno_of(std::fs::read(m.p(&format!("secret/cold/c{i}/v"))));
        assert_eq!(e, libc::EIO, "cold read while {when}");
        assert!(
            t.elapsed() < READ_BOUND,
            "cold read while {when} took {:?}",
            t.elapsed()
        );
        t.elapsed()
    };
    let down_took = cold_eio(0, "down");

    c.restart(node);
    assert_eq!(c.health(node), Health::Sealed);
    std::thread::sleep(Duration::from_millis(1500));
    let sealed_took = cold_eio(1, "sealed");
    std::thread::sleep(Duration::from_secs(2));

    let unsealed = Instant::now();
    c.unseal(node);
    // OpenBao's part: the node serves the secret written while it was away.
    let (addr, tok) = (c.addr(node), c.root_token.clone());
    wait_until(
        "the unsealed node serves reads",
        Duration::from_secs(60),
        || {
            http(&addr, "GET", "secret/data/after/restart", &tok, None)
                .is_some_and(|(s, _)| s == 200)
        },
    );
    let serving = unsealed.elapsed();
    until_readable(&m, "secret/after/restart/v", "new", Duration::from_secs(60));
    let recovered = unsealed.elapsed();
    assert_eq!(read(m.p("secret/cold/c2/v")), "cold-2");
    std::thread::sleep(Duration::from_secs(1));
    let seen = readers.finish();
    eprintln!(
        "restart sealed: node {node} killed; node {new} active after {elected:.2?}; cold reads \
         EIO in {down_took:.2?} (down) and {sealed_took:.2?} (sealed); after unseal the node \
         served reads in {serving:.2?} and the mount read a secret written during the outage \
         in {recovered:.2?} (outage as seen by this mount: {:.2?})",
        killed.elapsed() - (unsealed.elapsed() - recovered)
    );
    report("restart sealed, 8 readers", &seen, event);
    assert!(seen.wrong.is_empty(), "wrong values: {:?}", seen.wrong);
    assert!(
        seen.errors.is_empty(),
        "cached files failed: {:?}\n{}",
        &seen.errors[..seen.errors.len().min(10)],
        m.log_text()
    );
    assert!(seen.slowest.0 < READ_BOUND, "stall {:?}", seen.slowest);
    let log = m.log_text();
    assert!(log.contains("Vault is sealed"), "{log}");
    assert!(log.contains("Vault is reachable again"), "{log}");
}

// ---------------------------------------------------------------------------

/// (resident KiB, open fds) of process `pid`. The daemon is not dumpable,
/// so its fd directory needs root (the tests run as root).
fn sample(pid: u32) -> (u64, usize) {
    let rss = status_kib(pid, "VmRSS");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/fd: {e} (run the tests as root)"))
        .count();
    (rss, fds)
}

/// A bounded soak: VAULTFS_SOAK_SECS (default 40, at least 30) of 8
/// readers over 40 secrets that keep rotating, through a mount of a standby
/// with a 500 ms TTL and a token that lives 20 s unless renewed, and in the middle the
/// active node killed, a new one elected, the killed one restarted and
/// unsealed. Zero errors and zero wrong values; the daemon's resident
/// memory and open fds flat after warm-up; the token renewed throughout.
#[test]
fn soak_rotation_renewal_and_a_failover() {
    let _serial = serial();
    let secs: u64 = std::env::var("VAULTFS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
        .max(30);
    let c = Cluster::start();
    let put = |i: usize, v: &str| c.put(&format!("soak/s{i}"), json!({ "v": v }));
    let rot = Rotation::new(40, 4);
    rot.seed(put);
    c.wait_replicated(&format!("soak/s{}", rot.len() - 1));
    // Renewed at two thirds of its TTL, so the last third (~7 s) must cover
    // a failover that falls on a renewal; the kill at half-time is ~6 s
    // after the second renewal, so its retries ride through the election.
    let token = c.token("20s");
    let standby = c.standby();
    let m = c.mount(
        standby,
        &token,
        &[
            "--ttl",
            "500ms",
            "--timeout",
            "2s",
            "--stale-if-error",
            &stale(),
        ],
    );
    let pid = m.pid();
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let run = Duration::from_secs(secs);
    let warm_up = run / 4;
    let root = m.p("secret/soak");

    let (samples, failover, writes, seen) = std::thread::scope(|s| {
        let writer = s.spawn(|| rot.rotate(&stop, 7, Duration::from_millis(20), put));
        let readers: Vec<_> = (0..8)
            .map(|r| {
                let (root, rot, stop) = (&root, &rot, &stop);
                s.spawn(move || {
                    let mut seen = Seen::default();
                    let mut k = r * 3;
                    while !stop.load(Ordering::SeqCst) {
                        let i = rot.pick(k, 5);
                        k += 1;
                        let start = Instant::now();
                        let got = std::fs::read(root.join(format!("s{i}/v")));
                        let took = start.elapsed();
                        if took > seen.slowest.0 {
                            seen.slowest = (took, start - t0);
                        }
                        seen.reads += 1;
                        match got {
                            Ok(v) => {
                                if let Err(e) = rot.check(i, &v) {
                                    seen.wrong.push(e);
                                }
                            }
                            Err(e) => seen.errors.push((
                                start - t0,
                                format!("s{i}"),
                                e.raw_os_error().unwrap_or(-1),
                            )),
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    seen
                })
            })
            .collect();

        let mut samples = Vec::new();
        let mut failover = None;
        while t0.elapsed() < run {
            samples.push((t0.elapsed(), sample(pid)));
            if failover.is_none() && t0.elapsed() >= run / 2 {
                let old = c.active().unwrap();
                let at = t0.elapsed();
                let killed_at = std::time::SystemTime::now();
                c.kill(old);
                let new = c.wait_new_active(Some(old), Duration::from_secs(60));
                let elected = since(killed_at, c.active_since(new));
                c.restart(old);
                c.unseal(old);
                failover = Some((old, new, at, elected));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        stop.store(true, Ordering::SeqCst);
        let writes = writer.join().unwrap();
        let mut seen = Seen::default();
        for r in readers {
            seen.merge(r.join().unwrap());
        }
        (samples, failover, writes, seen)
    });

    let (old, new, at, elected) = failover.expect("no failover happened");
    eprintln!(
        "soak: {secs} s, {writes} writes; node {old} killed at {:.1}s, node {new} active after \
         {elected:.2?}, node {old} restarted and unsealed",
        at.as_secs_f64()
    );
    report("soak, 8 readers on a standby's mount", &seen, at);
    let after: Vec<_> = samples.iter().filter(|s| s.0 >= warm_up).collect();
    let (base_rss, base_fds) = after.first().expect("samples").1;
    let max_rss = after.iter().map(|s| s.1 .0).max().unwrap();
    let max_fds = after.iter().map(|s| s.1 .1).max().unwrap();
    let (last_rss, last_fds) = after.last().unwrap().1;
    eprintln!(
        "soak: daemon after warm-up ({warm_up:?}): RSS {base_rss} KiB -> max {max_rss}, last \
         {last_rss}; fds {base_fds} -> max {max_fds}, last {last_fds}; samples (s, KiB, fds): {:?}",
        samples
            .iter()
            .map(|(t, (r, f))| (t.as_secs(), *r, *f))
            .collect::<Vec<_>>()
    );
    let log = m.log_text();
    let renewals = log.matches("token renewed").count();
    let retried: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("token renewal failed"))
        .collect();
    eprintln!("soak: the token was renewed {renewals} times; failed renewals retried: {retried:?}");
    assert!(
        !log.contains("Vault refused to renew"),
        "a failover must not stop renewal:\n{log}"
    );

    assert!(seen.wrong.is_empty(), "wrong values: {:?}", seen.wrong);
    assert!(
        seen.errors.is_empty(),
        "{} errors, first: {:?}\n{}",
        seen.errors.len(),
        &seen.errors[..seen.errors.len().min(10)],
        m.log_text()
    );
    assert!(seen.reads > 1000, "only {} reads", seen.reads);
    assert!(writes > 100, "only {writes} writes");
    // Flat: a leak of a few hundred KiB a second would cross these.
    assert!(
        max_rss <= base_rss + 16 * 1024,
        "RSS grew from {base_rss} to {max_rss} KiB after warm-up"
    );
    assert!(
        max_fds <= base_fds + 8,
        "open fds grew from {base_fds} to {max_fds} after warm-up"
    );
    // The 20 s token outlived itself only by being renewed (every ~13 s).
    assert!(
        renewals as u64 >= secs / 14,
        "renewed {renewals} times in {secs} s\n{}",
        m.log_text()
    );
    assert_eq!(
        read(root.join("s5/v")).split(':').next(),
        Some("s5"),
        "a read at the end (the token is still valid)"
    );
}

/// A failover during renewal, made deterministic with the loopback fake
/// Vault of tests/e2e/harness/hostile.rs: a standby that cannot forward
/// `renew-self` to a new active node yet answers 307 (to the active node's address). vaultfs
/// follows no redirect; it must retry, not take the 307 for a refusal and
/// stop renewing (the token would then expire).
#[test]
fn renewal_rides_out_a_standbys_307() {
    use crate::harness::hostile::*;
    use std::sync::atomic::AtomicUsize;
    let renewals = Arc::new(AtomicUsize::new(0));
    let seen = renewals.clone();
    let server = Server::start(move |r| match r.target.as_str() {
        "/v1/auth/token/lookup-self" => ok(json!({"data": {
            "ttl": 3, "creation_ttl": 3, "renewable": true,
            "expire_time": "2999-01-01T00:00:00Z"}})),
        // The first two renewals land in the election.
        "/v1/auth/token/renew-self" => {
            if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                status(307, "")
            } else {
                ok(json!({"auth": {"lease_duration": 3}}))
            }
        }
        _ => basics(r),
    });
    let m = server.mount(&[]);
    poll(Duration::from_secs(20), || {
        m.log_text().contains("token renewed")
    });
    let log = m.log_text();
    assert!(
        log.contains("token renewed"),
        "no renewal after the 307s: {log}"
    );
    assert!(renewals.load(Ordering::SeqCst) >= 3, "{log}");
    assert_eq!(
        log.matches("token renewal failed; retrying").count(),
        2,
        "{log}"
    );
    assert!(!log.contains("Vault refused to renew"), "{log}");
}
