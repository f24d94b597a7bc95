//! Keeping the token alive for as long as the daemon runs: look it up,
//! renew it at two thirds of its TTL, and warn ahead of an expiry that
//! renewing cannot prevent (see docs/auth.md).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::VaultError;
use crate::vault::{TokenInfo, VaultClient, MAX_VAULT_DURATION};

/// How often a token file is looked at (one `stat`) while the task waits,
/// so a token written there is picked up even when the mount is idle.
const FILE_POLL: Duration = Duration::from_secs(5);
/// Pause after a failed lookup before trying again.
const RETRY: Duration = Duration::from_secs(10);
/// The earliest warning ahead of an unavoidable expiry.
const MAX_LEAD: Duration = Duration::from_secs(600);
/// The shortest wait before a renewal: a server answering `ttl: 0` for a
/// renewable token must not make the task loop on requests.
const MIN_RENEW_WAIT: Duration = Duration::from_secs(1);
/// Pauses before restarting a background task that ended.
const RESTART_MIN: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(300);

/// Start renewing in the background; returns at once.
/// `first` is the lookup the mount just made: the task starts from it
/// rather than asking again (a request that would race the user's first).
pub fn spawn(client: Arc<VaultClient>, first: TokenInfo, rt: &tokio::runtime::Handle) {
    let mut first = Some(first);
    rt.spawn(supervise("token renewal", move || {
        run(client.clone(), first.take())
    }));
}

/// Run a background task for the daemon's life. It never returns by itself,
/// so ending (a panic) is logged as an error and it is started again, after
/// a pause that doubles up to 5 minutes: a task that panics on every answer
/// of a broken server neither dies silently nor spins (docs/reliability.md).
pub async fn supervise<F, Fut>(name: &'static str, mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut pause = RESTART_MIN;
    loop {
        let started = Instant::now();
        match tokio::spawn(make()).await {
            Ok(()) => tracing::error!(task = name, "background task ended; restarting it"),
            Err(e) if e.is_panic() => {
                tracing::error!(task = name, "background task panicked; restarting it")
            }
            // Cancelled: the runtime is shutting down.
            Err(_) => return,
        }
        if started.elapsed() > RESTART_MAX {
            pause = RESTART_MIN;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RESTART_MAX);
    }
}

/// `start + d` that cannot panic. Durations from Vault are clamped already
/// (`vault::MAX_VAULT_DURATION`); this is the backstop for the arithmetic.
fn after(start: Instant, d: Duration) -> Instant {
    start
        .checked_add(d.min(MAX_VAULT_DURATION))
        .or_else(|| start.checked_add(MAX_LEAD))
        .unwrap_or(start)
}

/// When to renew a token with `ttl` left: at two thirds of it.
fn renew_at(start: Instant, ttl: Duration) -> Instant {
    // Divide first: `ttl * 2` can overflow.
    after(start, (ttl / 3 * 2).max(MIN_RENEW_WAIT))
}

/// When to warn of an expiry at `expiry` that renewing cannot prevent.
fn warn_at(expiry: Instant, ttl: Duration) -> Instant {
    let lead = (ttl / 3).min(MAX_LEAD);
    expiry.checked_sub(lead).unwrap_or(expiry)
}

#[derive(PartialEq)]
enum Woke {
    Deadline,
    NewToken,
}

/// Sleep until `deadline` (forever if `None`) or until the token changes.
async fn wait(
    client: &VaultClient,
    changed: &mut watch::Receiver<u64>,
    deadline: Option<Instant>,
) -> Woke {
    loop {
        let tick = after(Instant::now(), FILE_POLL);
        let until = deadline.map_or(tick, |d| d.min(tick));
        tokio::select! {
            // The sender lives in the client we hold: never an error.
            _ = changed.changed() => return Woke::NewToken,
            _ = tokio::time::sleep_until(until) => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Woke::Deadline;
        }
        client.token().refresh_if_changed();
    }
}

fn secs(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_secs(d.as_secs()))
}

/// What the user can do about an expiring token, by where it came from.
fn fix(client: &VaultClient) -> String {
    match client.token().origin().file() {
        Some(p) => format!("write a new token to {} (it is re-read)", p.display()),
        None => format!(
            "remount with a new token in {} (or use --token-file, which is re-read)",
            client.token().origin()
        ),
    }
}

