//! Secrets `s0`, `s1`, … that a writer keeps rotating while readers check
//! every read: each value carries its secret's name and counter and padding
//! whose length follows from the counter, so a torn, mixed or never-written
//! read cannot pass for a whole one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub struct Rotation {
    /// The last counter of each secret, raised before its write is sent.
    written: Vec<AtomicU64>,
    /// How many of the first secrets rotate fast.
    hot: usize,
}

impl Rotation {
    pub fn new(secrets: usize, hot: usize) -> Rotation {
        Rotation {
            written: (0..secrets).map(|_| AtomicU64::new(0)).collect(),
            hot,
        }
    }

    pub fn len(&self) -> usize {
        self.written.len()
    }

    /// Secret `i`'s value at `counter`.
    pub fn value(i: usize, counter: u64) -> String {
        format!(
            "s{i}:{counter}:{}",
            "p".repeat((counter as usize * 7919) % 3000)
        )
    }

    /// The secret for step `n`: a hot one on even steps, else one of all,
    /// `stride` apart from step to step.
    pub fn pick(&self, n: usize, stride: usize) -> usize {
        if n % 2 == 0 {
            n % self.hot
        } else {
            (n * stride) % self.len()
        }
    }

    /// Checks a read of secret `i`; returns its counter.
    pub fn check(&self, i: usize, got: &[u8]) -> Result<u64, String> {
        let s = std::str::from_utf8(got).map_err(|_| format!("s{i}: not UTF-8"))?;
        let counter: u64 = s
            .strip_prefix(&format!("s{i}:"))
            .and_then(|r| r.split(':').next())
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("s{i}: malformed read of {} bytes", got.len()))?;
        if s != Rotation::value(i, counter) {
            return Err(format!("s{i}: torn value at counter {counter}"));
        }
        if counter > self.written[i].load(Ordering::SeqCst) {
            return Err(format!("s{i}: counter {counter} was never written"));
        }
        Ok(counter)
    }

    /// Writes every secret's first value (counter 0) with `put`.
    pub fn seed(&self, mut put: impl FnMut(usize, &str)) {
        for i in 0..self.len() {
            put(i, &Rotation::value(i, 0));
        }
    }

    /// Rotates secrets with `put` (secret, value), a step every `pause`,
    /// until `stop`; returns how many writes it made.
    pub fn rotate(
        &self,
        stop: &AtomicBool,
        stride: usize,
        pause: Duration,
        mut put: impl FnMut(usize, &str),
    ) -> u64 {
        let mut n = 0;
        while !stop.load(Ordering::SeqCst) {
            let i = self.pick(n, stride);
            let next = self.written[i].fetch_add(1, Ordering::SeqCst) + 1;
            put(i, &Rotation::value(i, next));
            n += 1;
            std::thread::sleep(pause);
        }
        n as u64
    }
}
