//! Vault's HTTP responses read: statuses become errors, bodies become secrets,
//! keys, metadata and token details. Bodies that hold the token are wiped
//! once parsed.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::error::VaultError;
use crate::secret::{wipe, Secret};
use crate::store::{KvMount, KvVersion, Metadata};

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
}

/// The longest duration taken from a Vault answer (TTLs, lease durations).
/// Vault's own ceiling is 32 days unless raised; an answer above this one is
/// broken or hostile, and clamping keeps every `Instant + Duration` built
/// from it far from overflowing, which would panic.
pub const MAX_VAULT_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A whole number of seconds from a Vault answer, clamped; anything that is
/// not a non-negative integer counts as 0.
fn vault_seconds(v: &Value) -> Duration {
    Duration::from_secs(v.as_u64().unwrap_or(0)).min(MAX_VAULT_DURATION)
}

/// Parse a `lookup-self` answer, then wipe it: it holds the token itself
/// (`data.id`), and the parsed copy must not linger in freed memory.
pub(super) fn parse_token_info(v: &mut Value) -> TokenInfo {
    let d = &v["data"];
    let info = TokenInfo {
        ttl: vault_seconds(&d["ttl"]),
        expires: !d["expire_time"].is_null(),
        renewable: d["renewable"].as_bool().unwrap_or(false),
        creation_ttl: vault_seconds(&d["creation_ttl"]),
    };
    wipe(v);
    info
}

/// Parse a `renew-self` answer (the new TTL), then wipe it: it holds the
/// token (`auth.client_token`).
pub(super) fn parse_renewal(v: &mut Value) -> Duration {
    let ttl = vault_seconds(&v["auth"]["lease_duration"]);
    wipe(v);
    ttl
}

/// Turn one `sys/internal/ui/mounts` entry into a KV mount, if it is one.
pub(super) fn parse_mount(path: &str, d: &Value) -> Option<KvMount> {
    let kind = d["type"].as_str()?;
    if kind != "kv" && kind != "generic" {
        return None;
    }
    let version = match d["options"]["version"].as_str() {
        Some("2") => KvVersion::V2,
        _ => KvVersion::V1,
    };
    Some(KvMount {
        path: path.trim_matches('/').into(),
        version,
    })
}

/// The error of an answer that means "not now" (429, 502-504, sealed, a
/// 500 during a leader election): retried, and never answered from.
pub(super) fn not_now(status: StatusCode, body: &[u8]) -> Option<VaultError> {
    if !matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504) {
        return None;
    }
    Some(status_error(status, body)).filter(VaultError::is_retryable)
}

/// Map an HTTP error status. Vault's `errors` are included (capped): they
/// name paths and reasons, never values. A body that is not JSON is no
/// answer of Vault's API (Go's "Client sent an HTTP request to an HTTPS
/// server", a proxy's error page): its first line is included the same way.
pub(super) fn status_error(status: StatusCode, body: &[u8]) -> VaultError {
    let message = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(1024)])
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_string(),
    };
    let message = if message.contains("HTTP request to an HTTPS server") {
        format!("{message} (use an https:// address: VAULT_ADDR / --address)")
    } else {
        message
    };
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
            // and the body is the server's to choose (src/fuzz_tests.rs).
            let mut d = v.get_mut("data");
            let meta = d
                .as_deref_mut()
                .and_then(|d| d.get_mut("metadata"))
                .map_or(Value::Null, Value::take);
            let mtime = meta["created_time"]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok());
            let number = meta["version"].as_u64();
            let gone = meta["deletion_time"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
                || meta["destroyed"].as_bool() == Some(true);
            match d.and_then(|d| d.get_mut("data")).map(Value::take) {
                Some(Value::Object(m)) if status.is_success() && !gone => {
                    Ok(Secret::from_data(m, mtime).with_version(number))
                }
                _ if meta.is_object() && (gone || !status.is_success()) => {
                    Ok(Secret::deleted(mtime).with_version(number))
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
pub(super) fn parse_metadata(mut v: Value) -> Result<Metadata, VaultError> {
    let result = match v.get_mut("data") {
        Some(Value::Object(d)) => {
            let live: Vec<u64> = d
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
            let mtime = d
                .get("updated_time")
                .and_then(Value::as_str)
                .and_then(|t| humantime::parse_rfc3339_weak(t.trim_end_matches('Z')).ok());
            Ok(Metadata::new(d, live, mtime))
        }
        _ => Err(VaultError::BadResponse(
            "KV v2 metadata answer without data".into(),
        )),
    };
    wipe(&mut v);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
        // Not JSON: its first line, as Go's HTTPS listener answers plain HTTP.
        let go = b"Client sent an HTTP request to an HTTPS server.\n";
        let VaultError::Http {
            status: 400,
            message,
        } = status_error(StatusCode::BAD_REQUEST, go)
        else {
            panic!()
        };
        assert!(message.starts_with("Client sent an HTTP request to an HTTPS server."));
        assert!(message.contains("use an https:// address"), "{message}");
        let forged = format!("\n \r\nfirst\x1b[2J\nFAKE LOG LINE{}", "y".repeat(5000));
        let VaultError::Http { message, .. } =
            status_error(StatusCode::BAD_GATEWAY, forged.as_bytes())
        else {
            panic!()
        };
        assert_eq!(message, "first [2J");
    }

    /// `.metadata.json` holds what a secret's writer sets in its custom
    /// metadata: it must stay JSON that reads back to Vault's exact strings,
    /// with no raw control character (each is a `\u` escape or `\n`...).
    #[test]
    fn metadata_document_reads_back_exactly_with_no_raw_control_character() {
        let hostile = [
            "\"}, \"injected\": {\"",
            "a\nb\rc\u{0}d\u{1b}[2J",
            "\u{2028}\u{2029}\u{85}\u{b}\u{c}",
            "$(touch /tmp/x)`id`\\",
            "</script>",
        ];
        let custom: serde_json::Map<String, Value> =
            hostile.iter().map(|v| (v.to_string(), json!(v))).collect();
        let answer = json!({"data": {"custom_metadata": custom,
                                     "versions": {"1": {"deletion_time": ""}}}});
        let m = parse_metadata(answer).unwrap();
        let doc = m
            .document
            .content(&crate::secret::SecretFile::Json)
            .unwrap();
        assert!(
            !doc.iter().any(|&b| b < 0x20 && b != b'\n'),
            "{}",
            String::from_utf8_lossy(doc)
        );
        let back: Value = serde_json::from_slice(doc).unwrap();
        assert_eq!(back["custom_metadata"], Value::Object(custom));
        assert_eq!(back.as_object().unwrap().len(), 2, "{back}");
        assert_eq!(m.live, [1]);
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
        assert_eq!(v["data"]["id"], "");
        assert!(!v.to_string().contains("TOKEN"), "{v}");
        let mut v = json!({"auth": {"client_token": "hvs.TOKEN", "lease_duration": 30}});
        assert_eq!(parse_renewal(&mut v), Duration::from_secs(30));
        assert_eq!(v["auth"]["client_token"], "");
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
