//! The Vault HTTP client: the only module that speaks HTTP. The filesystem
//! sees it through the small [`SecretStore`] trait.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::auth::TokenSource;
use crate::error::VaultError;
use crate::secret::{Secret, SecretBuf};
use crate::slots::Slots;
use crate::store::{KvMount, KvVersion, Metadata, SecretStore};
use crate::tls::ConfigError;

mod config;
mod limit;
mod request;
mod response;
mod retry;

pub use config::{redact_userinfo, ClientConfig, MaxRequests};
use limit::{Limiter, Outcome, AUTO_CEILING, AUTO_START};
use request::kv_path;
pub use request::request_url;
use response::{
    not_now, parse_metadata, parse_mount, parse_renewal, parse_token_info, status_error,
};
pub use response::{parse_list, parse_read, TokenInfo, MAX_VAULT_DURATION};
use retry::{backoff, Breaker};

/// The one query parameter a request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Query {
    None,
    /// `list=true`: a LIST sent as GET.
    List,
    /// `version=N`: a KV v2 read of an older version.
    Version(u64),
}

pub struct VaultClient {
    http: reqwest::Client,
    cfg: ClientConfig,
    /// Where requests go: `cfg.address`, with the TLS server name as host
    /// when one is set (see `tls::request_address`).
    base: Url,
    token: Arc<TokenSource>,
    /// Requests in flight, shared with the tree's prefetch.
    slots: Arc<Slots>,
    /// Moves the slots' limit with `--max-requests auto`.
    limiter: Option<Limiter>,
    breaker: Breaker,
}

impl VaultClient {
    pub fn new(cfg: ClientConfig, token: Arc<TokenSource>) -> Result<VaultClient, ConfigError> {
        let build = |system_roots| {
            let b = reqwest::Client::builder()
                .connect_timeout(cfg.timeout)
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(64)
                .user_agent(concat!("vaultfs/", env!("CARGO_PKG_VERSION")))
                // Never follow a redirect with our token to another place.
                .redirect(reqwest::redirect::Policy::none());
            crate::tls::configure(b, &cfg.tls, &cfg.address, system_roots)?
                .build()
                .map_err(|e| ConfigError::Client(e.to_string()))
        };
        let (slots, limiter) = match cfg.max_requests {
            MaxRequests::Fixed(n) => (Slots::new(n), None),
            MaxRequests::Auto => {
                let slots = Slots::new(AUTO_START);
                let limiter = Limiter::new(slots.clone(), AUTO_START, AUTO_CEILING);
                (slots, Some(limiter))
            }
        };
        // A system CA bundle rustls cannot parse must not stop the mount.
        let http = build(true).or_else(|e| {
            tracing::warn!(error = %e, "ignoring the system CA bundle");
            build(false)
        })?;
        Ok(VaultClient {
            http,
            base: crate::tls::request_address(&cfg.address, &cfg.tls)?,
            slots,
            limiter,
            breaker: Breaker::default(),
            cfg,
            token,
        })
    }

