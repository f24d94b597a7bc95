//! Load: 64 readers over a few hundred secrets through a real mount while a
//! writer keeps rotating them in OpenBao and the TTL is short: no errors, and
//! every read is one whole value that was really written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::rotation::Rotation;
use crate::harness::*;
use serde_json::json;

const SECRETS: usize = 300;
const READERS: usize = 64;
const RUN: Duration = Duration::from_secs(15);

#[test]
fn soak_readers_during_rotation() {
    let bao = Bao::shared();
    let put = |i: usize, v: &str| bao.put_http("secret", &format!("soak/s{i}"), json!({ "v": v }));
    let rot = Rotation::new(SECRETS, 8);
    rot.seed(put);
    let m = Mount::with(
        bao,
        MountOpts::new(ROOT_TOKEN)
            .arg("--ttl")
            .arg("500ms")
            .arg("--timeout")
            .arg("10s"),
    );
    let stop = AtomicBool::new(false);
    let end = Instant::now() + RUN;
    let root = m.p("secret/soak");

    let (writes, results) = std::thread::scope(|s| {
        let writer = s.spawn(|| rot.rotate(&stop, 31, Duration::ZERO, put));
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                let (rot, root) = (&rot, &root);
                s.spawn(move || {
                    let (mut reads, mut newer, mut errors) = (0u64, 0u64, Vec::new());
                    let mut n = r * 7;
                    while Instant::now() < end {
                        let i = rot.pick(n, 13);
                        n += 1;
                        match std::fs::read(root.join(format!("s{i}/v"))) {
                            Ok(got) => match rot.check(i, &got) {
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
        let results: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        stop.store(true, Ordering::SeqCst);
        (writer.join().unwrap(), results)
    });

    let (mut reads, mut newer, mut errors) = (0, 0, Vec::new());
    for (a, b, e) in results {
        reads += a;
        newer += b;
        errors.extend(e);
    }
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