async fn run(client: Arc<VaultClient>, mut first: Option<TokenInfo>) {
    let mut changed = client.token().subscribe();
    // Renewing stopped extending this token's life (max TTL reached, or
    // Vault refused): only warnings are left until a new token comes.
    let mut capped = false;
    let mut failing = false;
    loop {
        let looked_up = match first.take() {
            Some(info) => Ok(info),
            None => client.lookup_self().await,
        };
        let info = match looked_up {
            Ok(i) => {
                failing = false;
                i
            }
            Err(e) => {
                // A rejected token waits for a new one; anything else
                // (Vault away, TLS trouble) is retried.
                let rejected = matches!(e, VaultError::BadToken(_) | VaultError::Forbidden);
                if rejected {
                    tracing::warn!(
                        "Vault no longer accepts the token (expired or revoked): {}",
                        fix(&client)
                    );
                } else if !failing {
                    tracing::warn!(error = %e, "token lookup failed; renewal will retry");
                    failing = true;
                }
                let deadline = (!rejected).then(|| after(Instant::now(), RETRY));
                if wait(&client, &mut changed, deadline).await == Woke::NewToken {
                    capped = false;
                }
                continue;
            }
        };
        if !info.expires {
            tracing::info!("token does not expire: nothing to renew");
            wait(&client, &mut changed, None).await;
            capped = false;
            continue;
        }
        let start = Instant::now();
        let expiry = after(start, info.ttl);
        if info.renewable && !capped {
            let at = renew_at(start, info.ttl);
            if wait(&client, &mut changed, Some(at)).await == Woke::NewToken {
                continue;
            }
            match client.renew_self().await {
                Ok(ttl) => {
                    // Vault caps a renewal at the max TTL: once it gives
                    // less than the usual TTL, the expiry cannot move.
                    capped = ttl < info.creation_ttl;
                    tracing::info!(ttl = %secs(ttl), "token renewed");
                }
                Err(e) if e.is_transient() => {
                    tracing::warn!(error = %e, "token renewal failed; retrying");
                    let left = expiry.saturating_duration_since(Instant::now());
                    let again = after(Instant::now(), (left / 4).min(RETRY));
                    wait(&client, &mut changed, Some(again)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Vault refused to renew the token");
                    capped = true;
                }
            }
            continue;
        }
        let why = if info.renewable {
            "its max TTL is reached"
        } else {
            "it is not renewable"
        };
        tracing::info!(expires_in = %secs(info.ttl), "token cannot be renewed: {why}");
        if wait(&client, &mut changed, Some(warn_at(expiry, info.ttl))).await == Woke::NewToken {
            capped = false;
            continue;
        }
        tracing::warn!(
            expires_in = %secs(expiry.saturating_duration_since(Instant::now())),
            "token expires soon and cannot be renewed ({why}): {}",
            fix(&client)
        );
        if wait(&client, &mut changed, Some(expiry)).await == Woke::NewToken {
            capped = false;
            continue;
        }
        tracing::warn!(
            "token expired: Vault will refuse every request; {}",
            fix(&client)
        );
        wait(&client, &mut changed, None).await;
        capped = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn schedule_survives_any_ttl() {
        let now = Instant::now();
        for ttl in [Duration::ZERO, Duration::from_secs(u64::MAX), Duration::MAX] {
            let expiry = after(now, ttl);
            assert!(expiry >= now);
            assert!(renew_at(now, ttl) >= now + MIN_RENEW_WAIT);
            assert!(warn_at(expiry, ttl) <= expiry);
        }
        let ttl = Duration::from_secs(30);
        assert_eq!(renew_at(now, ttl), now + Duration::from_secs(20));
        assert_eq!(warn_at(now + ttl, ttl), now + Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicked_task_is_restarted() {
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let sup = tokio::spawn(supervise("test", move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("first run dies");
                }
                std::future::pending::<()>().await
            }
        }));
        tokio::time::sleep(RESTART_MIN * 3).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(!sup.is_finished());
        sup.abort();
    }
}
