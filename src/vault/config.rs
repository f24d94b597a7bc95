//! What the client is told: where Vault is, which namespace and mounts,
//! deadlines, TLS and limits. Nothing here may show the address's userinfo.

use std::time::Duration;

use reqwest::Url;

use crate::tls::TlsConfig;

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
    pub max_requests: MaxRequests,
    /// Retries of one request; `None`: as many as fit in its deadline.
    pub max_retries: Option<u32>,
}

/// `--max-requests`: a fixed number in flight, or `auto` (learnt from
/// Vault's answers, see `vault::limit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxRequests {
    Fixed(usize),
    Auto,
}

impl std::str::FromStr for MaxRequests {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(MaxRequests::Auto),
            n => n
                .parse()
                .map(MaxRequests::Fixed)
                .map_err(|_| format!("{s:?} is neither a number nor 'auto'")),
        }
    }
}

impl std::fmt::Display for MaxRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxRequests::Fixed(n) => write!(f, "{n}"),
            MaxRequests::Auto => f.write_str("auto"),
        }
    }
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
/// address is shown in errors and logs. An address the client's own parser
/// (WHATWG, which also takes `http:/u:p@h`, `http:///u:p@h` and `\` for `/`)
/// reads without userinfo is shown as given. Any other is shown with
/// everything before its last `@` (ahead of any `?` or `#`) hidden, so that
/// a string that does not parse, or parses with userinfo however it is
/// spelled, never shows what precedes an `@`.
pub fn redact_userinfo(addr: &str) -> String {
    if !addr.contains('@') {
        return addr.to_string();
    }
    if let Ok(mut url) = Url::parse(addr) {
        if matches!(url.scheme(), "http" | "https") {
            if url.username().is_empty() && url.password().is_none() {
                return addr.to_string();
            }
            if url.set_password(None).is_ok() && url.set_username("***").is_ok() {
                return url.to_string();
            }
        }
    }
    // A scheme and the slashes after it are kept so that the error stays
    // readable: `http:` or `https:`, or any scheme followed by `//` (what
    // comes before `//` is a scheme, never userinfo). Any other word before
    // a `:` may be a user name (`user:/pass@h`).
    let scheme = addr
        .find(':')
        .filter(|&i| {
            let s = &addr[..i];
            let word = s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            word && (s.eq_ignore_ascii_case("http")
                || s.eq_ignore_ascii_case("https")
                || addr[i + 1..].starts_with("//"))
        })
        .map_or(0, |i| i + 1);
    let slashes = addr[scheme..]
        .find(|c| c != '/' && c != '\\')
        .map_or(addr.len(), |n| scheme + n);
    let end = addr.find(['?', '#']).unwrap_or(addr.len());
    match addr[slashes..end].rfind('@') {
        Some(at) => format!("{}***@{}", &addr[..slashes], &addr[slashes + at + 1..]),
        None => addr.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_requests_is_a_number_or_auto() {
        assert_eq!("auto".parse(), Ok(MaxRequests::Auto));
        assert_eq!("0".parse(), Ok(MaxRequests::Fixed(0)));
        assert_eq!("64".parse(), Ok(MaxRequests::Fixed(64)));
        for bad in ["", "Auto", "-1", "1.5", "32 "] {
            assert!(bad.parse::<MaxRequests>().is_err(), "{bad:?}");
        }
        assert_eq!(MaxRequests::Auto.to_string(), "auto");
    }

    #[test]
    fn userinfo_is_redacted() {
        for (given, shown) in [
            ("https://u:p@vault:8200/x", "https://***@vault:8200/x"),
            ("http://:p@h", "http://***@h/"),
            ("http://u@h/a@b", "http://***@h/a@b"),
            ("u:p@h:1", "***@h:1"),
            ("http://u:p@[::1", "http://***@[::1"),
            ("https://vault:8200/a@b", "https://vault:8200/a@b"),
            ("http://h?x=a@b", "http://h?x=a@b"),
            ("http:/u:hunter2@h:1", "http://***@h:1/"),
            ("http:///u:hunter2@h", "http://***@h/"),
            ("http:/\\u:hunter2@h", "http://***@h/"),
            ("http:\\/u:hunter2@h", "http://***@h/"),
            ("//u:hunter2@127.0.0.1:1", "//***@127.0.0.1:1"),
            ("https//u:hunter2@vault:8200", "***@vault:8200"),
            ("/u:hunter2@h", "/***@h"),
            ("\\u:hunter2@h/x", "\\***@h/x"),
            ("u:hunter2@h/a@b", "***@b"),
            ("user:/pass@h", "***@h"),
            ("ftp://u:p@h:1", "ftp://***@h:1"),
            ("u:p@h", "***@h"),
            ("HTTP://u:p@[bad", "HTTP://***@[bad"),
        ] {
            assert_eq!(redact_userinfo(given), shown, "{given}");
        }
        let cfg = ClientConfig {
            address: Url::parse("https://user:Pa55@vault:8200").unwrap(),
            namespace: None,
            timeout: Duration::from_secs(1),
            kv_filter: Vec::new(),
            tls: TlsConfig::default(),
            max_response_bytes: 1,
            max_requests: MaxRequests::Fixed(1),
            max_retries: None,
        };
        let d = format!("{cfg:?}");
        assert!(
            d.contains("vault:8200") && !d.contains("Pa55") && !d.contains("user"),
            "{d}"
        );
    }
}
