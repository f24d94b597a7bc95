//! Issue #5: load. 64 readers over a few hundred secrets through a real
//! mount, while a writer keeps rotating them in OpenBao and the TTL is short:
//! no errors, and every read is one complete value that was really written.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const SECRETS: usize = 300;
const READERS: usize = 64;
const RUN: Duration = Duration::from_secs(15);

/// Self-validating: the secret's name, a counter, and padding whose length
/// follows from the counter, so a torn or mixed read cannot pass for whole.
fn value(i: usize, counter: u64) -> String {
    format!("s{i}:{counter}:{}", "p".repeat(pad_len(counter)))
}

fn pad_len(counter: u64) -> usize {
    (counter as usize * 7919) % 3000
}

/// Checks one read; returns its counter.
fn check(i: usize, got: &[u8], written: &AtomicU64) -> Result<u64, String> {
    let s = std::str::from_utf8(got).map_err(|_| "not UTF-8".to_string())?;
    let mut parts = s.splitn(3, ':');
    let (name, counter, pad) = (parts.next(), parts.next(), parts.next());
    let bad = || format!("s{i}: malformed read of {} bytes", got.len());
    if name != Some(&format!("s{i}")) {
        return Err(bad());
    }
    let counter: u64 = counter.and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    let pad = pad.ok_or_else(bad)?;
    if pad.len() != pad_len(counter) || pad.bytes().any(|b| b != b'p') {
        return Err(format!("s{i}: torn value at counter {counter}"));
    }
    // `written` is raised before each write is sent.
    if counter > written.load(Ordering::SeqCst) {
        return Err(format!("s{i}: counter {counter} was never written"));
    }
    Ok(counter)
}

/// One KV v2 write over plain HTTP/1.1 (the CLI is too slow to rotate fast).
fn put(addr: &str, i: usize, v: &str) {
    let host = addr.trim_start_matches("http://");
    let body = serde_json::json!({"data": {"v": v}}).to_string();
    let mut c = TcpStream::connect(host).unwrap();
    write!(
        c,
        "POST /v1/secret/data/soak/s{i} HTTP/1.1\r\nHost: {host}\r\nX-Vault-Token: {ROOT_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "write s{i}: {resp}");
}

#[test]
fn soak_readers_during_rotation() {
    let bao = Bao::shared();
    let written: Arc<Vec<AtomicU64>> = Arc::new((0..SECRETS).map(|_| AtomicU64::new(0)).collect());
    for i in 0..SECRETS {
        put(&bao.addr, i, &value(i, 0));
    }
    let m = Mount::with(
        bao,
        MountOpts::new(ROOT_TOKEN)
            .arg("--ttl")
            .arg("500ms")
            .arg("--timeout")
            .arg("10s"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let end = Instant::now() + RUN;

    let writer = {
        let (addr, written, stop) = (bao.addr.clone(), written.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut writes = 0u64;
            let mut n = 0usize;
            while !stop.load(Ordering::SeqCst) {
                // A few hot secrets rotate fast; the rest slowly.
                let i = if n % 2 == 0 {
                    n % 8
                } else {
                    (n * 31) % SECRETS
                };
                let c = written[i].load(Ordering::SeqCst) + 1;
                written[i].store(c, Ordering::SeqCst);
                put(&addr, i, &value(i, c));
                writes += 1;
                n += 1;
            }
            writes
        })
    };

    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (root, written) = (m.p("secret/soak"), written.clone());
            std::thread::spawn(move || {
                let (mut reads, mut newer, mut errors) = (0u64, 0u64, Vec::new());
                let mut n = r * 7;
                while Instant::now() < end {
                    let i = if n % 2 == 0 {
                        n % 8
                    } else {
                        (n * 13) % SECRETS
                    };
                    n += 1;
                    match std::fs::read(root.join(format!("s{i}/v"))) {
                        Ok(got) => match check(i, &got, &written[i]) {
                            Ok(c) => newer += (c > 0) as u64,
                            Err(e) => errors.push(e),
                        },
                        Err(e) => errors.push(format!("s{i}: {e}")),
                    }
                    reads += 1;
                }
                (reads, newer, errors)
            })
        })
        .collect();

    let (mut reads, mut newer, mut errors) = (0, 0, Vec::new());
    for r in readers {
        let (a, b, e) = r.join().unwrap();
        reads += a;
        newer += b;
        errors.extend(e);
    }
    stop.store(true, Ordering::SeqCst);
    let writes = writer.join().unwrap();
    eprintln!("soak: {reads} reads, {newer} of rotated values, {writes} writes");
    assert!(
        errors.is_empty(),
        "{} bad reads, first: {:?}\n{}",
        errors.len(),
        &errors[..errors.len().min(10)],
        m.log_text()
    );
    assert!(reads > 2000, "only {reads} reads");
    assert!(writes > 100, "only {writes} writes");
    assert!(newer > 100, "rotations never showed through the mount");
}