    pub fn token(&self) -> &TokenSource {
        &self.token
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// The request slots, for background work to take its share of.
    pub fn slots(&self) -> Arc<Slots> {
        self.slots.clone()
    }

    fn url(&self, path: &str) -> Result<Url, VaultError> {
        request_url(&self.base, path)
    }

    /// One request: status and body (capped). The single exit of HTTP
    /// errors. Waiting for a permit counts against the deadline, so a queue
    /// behind a hung server cannot outlive it.
    async fn send(
        &self,
        method: Method,
        url: &Url,
        query: Query,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>), VaultError> {
        let deadline = self.cfg.timeout;
        let fut = async {
            let _permit = self.slots.acquire_for_request().await;
            // After the slot: a request granted one as a pause began waits
            // it out too.
            if let Some(l) = &self.limiter {
                l.wait_pause().await;
            }
            let mut url = url.clone();
            match query {
                Query::None => {}
                Query::List => {
                    url.query_pairs_mut().append_pair("list", "true");
                }
                Query::Version(n) => {
                    url.query_pairs_mut().append_pair("version", &n.to_string());
                }
            }
            // Built once per token (auth.rs): a copy per request would
            // leave the token in freed memory once per request.
            let token = self
                .token
                .header()
                .ok_or_else(|| VaultError::BadToken("token is not a valid header value".into()))?;
            let mut req = self
                .http
                .request(method, url)
                .header("X-Vault-Token", token)
                .header("X-Vault-Request", "true");
            if let Some(ns) = &self.cfg.namespace {
                req = req.header("X-Vault-Namespace", ns);
            }
            // Only `auto` learns from the request: a fixed limit takes no
            // extra look at the slots per request.
            let sent = self
                .limiter
                .as_ref()
                .map(|l| (l, Instant::now(), self.slots.in_flight().0));
            let resp = req.send().await.map_err(classify);
            if let Some((l, sent, in_flight)) = sent {
                let outcome = match &resp {
                    Ok(r) if matches!(r.status().as_u16(), 429 | 503) => Some(Outcome::Overloaded),
                    Ok(_) => Some(Outcome::Answered),
                    Err(VaultError::Timeout(_)) => Some(Outcome::TimedOut),
                    // Refused or reset: says nothing about the load.
                    Err(_) => None,
                };
                if let Some(o) = outcome {
                    l.sample(sent.elapsed(), in_flight, o);
                }
                match &resp {
                    Ok(r) if r.status().as_u16() == 429 => l.pause(retry_after(r.headers())),
                    _ => {}
                }
            }
            let mut resp = resp?;
            let status = resp.status();
            let cap = self.cfg.max_response_bytes;
            let mut body = SecretBuf::with_capacity(body_capacity(resp.content_length(), cap));
            while let Some(chunk) = resp.chunk().await.map_err(classify)? {
                if body.0.len() + chunk.len() > cap {
                    return Err(VaultError::TooLarge(cap));
                }
                body.extend(&chunk);
            }
            Ok((status, body.0))
        };
        match tokio::time::timeout(deadline, fut).await {
            Ok(r) => r,
            Err(_) => {
                if let Some(l) = &self.limiter {
                    l.sample(deadline, self.slots.limit(), Outcome::TimedOut);
                }
                Err(VaultError::Timeout(deadline))
            }
        }
    }

    /// [`Self::send`] with the token kept current: a changed token file is
    /// re-read first, and a 403 re-reads it and retries once if that gave
    /// a different token (Vault Agent / `vault login` rotated it).
    async fn authed(
        &self,
        method: Method,
        path: &str,
        query: Query,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>), VaultError> {
        self.token.refresh_if_changed();
        let generation = self.token.generation();
        let r = self.send_retrying(method.clone(), path, query).await?;
        if r.0 == StatusCode::FORBIDDEN && self.token.reload_after_denied(generation) {
            return self.send_retrying(method, path, query).await;
        }
        Ok(r)
    }

    /// [`Self::send`] made resilient (docs/reliability.md): one deadline for
    /// the whole request, retries included; jittered exponential backoff for
    /// answers that mean "try again"; no permit held while backing off; and
    /// failing fast while Vault is known to be down, so that a lookup that
    /// chains requests waits out the deadline once, not once per request.
    async fn send_retrying(
        &self,
        method: Method,
        path: &str,
        query: Query,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>), VaultError> {
        // Before the breaker: a refused path says nothing about Vault.
        let url = self.url(path)?;
        // A SCAN is an optimisation whose cost grows with the tree (a mount
        // with one secret 2,000 levels deep takes OpenBao minutes): it gets
        // half a deadline, so the LIST its caller falls back to still fits
        // in the same user operation, and its timing out says the tree is
        // big, not that Vault is down.
        let scan = method.as_str() == "SCAN";
        let timeout = if scan {
            self.cfg.timeout / 2
        } else {
            self.cfg.timeout
        };
        let deadline = Instant::now() + timeout;
        self.breaker.admit(timeout)?;
        let mut attempt = 0;
        loop {
            let sent = tokio::time::timeout_at(deadline, self.send(method.clone(), &url, query))
                .await
                .unwrap_or(Err(VaultError::Timeout(timeout)));
            let err = match sent {
                Ok((status, body)) => match not_now(status, &body) {
                    Some(e) => e,
                    None => {
                        // Paths and statuses only: never headers or bodies.
                        tracing::debug!(%method, path, ?query, status = status.as_u16(), attempt, "Vault answered");
                        self.breaker.answered();
                        return Ok((status, body));
                    }
                },
                Err(e) => e,
            };
            let retries_left = self.cfg.max_retries.is_none_or(|m| attempt < m);
            if err.is_retryable() && retries_left {
                let wait = backoff(attempt);
                if Instant::now() + wait < deadline {
                    tracing::debug!(path, attempt, error = %err, wait_ms = wait.as_millis() as u64, "retrying Vault request");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                    continue;
                }
            }
            if scan && matches!(err, VaultError::Timeout(_)) {
                // Neither: a slow SCAN is no outage, and no answer is no
                // sign that Vault is back (this SCAN may be the probe).
            } else if err.is_outage() {
                self.breaker.failed(&err, timeout);
            } else {
                // The server answered: it is up, whatever it said.
                self.breaker.answered();
            }
            return Err(warn_failed(path, err));
        }
    }

    /// The HTTP version spoken with Vault (HTTP/2 when TLS offers it).
    #[cfg(any(test, feature = "testing"))]
    pub async fn http_version(&self) -> Result<reqwest::Version, VaultError> {
        let req = self.http.get(self.url("sys/health")?).send();
        match tokio::time::timeout(self.cfg.timeout, req).await {
            Ok(r) => Ok(r.map_err(classify)?.version()),
            Err(_) => Err(VaultError::Timeout(self.cfg.timeout)),
        }
    }

    /// A request whose success is a JSON body. 404s come back as
    /// `Ok((404, body))` when `keep_404` (KV v2 deleted versions answer so).
    async fn json(
        &self,
        method: Method,
        path: &str,
        query: Query,
        keep_404: bool,
    ) -> Result<(StatusCode, Value), VaultError> {
        let (status, body) = self.authed(method, path, query).await?;
        if !(status.is_success() || keep_404 && status == StatusCode::NOT_FOUND) {
            return Err(warn_failed(path, status_error(status, &body)));
        }
        if body.is_empty() {
            return Ok((status, Value::Null));
        }
        // serde_json's syntax errors quote no input, but say only where, to be sure.
        let v = serde_json::from_slice(&body).map_err(|e| {
            warn_failed(
                path,
                VaultError::BadResponse(format!(
                    "invalid JSON ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                )),
            )
        })?;
        Ok((status, v))
    }

    /// A connection closed over TLS is most likely a refused client
    /// certificate (see `tls::explain_closed`); say so.
    fn closed_hint(&self, e: VaultError) -> VaultError {
        if let VaultError::BadResponse(m) | VaultError::Connect(m) | VaultError::Transport(m) = &e {
            if let Some(hint) = crate::tls::explain_closed(m, &self.cfg.tls, &self.base) {
                return VaultError::Tls(format!("{m}. {hint}"));
            }
        }
        e
    }

    /// The keys a LIST (GET with `list=true`) or SCAN of a folder answers.
    async fn keys(
        &self,
        mount: &KvMount,
        path: &str,
        method: Method,
        query: Query,
    ) -> Result<Vec<String>, VaultError> {
        let p = kv_path(mount, "metadata", path);
        let p = if p.ends_with('/') { p } else { format!("{p}/") };
        let (_, v) = self.json(method, &p, query, false).await?;
        parse_list(&v).map_err(|e| warn_failed(&p, e))
    }

    /// `auth/token/lookup-self`: proves the token works before mounting.
    pub async fn lookup_self(&self) -> Result<TokenInfo, VaultError> {
        let (_, mut v) = self
            .json(Method::GET, "auth/token/lookup-self", Query::None, false)
            .await
            .map_err(|e| match e {
                VaultError::Forbidden => VaultError::BadToken("permission denied".into()),
                e => self.closed_hint(e),
            })?;
        Ok(parse_token_info(&mut v))
    }

    /// `auth/token/renew-self`; returns the new TTL.
    pub async fn renew_self(&self) -> Result<Duration, VaultError> {
        let (_, mut v) = self
            .json(Method::POST, "auth/token/renew-self", Query::None, false)
            .await?;
        Ok(parse_renewal(&mut v))
    }

    async fn mount_info(&self, path: &str) -> Result<Option<KvMount>, VaultError> {
        let p = path.trim_matches('/');
        let (_, v) = self
            .json(
                Method::GET,
                &format!("sys/internal/ui/mounts/{p}"),
                Query::None,
                false,
            )
            .await?;
        let d = &v["data"];
        let real = d["path"].as_str().unwrap_or(p).trim_matches('/');
        Ok(parse_mount(real, d))
    }
}

fn classify(e: reqwest::Error) -> VaultError {
    // The URL in reqwest's message holds no secret (the token travels in a
    // header), but the chain is what says *why*.
    let (timeout, connect) = (e.is_timeout(), e.is_connect());
    let (request, body) = (e.is_request(), e.is_body() || e.is_decode());
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    let mut tls = false;
    while let Some(s) = src {
        let text = s.to_string();
        let lower = text.to_ascii_lowercase();
        // rustls names failures "invalid peer certificate: ..." and
        // "received fatal alert: ..." (client certificate refused).
        // "received corrupt message of type InvalidContentType": the
        // server answered the TLS hello in plain HTTP.
        tls |= ["certificate", "tls", "alert", "invalidcontenttype"]
            .iter()
            .any(|w| lower.contains(w));
        msg = format!("{msg}: {text}");
        src = s.source();
    }
    if tls {
        if let Some(hint) = crate::tls::explain(&msg) {
            msg = format!("{msg}. {hint}");
        }
        VaultError::Tls(msg)
    } else if timeout {
        VaultError::Timeout(Duration::ZERO)
    } else if connect {
        VaultError::Connect(msg)
    } else if request || body {
        VaultError::Transport(msg)
    } else {
        VaultError::BadResponse(msg)
    }
}

/// A `Retry-After` in seconds (the form Vault and OpenBao send).
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Most of a response body allocated before its bytes arrive. The server's
/// `Content-Length` is only a claim: trusted up to the cap, 16 requests
/// announcing 32 MiB each reserved 512 MiB (locked page by page under
/// `mlockall`) before sending a byte. Larger bodies grow by doubling.
const MAX_BODY_PREALLOC: usize = 64 * 1024;

fn body_capacity(content_length: Option<u64>, cap: usize) -> usize {
    let claimed = usize::try_from(content_length.unwrap_or(0)).unwrap_or(usize::MAX);
    claimed.min(cap).min(MAX_BODY_PREALLOC)
}

/// Log a failure that becomes EIO and that the breaker does not report
/// (it logs outages once, not per request). 403/404 are answers, not failures.
fn warn_failed(path: &str, e: VaultError) -> VaultError {
    if !e.is_definite() && !e.is_outage() {
        tracing::warn!(path, error = %e, "Vault request failed");
    }
    e
}

impl SecretStore for VaultClient {
    fn credentials(&self) -> u64 {
        self.token.refresh_if_changed();
        self.token.generation()
    }

    async fn mounts(&self) -> Result<Vec<KvMount>, VaultError> {
        if !self.cfg.kv_filter.is_empty() {
            let mut out = Vec::new();
            for p in &self.cfg.kv_filter {
                let no_kv = |why: &str, denied| VaultError::NoKvMount {
                    name: p.clone(),
                    why: why.into(),
                    denied,
                };
                match self.mount_info(p).await {
                    Ok(Some(m)) => out.push(m),
                    Ok(None) => return Err(no_kv("it is another kind of secrets engine", false)),
                    Err(VaultError::Forbidden) => {
                        return Err(no_kv(
                            "Vault denied it: no such mount, or the token may not read it",
                            true,
                        ))
                    }
                    Err(e) => return Err(e),
                }
            }
            return Ok(out);
        }
        let (_, v) = self
            .json(Method::GET, "sys/internal/ui/mounts", Query::None, false)
            .await?;
        let secret = v["data"]["secret"]
            .as_object()
            .cloned()
            .unwrap_or_else(Map::new);
        let mut out: Vec<KvMount> = secret
            .iter()
            .filter_map(|(p, d)| parse_mount(p, d))
            .collect();
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    async fn list(&self, mount: &KvMount, path: &str) -> Result<Vec<String>, VaultError> {
        self.keys(mount, path, Method::GET, Query::List).await
    }

    async fn scan(&self, mount: &KvMount, path: &str) -> Result<Vec<String>, VaultError> {
        let scan = Method::from_bytes(b"SCAN").expect("a valid method name");
        self.keys(mount, path, scan, Query::None).await
    }

    async fn read(&self, mount: &KvMount, path: &str) -> Result<Secret, VaultError> {
        if path.is_empty() {
            return Err(VaultError::NotFound);
        }
        let keep_404 = mount.version == KvVersion::V2;
        let p = kv_path(mount, "data", path);
        let (status, v) = self.json(Method::GET, &p, Query::None, keep_404).await?;
        parse_read(mount.version, status, v).map_err(|e| warn_failed(&p, e))
    }

    async fn read_version(
        &self,
        mount: &KvMount,
        path: &str,
        version: u64,
    ) -> Result<Secret, VaultError> {
        if path.is_empty() || mount.version != KvVersion::V2 {
            return Err(VaultError::NotFound);
        }
        let p = kv_path(mount, "data", path);
        let query = Query::Version(version);
        let (status, v) = self.json(Method::GET, &p, query, true).await?;
        parse_read(mount.version, status, v).map_err(|e| warn_failed(&p, e))
    }

    async fn metadata(&self, mount: &KvMount, path: &str) -> Result<Metadata, VaultError> {
        if path.is_empty() || mount.version != KvVersion::V2 {
            return Err(VaultError::NotFound);
        }
        let p = kv_path(mount, "metadata", path);
        let (_, v) = self.json(Method::GET, &p, Query::None, false).await?;
        parse_metadata(v).map_err(|e| warn_failed(&p, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_preallocation_is_bounded() {
        let cap = 32 << 20;
        assert_eq!(body_capacity(None, cap), 0);
        assert_eq!(body_capacity(Some(100), cap), 100);
        assert_eq!(body_capacity(Some(100), 10), 10);
        for claim in [cap as u64 - 1, cap as u64, u64::MAX] {
            assert_eq!(body_capacity(Some(claim), cap), MAX_BODY_PREALLOC);
        }
    }
}
