//! `--max-requests auto`: how many requests to keep in flight, learnt from
//! Vault's answers (AIMD with a delay signal, as TCP Vegas and Netflix's
//! concurrency-limits do).
//!
//! - Grow while the round trip stays flat: +1 per success at first (the
//!   limit doubles each round trip, TCP's slow start), +1 per round trip
//!   (1/limit per success) after the first cut; only while the limit is in
//!   use (at least half of it in flight), so an idle mount does not drift
//!   up to the ceiling.
//! - Cut by half on 429 (rate limited), 503 or a timeout, and by a tenth
//!   when the round trip rises past twice the lowest seen plus 2 ms (the
//!   server or the path is queueing): at most once per round trip, as the
//!   answers in flight when the first one came say the same thing.
//! - Between 1 and the ceiling. Retries take a slot like any request, so
//!   after a cut they wait for the lower limit instead of adding to a burst.
//! - A 429 also holds every request back for a moment (its `Retry-After`,
//!   at most [`MAX_PAUSE`]; else [`PAUSE`], doubling with each 429 that
//!   follows a pause without an answer between, as OpenBao's quotas refuse
//!   until their interval ends and send no `Retry-After` by default): a
//!   rate limit is a rate, which
//!   no concurrency can match on a fast path (one request at a time on
//!   loopback is 1,000 a second), so without the pause each 429 would only
//!   make room for the next one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::slots::Slots;

/// Where `auto` starts: the fixed default.
pub const AUTO_START: usize = 32;
/// The most `auto` keeps in flight.
pub const AUTO_CEILING: usize = 256;

/// A round trip this much over the lowest seen, plus [`QUEUE_SLACK`], is
/// taken as queueing.
const QUEUE_FACTOR: u32 = 2;
const QUEUE_SLACK: Duration = Duration::from_millis(2);
/// The lowest round trip is forgotten this often (a path that got slower
/// for good would otherwise read as queueing forever).
const BASE_WINDOW: Duration = Duration::from_secs(10);

/// How long a 429 without `Retry-After` holds requests back.
pub const PAUSE: Duration = Duration::from_millis(100);
/// The longest a `Retry-After` is followed.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);

/// What one request said about the server's load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (whatever the status, save the two below).
    Answered,
    /// 429 or 503: the server asks for less.
    Overloaded,
    /// No answer within the deadline.
    TimedOut,
}

pub struct Limiter {
    slots: Arc<Slots>,
    ceiling: usize,
    state: Mutex<State>,
}

struct State {
    limit: f64,
    slow_start: bool,
    /// The lowest round trip in this window and the last.
    base: Option<Duration>,
    window_min: Option<Duration>,
    window_start: Instant,
    /// No second cut before this.
    calm_until: Instant,
    /// No request goes out before this (after a 429).
    paused_until: Instant,
    /// 429s since the last answer, one per pause: the next pause doubles.
    refusals: u32,
}

impl Limiter {
    pub fn new(slots: Arc<Slots>, start: usize, ceiling: usize) -> Limiter {
        let ceiling = ceiling.max(1);
        let start = start.clamp(1, ceiling);
        slots.set_limit(start);
        let now = Instant::now();
        Limiter {
            slots,
            ceiling,
            state: Mutex::new(State {
                limit: start as f64,
                slow_start: true,
                base: None,
                window_min: None,
                window_start: now,
                calm_until: now,
                paused_until: now,
                refusals: 0,
            }),
        }
    }

    /// Waits out a pause a 429 asked for.
    pub async fn wait_pause(&self) {
        loop {
            let until = self.state.lock().expect("limiter lock").paused_until;
            if Instant::now() >= until {
                return;
            }
            tokio::time::sleep_until(until).await;
        }
    }

    /// The server refused a request for its rate: hold every request back
    /// for `retry_after` (at most [`MAX_PAUSE`]), or when not said for
    /// [`PAUSE`] doubled per refusal since the last answer.
    pub fn pause(&self, retry_after: Option<Duration>) {
        let now = Instant::now();
        let mut s = self.state.lock().expect("limiter lock");
        // Refusals of requests sent before the pause began are one event.
        if now < s.paused_until {
            return;
        }
        let backoff = PAUSE * 2u32.saturating_pow(s.refusals.min(8));
        s.refusals += 1;
        s.paused_until = now + retry_after.unwrap_or(backoff).min(MAX_PAUSE);
    }

