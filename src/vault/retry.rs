//! Pacing requests against a Vault that is away: jittered backoff between
//! retries, and a breaker that fails fast while Vault is known to be down.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::error::VaultError;

/// First retry after ~100 ms, doubling up to 2 s; "equal jitter" (half
/// fixed, half random) so that many clients retrying after one outage spread
/// out instead of arriving together.
pub(super) fn backoff(attempt: u32) -> Duration {
    let cap = (BACKOFF_BASE * 2u32.saturating_pow(attempt.min(16))).min(BACKOFF_MAX);
    cap / 2 + (cap / 2).mul_f64(fastrand::f64())
}

const BACKOFF_BASE: Duration = Duration::from_millis(100);

const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Remembers that Vault is down (unreachable, hung, sealed, gateway errors)
/// so that requests fail at once with that error while one probe at a time
/// finds out whether it is back. Without it, every request of a lookup that
/// chains several would wait out the whole deadline.
#[derive(Default)]
pub(super) struct Breaker(Mutex<Option<Down>>);

struct Down {
    error: VaultError,
    /// When the next request may go out as a probe.
    probe_at: Instant,
}

impl Breaker {
    /// Err when Vault is known down and no probe is due.
    pub(super) fn admit(&self, timeout: Duration) -> Result<(), VaultError> {
        let mut s = self.0.lock().expect("breaker lock");
        let Some(down) = s.as_mut() else {
            return Ok(());
        };
        let now = Instant::now();
        if now < down.probe_at {
            return Err(down.error.clone());
        }
        // This request is the probe; the next is due only when it has had
        // its full deadline (if it is cancelled, that still comes).
        down.probe_at = now + timeout + PROBE_INTERVAL;
        Ok(())
    }

    pub(super) fn answered(&self) {
        if let Some(down) = self.0.lock().expect("breaker lock").take() {
            tracing::info!(was = %down.error, "Vault is reachable again");
        }
    }

    pub(super) fn failed(&self, e: &VaultError, timeout: Duration) {
        let mut s = self.0.lock().expect("breaker lock");
        if s.is_none() {
            tracing::warn!(
                error = %e,
                probe_every_ms = (PROBE_INTERVAL.min(timeout)).as_millis() as u64,
                "Vault unavailable: failing fast (stale cached answers are served) until it answers again"
            );
        }
        *s = Some(Down {
            error: e.clone(),
            probe_at: Instant::now() + PROBE_INTERVAL.min(timeout),
        });
    }
}

const PROBE_INTERVAL: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        for attempt in 0..40 {
            let cap = (BACKOFF_BASE * 2u32.saturating_pow(attempt.min(16))).min(BACKOFF_MAX);
            let samples: Vec<Duration> = (0..50).map(|_| backoff(attempt)).collect();
            assert!(
                samples.iter().all(|d| *d >= cap / 2 && *d <= cap),
                "{attempt}"
            );
            // Jittered: not all the same.
            assert!(samples.iter().any(|d| *d != samples[0]), "{attempt}");
        }
        assert!(backoff(0) <= Duration::from_millis(100));
        assert!(backoff(30) <= BACKOFF_MAX);
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_fails_fast_then_probes_one_at_a_time() {
        let b = Breaker::default();
        let t = Duration::from_secs(10);
        assert!(b.admit(t).is_ok());
        b.failed(&VaultError::Sealed, t);
        assert_eq!(b.admit(t).unwrap_err(), VaultError::Sealed);
        tokio::time::advance(PROBE_INTERVAL).await;
        // One probe goes out; the others still fail fast while it runs.
        assert!(b.admit(t).is_ok());
        assert!(b.admit(t).is_err());
        // A probe that never reports (cancelled) does not block forever.
        tokio::time::advance(t + PROBE_INTERVAL).await;
        assert!(b.admit(t).is_ok());
        b.answered();
        assert!(b.admit(t).is_ok() && b.admit(t).is_ok());
    }
}
