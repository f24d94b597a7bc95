//! The Vault HTTP client: the only module that speaks HTTP. The filesystem
//! sees it through the small [`SecretStore`] trait.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::auth::TokenSource;
use crate::error::VaultError;
use crate::secret::{wipe, Secret, SecretBuf};
use crate::store::{KvMount, KvVersion, Metadata, SecretStore};
use crate::tls::{ConfigError, TlsConfig};

#[derive(Clone)]
pub struct ClientConfig {
    pub address: Url,
    pub namespace: Option<String>,
    /// Deadline of one request, connect to last byte.
    pub timeout: Duration,
    /// Show only these mounts (`--kv`); empty means all KV mounts.
    pub kv_filter: Vec<String>,
    pub tls: TlsConfig,
    pub max_response_bytes: usize,
    /// Requests in flight at once; the rest wait.
    pub max_requests: usize,
    /// Retries of one request; `None`: as many as fit in its deadline.
    pub max_retries: Option<u32>,
}

impl ClientConfig {
    /// The address as shown in errors and logs: without userinfo.
    pub fn shown_address(&self) -> String {
        redact_userinfo(self.address.as_str())
    }
}

impl std::fmt::Debug for ClientConfig {
    /// Written out so that the address's userinfo cannot reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("address", &self.shown_address())
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("kv_filter", &self.kv_filter)
            .field("tls", &self.tls)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_requests", &self.max_requests)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// `addr` with its userinfo (`user:pass@`), if any, replaced by `***@`.
/// VAULT_ADDR may carry credentials (for a proxy in front of Vault), and the
/// address is shown in errors and logs. Works on strings that are not valid
/// URLs too, since those are echoed when rejected.
pub fn redact_userinfo(addr: &str) -> String {
    let start = addr.find("://").map_or(0, |i| i + 3);
    let rest = &addr[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    match authority.rfind('@') {
        Some(at) => format!("{}***@{}", &addr[..start], &rest[at + 1..]),
        None => addr.to_string(),
    }
}

/// Token details from `auth/token/lookup-self`.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// Time left, in whole seconds (Vault rounds down).
    pub ttl: Duration,
    /// False for tokens without an expiry (root tokens): their `ttl` is 0.
    pub expires: bool,
    pub renewable: bool,
    /// The TTL a renewal gives back; a renewal that gives less was capped
    /// by the max TTL.
    pub creation_ttl: Duration,
    pub display_name: String,
}

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
    permits: Semaphore,
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
        // A system CA bundle rustls cannot parse must not stop the mount.
        let http = build(true).or_else(|e| {
            tracing::warn!(error = %e, "ignoring the system CA bundle");
            build(false)
        })?;
        Ok(VaultClient {
            http,
            base: crate::tls::request_address(&cfg.address, &cfg.tls)?,
            permits: Semaphore::new(cfg.max_requests.max(1)),
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
            let _permit = self
                .permits
                .acquire()
                .await
                .expect("semaphore never closed");
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
            let mut resp = req.send().await.map_err(classify)?;
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
            Err(_) => Err(VaultError::Timeout(deadline)),
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

/// The longest duration taken from a Vault answer (TTLs, lease durations).
/// Vault's own ceiling is 32 days unless raised; an answer above this one is
/// broken or hostile, and clamping keeps every `Instant + Duration` built
/// from it far from overflowing (a panic there once stopped renewal).
pub const MAX_VAULT_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A whole number of seconds from a Vault answer, clamped; anything that is
/// not a non-negative integer counts as 0.
fn vault_seconds(v: &Value) -> Duration {
    Duration::from_secs(v.as_u64().unwrap_or(0)).min(MAX_VAULT_DURATION)
}

/// Parse a `lookup-self` answer, then wipe it: it holds the token itself
/// (`data.id`), and the parsed copy must not linger in freed memory.
pub fn parse_token_info(v: &mut Value) -> TokenInfo {
    let d = &v["data"];
    let info = TokenInfo {
        ttl: vault_seconds(&d["ttl"]),
        expires: !d["expire_time"].is_null(),
        renewable: d["renewable"].as_bool().unwrap_or(false),
        creation_ttl: vault_seconds(&d["creation_ttl"]),
        display_name: d["display_name"].as_str().unwrap_or("").to_string(),
    };
    wipe(v);
    info
}

/// Parse a `renew-self` answer (the new TTL), then wipe it: it holds the
/// token (`auth.client_token`).
pub fn parse_renewal(v: &mut Value) -> Duration {
    let ttl = vault_seconds(&v["auth"]["lease_duration"]);
    wipe(v);
    ttl
}

/// Turn one `sys/internal/ui/mounts` entry into a KV mount, if it is one.
fn parse_mount(path: &str, d: &Value) -> Option<KvMount> {
    let kind = d["type"].as_str()?;
    if kind != "kv" && kind != "generic" {
        return None;
    }
    let version = match d["options"]["version"].as_str() {
        Some("2") => KvVersion::V2,
        _ => KvVersion::V1,
    };
    Some(KvMount {
        path: path.trim_matches('/').to_string(),
        version,
    })
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
        tls |= lower.contains("certificate") || lower.contains("tls") || lower.contains("alert");
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

/// The error of an answer that means "not now" (429, 502-504, sealed, a
/// 500 during a leader election): retried, and never answered from.
fn not_now(status: StatusCode, body: &[u8]) -> Option<VaultError> {
    if !matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504) {
        return None;
    }
    Some(status_error(status, body)).filter(VaultError::is_retryable)
}

/// First retry after ~100 ms, doubling up to 2 s; "equal jitter" (half
/// fixed, half random) so that many clients retrying after one outage spread
/// out instead of arriving together.
fn backoff(attempt: u32) -> Duration {
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
struct Breaker(Mutex<Option<Down>>);

struct Down {
    error: VaultError,
    /// When the next request may go out as a probe.
    probe_at: Instant,
}

impl Breaker {
    /// Err when Vault is known down and no probe is due.
    fn admit(&self, timeout: Duration) -> Result<(), VaultError> {
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

    fn answered(&self) {
        if let Some(down) = self.0.lock().expect("breaker lock").take() {
            tracing::info!(was = %down.error, "Vault is reachable again");
        }
    }

    fn failed(&self, e: &VaultError, timeout: Duration) {
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

/// Map an HTTP error status. Vault's `errors` are included (capped): they
/// name paths and reasons, never values.
fn status_error(status: StatusCode, body: &[u8]) -> VaultError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v["errors"].as_array().map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        })
        .unwrap_or_default();
    // Capped, and on one line: a hostile answer cannot forge log lines.
    let message: String = message
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    match status.as_u16() {
        403 => VaultError::Forbidden,
        404 => VaultError::NotFound,
        429 => VaultError::RateLimited,
        503 if message.contains("sealed") => VaultError::Sealed,
        500 if message.contains("active cluster node not found") => VaultError::NoLeader,
        s => VaultError::Http { status: s, message },
    }
}

/// The URL of API path `path` (below `/v1/`), or `UnsafePath` when the
/// request would not reach exactly that path. Every request is built here,
/// so no name, whatever Vault or a user chose, can move a request out of
/// the mount it belongs to: a `.` or `..` segment would be collapsed by the
/// URL library (escaped or not, `%2E%2E` included), an empty one may be
/// cleaned away by the server, and Vault decodes `%2F` into a separator, so
/// a slash is one whatever its escaping. The final check holds whatever
/// the escaping.
pub fn request_url(base: &Url, path: &str) -> Result<Url, VaultError> {
    let mut segments = path.split('/').peekable();
    while let Some(seg) = segments.next() {
        // Only the last may be empty: a trailing slash names a folder.
        let last = segments.peek().is_none();
        // NUL: Vault answers 400 to it; no name of its holds one.
        if seg == "." || seg == ".." || seg.contains('\0') || (seg.is_empty() && !last) {
            return Err(unsafe_path(path));
        }
    }
    let want = format!(
        "{}/v1/{}",
        base.path().trim_end_matches('/'),
        escape_path(path)
    );
    let mut u = base.clone();
    u.set_path(&want);
    u.set_query(None);
    u.set_fragment(None);
    if u.path() != want {
        return Err(unsafe_path(path));
    }
    Ok(u)
}

fn unsafe_path(path: &str) -> VaultError {
    // Debug-quoted: the name may hold control characters.
    let e = VaultError::UnsafePath(format!("{path:?}"));
    tracing::warn!(error = %e, "request refused");
    e
}

/// Every byte of a segment but RFC 3986's unreserved ones is escaped, so
/// names with `%`, `?`, `#`, spaces or unicode reach Vault as themselves.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn escape_path(path: &str) -> String {
    let segments: Vec<String> = path
        .split('/')
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect();
    segments.join("/")
}

fn kv_path(mount: &KvMount, section: &str, path: &str) -> String {
    match (mount.version, path.is_empty()) {
        (KvVersion::V1, true) => format!("{}/", mount.path),
        (KvVersion::V1, false) => format!("{}/{path}", mount.path),
        (KvVersion::V2, _) => format!("{}/{section}/{path}", mount.path),
    }
}

/// Parse the keys of a LIST answer.
pub fn parse_list(v: &Value) -> Result<Vec<String>, VaultError> {
    let keys = v["data"]["keys"]
        .as_array()
        .ok_or_else(|| VaultError::BadResponse("LIST answer without data.keys".into()))?;
    Ok(keys
        .iter()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect())
}

/// Parse a KV read answer (status 200, or 404 for a deleted v2 version).
pub fn parse_read(
    version: KvVersion,
    status: StatusCode,
    mut v: Value,
) -> Result<Secret, VaultError> {
    let result = match version {
        KvVersion::V1 => match v.get_mut("data").map(Value::take) {
            Some(Value::Object(m)) if status.is_success() => Ok(Secret::from_data(m, None)),
            _ if !status.is_success() => Err(VaultError::NotFound),
            _ => Err(VaultError::BadResponse("KV v1 answer without data".into())),
        },
        KvVersion::V2 => {
            // get_mut, never `v["data"]`: IndexMut panics on a non-object,
            // and the body is the server's to choose (tests/fuzz.rs).
            let mut d = v.get_mut("data");
            let meta = d
                .as_deref_mut()
                .and_then(|d| d.get_mut("metadata"))
                .map_or(Value::Null, Value::take);
            let mtime = meta["created_time"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok());
            let gone = meta["deletion_time"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
                || meta["destroyed"].as_bool() == Some(true);
            match d.and_then(|d| d.get_mut("data")).map(Value::take) {
                Some(Value::Object(m)) if status.is_success() && !gone => {
                    Ok(Secret::from_data(m, mtime))
                }
                _ if meta.is_object() && (gone || !status.is_success()) => {
                    Ok(Secret::deleted(mtime))
                }
                _ if !status.is_success() => Err(VaultError::NotFound),
                _ => Err(VaultError::BadResponse(
                    "KV v2 answer without data.data".into(),
                )),
            }
        }
    };
    wipe(&mut v);
    result
}

/// Parse a KV v2 metadata answer.
pub fn parse_metadata(mut v: Value) -> Result<Metadata, VaultError> {
    let result = match v.get_mut("data") {
        Some(Value::Object(d)) => {
            let mut live: Vec<u64> = d
                .get("versions")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(_, m)| {
                    let deleted = m["deletion_time"].as_str().is_some_and(|t| !t.is_empty());
                    !deleted && m["destroyed"].as_bool() != Some(true)
                })
                .filter_map(|(n, _)| n.parse().ok())
                .filter(|n| *n > 0)
                .collect();
            live.sort_unstable();
            let mtime = d
                .get("updated_time")
                .and_then(Value::as_str)
                .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok());
            let mut doc = SecretBuf::default();
            // serde_json's map is ordered by key: the keys come out sorted.
            let _ = serde_json::to_writer_pretty(&mut doc, &*d);
            doc.extend(b"\n");
            Ok(Metadata {
                document: Arc::new(Secret::document(doc.0, mtime)),
                live,
            })
        }
        _ => Err(VaultError::BadResponse(
            "KV v2 metadata answer without data".into(),
        )),
    };
    wipe(&mut v);
    result
}

impl SecretStore for VaultClient {
    async fn mounts(&self) -> Result<Vec<KvMount>, VaultError> {
        if !self.cfg.kv_filter.is_empty() {
            let mut out = Vec::new();
            for p in &self.cfg.kv_filter {
                match self.mount_info(p).await? {
                    Some(m) => out.push(m),
                    None => return Err(VaultError::BadResponse(format!("{p} is not a KV mount"))),
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
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn kv_paths() {
        let v1 = KvMount {
            path: "kv1".into(),
            version: KvVersion::V1,
        };
        let v2 = KvMount {
            path: "team/kv".into(),
            version: KvVersion::V2,
        };
        assert_eq!(kv_path(&v1, "data", "a/b"), "kv1/a/b");
        assert_eq!(kv_path(&v1, "metadata", ""), "kv1/");
        assert_eq!(kv_path(&v2, "data", "a/b"), "team/kv/data/a/b");
        assert_eq!(kv_path(&v2, "metadata", ""), "team/kv/metadata/");
    }

    /// Names a crafted file name or a hostile answer could put in a path:
    /// every form of `.`, `..`, `/`, `?`, `#` and NUL, plain or escaped.
    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                ".",
                "..",
                "...",
                "%2E",
                "%2E%2E",
                ".%2e",
                "%2e.",
                "%2e%2e",
                "%252E%252E",
                "/",
                "../..",
                "a/../b",
                "?",
                "?list=true",
                "#",
                "#x",
                "\0",
                "..\0",
                "\\..",
                "..\\",
                "%2F",
                "%3F",
                "%23",
                "%00",
                "",
                " ",
                "\t..",
                "..\n",
            ])
            .prop_map(str::to_string),
            "[a-z.]{1,4}",
            any::<String>(),
        ]
    }

    fn decode(s: &str) -> String {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .expect("escaped from UTF-8")
            .into_owned()
    }

    proptest! {
        /// Whatever the names, a request goes exactly to the path it was
        /// built for: inside its mount and its API section, under `/v1/`,
        /// with no segment that could climb out (or it is refused).
        #[test]
        fn request_paths_stay_in_their_mount(
            mount in prop_oneof![
                "[a-z]{1,5}(/[a-z]{1,5}){0,2}",
                prop::sample::select(vec!["..", "a/..", ".", "a//b", "a/./b"]).prop_map(str::to_string),
            ],
            v2 in any::<bool>(),
            section in prop::sample::select(vec!["data", "metadata"]),
            segments in prop::collection::vec(segment(), 0..5),
        ) {
            let base = Url::parse("http://127.0.0.1:8200/prefix/").unwrap();
            let m = KvMount {
                path: mount.clone(),
                version: if v2 { KvVersion::V2 } else { KvVersion::V1 },
            };
            let path = kv_path(&m, section, &segments.join("/"));
            let safe = |s: &str| s != "." && s != ".." && !s.contains('\0');
            match request_url(&base, &path) {
                Ok(u) => {
                    prop_assert_eq!(u.host_str(), Some("127.0.0.1"));
                    prop_assert_eq!(u.query(), None);
                    prop_assert_eq!(u.fragment(), None);
                    let rest = u.path().strip_prefix("/prefix/v1/").expect("under /v1/");
                    let got: Vec<String> = rest.split('/').map(decode).collect();
                    let want: Vec<&str> = path.split('/').collect();
                    prop_assert_eq!(&got, &want);
                    prop_assert!(got.iter().all(|s| safe(s)), "{:?}", got);
                    let mut inside = mount.split('/').collect::<Vec<_>>();
                    if v2 {
                        inside.push(section);
                    }
                    prop_assert!(got.starts_with(&inside.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
                }
                Err(e) => {
                    prop_assert!(matches!(e, VaultError::UnsafePath(_)));
                    let bad = path.split('/').enumerate().any(|(i, s)| {
                        !safe(s) || (s.is_empty() && i + 1 < path.split('/').count())
                    });
                    prop_assert!(bad, "refused a safe path {:?}", path);
                }
            }
        }
    }

    #[test]
    fn escapes_segments() {
        assert_eq!(escape_path("a b/100%/ü?#"), "a%20b/100%25/%C3%BC%3F%23");
        assert_eq!(escape_path("secret/data/x"), "secret/data/x");
    }

    #[test]
    fn reads_v2_and_deleted() {
        let ok = json!({"data": {"data": {"k": "v"}, "metadata": {"created_time": "2024-01-02T03:04:05.123456789Z", "deletion_time": "", "destroyed": false}}});
        let s = parse_read(KvVersion::V2, StatusCode::OK, ok).unwrap();
        assert_eq!(s.value("k").unwrap().as_slice(), b"v");
        assert!(s.mtime.is_some());
        let del = json!({"data": {"data": null, "metadata": {"created_time": "2024-01-02T03:04:05Z", "deletion_time": "2024-01-03T00:00:00Z", "destroyed": false}}});
        assert!(
            parse_read(KvVersion::V2, StatusCode::NOT_FOUND, del)
                .unwrap()
                .deleted
        );
        assert_eq!(
            parse_read(KvVersion::V2, StatusCode::NOT_FOUND, json!({"errors": []})).unwrap_err(),
            VaultError::NotFound
        );
        assert!(matches!(
            parse_read(KvVersion::V2, StatusCode::OK, json!({"data": {"data": 5}})),
            Err(VaultError::BadResponse(_))
        ));
        assert!(matches!(
            parse_read(KvVersion::V1, StatusCode::OK, json!({"data": "x"})),
            Err(VaultError::BadResponse(_))
        ));
        for junk in [
            json!([1]),
            json!(true),
            json!({"data": [1]}),
            json!({"data": 5}),
        ] {
            for v in [KvVersion::V1, KvVersion::V2] {
                assert!(
                    parse_read(v, StatusCode::OK, junk.clone()).is_err(),
                    "{junk}"
                );
            }
        }
    }

    #[test]
    fn status_errors() {
        assert_eq!(
            status_error(StatusCode::FORBIDDEN, b""),
            VaultError::Forbidden
        );
        assert_eq!(
            status_error(
                StatusCode::SERVICE_UNAVAILABLE,
                br#"{"errors":["Vault is sealed"]}"#
            ),
            VaultError::Sealed
        );
        assert!(matches!(
            status_error(StatusCode::INTERNAL_SERVER_ERROR, b"not json"),
            VaultError::Http { status: 500, .. }
        ));
    }

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

    #[test]
    fn an_election_is_transient() {
        let body = br#"{"errors":["local node not active but active cluster node not found"]}"#;
        assert_eq!(
            status_error(StatusCode::INTERNAL_SERVER_ERROR, body),
            VaultError::NoLeader
        );
        assert_eq!(
            not_now(StatusCode::INTERNAL_SERVER_ERROR, body),
            Some(VaultError::NoLeader)
        );
        // Any other 500 is an answer: not retried.
        assert_eq!(not_now(StatusCode::INTERNAL_SERVER_ERROR, b"{}"), None);
        assert!(not_now(StatusCode::SERVICE_UNAVAILABLE, b"").is_some());
        assert_eq!(not_now(StatusCode::NOT_FOUND, b""), None);
    }

    #[test]
    fn status_error_message_is_one_capped_line() {
        let body = format!(
            r#"{{"errors":["line1\nFAKE LOG LINE\r{}"]}}"#,
            "x".repeat(500)
        );
        let VaultError::Http { message, .. } =
            status_error(StatusCode::INTERNAL_SERVER_ERROR, body.as_bytes())
        else {
            panic!()
        };
        assert!(!message.contains('\n') && !message.contains('\r'));
        assert_eq!(message.chars().count(), 200);
    }

    #[test]
    fn durations_from_vault_are_clamped() {
        let huge = json!({"data": {"ttl": u64::MAX, "creation_ttl": u64::MAX,
                                   "renewable": true, "expire_time": "x"}});
        let i = parse_token_info(&mut { huge });
        assert_eq!(
            (i.ttl, i.creation_ttl),
            (MAX_VAULT_DURATION, MAX_VAULT_DURATION)
        );
        for junk in [json!(-1), json!(1e300), json!("5"), json!(null)] {
            let i = parse_token_info(&mut json!({"data": {"ttl": junk}}));
            assert_eq!(i.ttl, Duration::ZERO);
        }
        let r = parse_renewal(&mut json!({"auth": {"lease_duration": u64::MAX}}));
        assert_eq!(r, MAX_VAULT_DURATION);
    }

    #[test]
    fn token_answers_are_wiped_after_parsing() {
        let mut v = json!({"data": {"id": "hvs.TOKEN", "accessor": "acc", "ttl": 60,
                                    "renewable": true, "expire_time": "2030-01-01T00:00:00Z",
                                    "display_name": "token-me", "policies": ["p"]}});
        let i = parse_token_info(&mut v);
        assert_eq!((i.ttl.as_secs(), i.renewable, i.expires), (60, true, true));
        assert_eq!(i.display_name, "token-me");
        assert_eq!(v["data"]["id"], "");
        assert!(!v.to_string().contains("TOKEN"), "{v}");
        let mut v = json!({"auth": {"client_token": "hvs.TOKEN", "lease_duration": 30}});
        assert_eq!(parse_renewal(&mut v), Duration::from_secs(30));
        assert_eq!(v["auth"]["client_token"], "");
    }

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

    #[test]
    fn userinfo_is_redacted() {
        for (given, shown) in [
            ("https://u:p@vault:8200/x", "https://***@vault:8200/x"),
            ("http://:p@h", "http://***@h"),
            ("http://u@h/a@b", "http://***@h/a@b"),
            ("u:p@h:1", "***@h:1"),
            ("http://u:p@[::1", "http://***@[::1"),
            ("https://vault:8200/a@b", "https://vault:8200/a@b"),
            ("http://h?x=a@b", "http://h?x=a@b"),
        ] {
            assert_eq!(redact_userinfo(given), shown);
        }
        let cfg = ClientConfig {
            address: Url::parse("https://user:Pa55@vault:8200").unwrap(),
            namespace: None,
            timeout: Duration::from_secs(1),
            kv_filter: Vec::new(),
            tls: TlsConfig::default(),
            max_response_bytes: 1,
            max_requests: 1,
            max_retries: None,
        };
        let d = format!("{cfg:?}");
        assert!(
            d.contains("vault:8200") && !d.contains("Pa55") && !d.contains("user"),
            "{d}"
        );
    }

    #[test]
    fn mounts_parse() {
        let d = json!({"type": "kv", "options": {"version": "2"}});
        assert_eq!(parse_mount("secret/", &d).unwrap().version, KvVersion::V2);
        let d = json!({"type": "kv", "options": null});
        assert_eq!(parse_mount("old/", &d).unwrap().version, KvVersion::V1);
        assert!(parse_mount("c/", &json!({"type": "cubbyhole"})).is_none());
        assert!(parse_list(&json!({"data": {}})).is_err());
    }
}