    /// A request that was sent with `in_flight` requests in flight (itself
    /// included) ended with `outcome` after `rtt`.
    pub fn sample(&self, rtt: Duration, in_flight: usize, outcome: Outcome) {
        let now = Instant::now();
        let mut s = self.state.lock().expect("limiter lock");
        if now >= s.window_start + BASE_WINDOW {
            s.base = s.window_min.take().or(s.base);
            s.window_start = now;
        }
        let base = match outcome {
            Outcome::Answered => {
                s.refusals = 0;
                s.window_min = Some(s.window_min.map_or(rtt, |m| m.min(rtt)));
                let b = s.base.map_or(rtt, |b| b.min(rtt));
                s.base = Some(b);
                b
            }
            _ => s.base.unwrap_or(rtt),
        };
        let queueing = outcome == Outcome::Answered && rtt > base * QUEUE_FACTOR + QUEUE_SLACK;
        let cut = match outcome {
            Outcome::Overloaded | Outcome::TimedOut => Some(0.5),
            Outcome::Answered if queueing => Some(0.9),
            Outcome::Answered => None,
        };
        match cut {
            Some(f) if now >= s.calm_until => {
                s.limit = (s.limit * f).max(1.0);
                s.slow_start = false;
                // The answers already on their way were sent at the old
                // limit: one cut per round trip.
                s.calm_until = now + rtt.max(base);
            }
            Some(_) => {}
            None if 2 * in_flight >= s.limit as usize => {
                let step = if s.slow_start { 1.0 } else { 1.0 / s.limit };
                s.limit = (s.limit + step).min(self.ceiling as f64);
            }
            None => {}
        }
        self.slots.set_limit(s.limit as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slots::Priority;

    const RTT: Duration = Duration::from_millis(40);

    /// Runs `rounds` round trips of a client keeping the limit in flight,
    /// against a server that answers `outcome(in_flight)` after
    /// `rtt(in_flight)`; returns the limit after each round.
    async fn drive(
        limiter: &Limiter,
        slots: &Arc<Slots>,
        rounds: usize,
        server: impl Fn(usize) -> (Duration, Outcome),
    ) -> Vec<usize> {
        let mut seen = Vec::new();
        for _ in 0..rounds {
            let n = slots.limit();
            let mut held = Vec::new();
            for _ in 0..n {
                held.push(slots.acquire(Priority::User).await);
            }
            let (rtt, outcome) = server(n);
            tokio::time::advance(rtt).await;
            for _ in 0..n {
                limiter.sample(rtt, n, outcome);
            }
            drop(held);
            seen.push(slots.limit());
        }
        seen
    }

    /// While the round trip stays flat the limit grows to the ceiling,
    /// doubling per round trip at first.
    #[tokio::test(start_paused = true)]
    async fn grows_while_the_round_trip_is_flat() {
        let slots = Slots::new(1);
        let limiter = Limiter::new(slots.clone(), 4, 64);
        let seen = drive(&limiter, &slots, 6, |_| (RTT, Outcome::Answered)).await;
        assert_eq!(seen, [8, 16, 32, 64, 64, 64]);
    }

    /// A server that allows 40 in flight and answers 429 beyond: the limit
    /// settles under it (each 429 halves it, then it climbs a step per
    /// round trip), and most round trips see no 429 at all.
    #[tokio::test(start_paused = true)]
    async fn settles_under_a_rate_limit() {
        let slots = Slots::new(1);
        let limiter = Limiter::new(slots.clone(), 32, 256);
        let over = |n: usize| n > 40;
        let seen = drive(&limiter, &slots, 200, |n| {
            (
                RTT,
                if over(n) {
                    Outcome::Overloaded
                } else {
                    Outcome::Answered
                },
            )
        })
        .await;
        assert!(seen.iter().all(|&l| (1..=256).contains(&l)));
        let late = &seen[50..];
        let refused = late.iter().filter(|&&l| over(l)).count();
        assert!(
            refused * 10 <= late.len(),
            "{refused} of {} rounds over: {seen:?}",
            late.len()
        );
        let mean = late.iter().sum::<usize>() as f64 / late.len() as f64;
        assert!(mean >= 25.0, "mean limit {mean} under a 40 quota: {seen:?}");
    }

    /// A server that queues: the round trip grows with what is in flight
    /// past 24. The limit stops near where the round trip starts to rise,
    /// instead of growing to the ceiling.
    #[tokio::test(start_paused = true)]
    async fn stops_where_the_round_trip_rises() {
        let slots = Slots::new(1);
        let limiter = Limiter::new(slots.clone(), 8, 256);
        let seen = drive(&limiter, &slots, 300, |n| {
            let queued = n.saturating_sub(24) as u32;
            (RTT + Duration::from_millis(4) * queued, Outcome::Answered)
        })
        .await;
        let late = &seen[100..];
        assert!(late.iter().all(|&l| l <= 60), "{seen:?}");
        let mean = late.iter().sum::<usize>() as f64 / late.len() as f64;
        assert!(mean >= 16.0, "mean limit {mean}: {seen:?}");
    }

    /// After a 429 no request goes out until the pause it asked for ends.
    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_every_request() {
        let limiter = Limiter::new(Slots::new(1), 8, 8);
        let t = Instant::now();
        limiter.wait_pause().await;
        assert_eq!(t.elapsed(), Duration::ZERO);
        limiter.pause(None);
        // A refusal of a request sent before the pause: the same event.
        limiter.pause(None);
        limiter.wait_pause().await;
        assert_eq!(t.elapsed(), PAUSE);
        // Refused again without an answer between: twice as long.
        limiter.pause(None);
        limiter.wait_pause().await;
        assert_eq!(t.elapsed(), PAUSE * 3);
        limiter.sample(RTT, 1, Outcome::Answered);
        limiter.pause(None);
        limiter.wait_pause().await;
        assert_eq!(t.elapsed(), PAUSE * 4);
        let t = Instant::now();
        limiter.pause(Some(Duration::from_secs(60)));
        limiter.wait_pause().await;
        assert_eq!(t.elapsed(), MAX_PAUSE);
    }

    /// Answers arriving together after one overload cut once, not once each.
    #[tokio::test(start_paused = true)]
    async fn one_cut_per_round_trip() {
        let slots = Slots::new(1);
        let limiter = Limiter::new(slots.clone(), 64, 256);
        for _ in 0..64 {
            limiter.sample(RTT, 64, Outcome::Overloaded);
        }
        assert_eq!(slots.limit(), 32);
        tokio::time::advance(RTT).await;
        limiter.sample(RTT, 32, Outcome::TimedOut);
        assert_eq!(slots.limit(), 16);
        for _ in 0..100 {
            limiter.sample(RTT, 1, Outcome::Answered);
        }
        assert_eq!(slots.limit(), 16, "an idle limit does not grow");
    }
}
