//! Keeping the token alive for as long as the daemon runs: look it up,
//! renew it at two thirds of its TTL, and warn ahead of an expiry that
//! renewing cannot prevent (see docs/auth.md).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::VaultError;
use crate::vault::VaultClient;

/// How often a token file is looked at (one `stat`) while the task waits,
/// so a token written there is picked up even when the mount is idle.
const FILE_POLL: Duration = Duration::from_secs(5);
/// Pause after a failed lookup before trying again.
const RETRY: Duration = Duration::from_secs(10);
/// The earliest warning ahead of an unavoidable expiry.
const MAX_LEAD: Duration = Duration::from_secs(600);

/// Start renewing in the background; returns at once.
pub fn spawn(client: Arc<VaultClient>, rt: &tokio::runtime::Handle) {
    rt.spawn(run(client));
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
        let tick = Instant::now() + FILE_POLL;
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

async fn run(client: Arc<VaultClient>) {
    let mut changed = client.token().subscribe();
    // Renewing stopped extending this token's life (max TTL reached, or
    // Vault refused): only warnings are left until a new token comes.
    let mut capped = false;
    let mut failing = false;
    loop {
        let info = match client.lookup_self().await {
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
                let deadline = (!rejected).then(|| Instant::now() + RETRY);
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
        let expiry = start + info.ttl;
        if info.renewable && !capped {
            let at = start + info.ttl * 2 / 3;
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
                    let again = Instant::now() + (left / 4).min(RETRY);
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
        let lead = (info.ttl / 3).min(MAX_LEAD);
        if wait(&client, &mut changed, Some(expiry - lead)).await == Woke::NewToken {
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
