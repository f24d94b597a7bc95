//! TLS settings for the Vault client, following the Vault CLI's variables
//! (see docs/auth.md). rustls only: no OpenSSL at build or run time.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Certificate, ClientBuilder, Identity, Url};
use zeroize::Zeroizing;

#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    pub ca_cert: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub server_name: Option<String>,
    pub skip_verify: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid {what} in {path}: {message}")]
    BadPem {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("cannot build HTTP client: {0}")]
    Client(String),
    #[error("TLS settings: {0}")]
    Tls(String),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn bad_pem(what: &'static str, path: &Path, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::BadPem {
        what,
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The certificates of one PEM file; an error when it holds none.
fn pem_certs(what: &'static str, path: &Path) -> Result<Vec<Certificate>, ConfigError> {
    let pem = read(what, path)?;
    let certs = Certificate::from_pem_bundle(&pem).map_err(|e| bad_pem(what, path, e))?;
    if certs.is_empty() {
        return Err(bad_pem(what, path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// Every certificate in a directory's files, like the Vault CLI's
/// VAULT_CAPATH. Files that hold no PEM certificate (READMEs, keys, hash
/// symlinks to files already read count twice harmlessly) are skipped; a
/// directory without any certificate is an error.
fn dir_certs(dir: &Path) -> Result<Vec<Certificate>, ConfigError> {
    const WHAT: &str = "CA directory";
    let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::ReadFile {
        what: WHAT,
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in &files {
        match pem_certs("CA certificate", f) {
            Ok(c) => out.extend(c),
            Err(e) => tracing::debug!(error = %e, "skipping file in CA directory"),
        }
    }
    if out.is_empty() {
        return Err(bad_pem(WHAT, dir, "no PEM certificate in any file"));
    }
    Ok(out)
}

/// The operating system's CA bundle, found where Go (and so the Vault CLI)
/// looks on Linux; `SSL_CERT_FILE` first. Best effort: anything unreadable
/// is skipped, the built-in Mozilla roots are there anyway.
fn system_certs() -> Vec<Certificate> {
    const BUNDLES: &[&str] = &[
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/ca-bundle.pem",
        "/etc/pki/tls/cacert.pem",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ];
    let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    from_env
        .into_iter()
        .chain(BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .and_then(|p| pem_certs("system CA bundle", &p).ok())
        .unwrap_or_default()
}

/// The client certificate and key as one PEM identity. The key bytes are
/// wiped when dropped.
fn identity(cert: &Path, key: &Path) -> Result<Identity, ConfigError> {
    let mut pem = Zeroizing::new(read("client key", key)?);
    pem.push(b'\n');
    pem.extend_from_slice(&read("client certificate", cert)?);
    Identity::from_pem(&pem).map_err(|e| {
        ConfigError::Tls(format!(
            "client certificate {} / key {}: {e} (expected PEM: certificate, and a PKCS#8, RSA or EC key)",
            cert.display(),
            key.display()
        ))
    })
}

/// Apply CA, client certificate and verification settings. With
/// `system_roots`, the OS bundle is trusted besides the built-in roots when
/// no CA is configured (the Vault CLI trusts the system's CAs then).
pub fn configure(
    mut b: ClientBuilder,
    tls: &TlsConfig,
    address: &Url,
    system_roots: bool,
) -> Result<ClientBuilder, ConfigError> {
    b = b.use_rustls_tls();
    let mut roots = Vec::new();
    if let Some(path) = &tls.ca_cert {
        roots.extend(pem_certs("CA certificate", path)?);
    }
    if let Some(dir) = &tls.ca_path {
        roots.extend(dir_certs(dir)?);
    }
    if roots.is_empty() {
        if system_roots && !tls.skip_verify {
            roots = system_certs();
        }
    } else {
        // Like the Vault CLI: a configured CA replaces the default roots.
        b = b.tls_built_in_root_certs(false);
    }
    for c in roots {
        b = b.add_root_certificate(c);
    }
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => b = b.identity(identity(cert, key)?),
        (None, None) => {}
        _ => {
            return Err(ConfigError::Tls(
                "a client certificate needs both VAULT_CLIENT_CERT and VAULT_CLIENT_KEY \
                 (or --client-cert and --client-key)"
                    .into(),
            ))
        }
    }
    if tls.skip_verify {
        tracing::warn!(
            "VAULT_SKIP_VERIFY / --tls-skip-verify: Vault's certificate is NOT verified; \
             anyone on the network path can read the token and the secrets"
        );
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(name) = server_name(tls, address)? {
        b = b.dns_resolver(Arc::new(ServerNameResolver {
            name: name.to_string(),
            real: real_host(address),
        }));
    }
    Ok(b)
}

/// The TLS server name to use instead of the address's host, if any.
fn server_name<'a>(tls: &'a TlsConfig, address: &Url) -> Result<Option<&'a str>, ConfigError> {
    let Some(name) = tls.server_name.as_deref().filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if address.scheme() != "https" {
        return Ok(None);
    }
    if name.parse::<IpAddr>().is_ok() || name.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
        return Err(ConfigError::Tls(format!(
            "VAULT_TLS_SERVER_NAME / --tls-server-name {name:?} must be a DNS name, not an IP address"
        )));
    }
    Ok(Some(name))
}

/// The address requests go to. reqwest has no SNI override, so with a TLS
/// server name the URL carries that name (it is then what SNI and
/// certificate verification see) and [`ServerNameResolver`] resolves it to
/// the real host. The HTTP Host header carries the server name too, which
/// Vault ignores.
pub fn request_address(address: &Url, tls: &TlsConfig) -> Result<Url, ConfigError> {
    let mut u = address.clone();
    if let Some(name) = server_name(tls, address)? {
        u.set_host(Some(name))
            .map_err(|e| ConfigError::Tls(format!("invalid TLS server name {name:?}: {e}")))?;
    }
    Ok(u)
}

/// The address's host as a resolver takes it (IPv6 without brackets).
fn real_host(address: &Url) -> String {
    let h = address.host_str().unwrap_or_default();
    h.trim_start_matches('[').trim_end_matches(']').to_string()
}

/// Resolves the TLS server name to the address's real host; every other
/// name as usual.
struct ServerNameResolver {
    name: String,
    real: String,
}

impl Resolve for ServerNameResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = if name.as_str().eq_ignore_ascii_case(&self.name) {
            self.real.clone()
        } else {
            name.as_str().to_string()
        };
        Box::pin(async move {
            // The port is ignored: reqwest uses the URL's.
            let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// What to do about a TLS failure, from the TLS stack's message. Appended
/// to the error so the mount-time message names the fix.
pub fn explain(message: &str) -> Option<&'static str> {
    let m = message.to_ascii_lowercase();
    let hint = if m.contains("invalidcontenttype") {
        "the server does not speak TLS at this address (it answered in plain HTTP): if it \
         serves plain HTTP, use an http:// address (VAULT_ADDR / --address)"
    } else if m.contains("unknownissuer") || m.contains("unknown issuer") {
        "Vault's certificate is not signed by a CA vaultfs trusts: set VAULT_CACERT or --ca-cert \
         to the CA's PEM file (or VAULT_CAPATH / --ca-path to a directory of them)"
    } else if m.contains("not valid for name") || m.contains("notvalidforname") {
        "the host in VAULT_ADDR is not a name in Vault's certificate: use an address that is, \
         or set VAULT_TLS_SERVER_NAME / --tls-server-name to one that is"
    } else if m.contains("expired") || m.contains("not valid yet") {
        "Vault's certificate is outside its validity period (or this machine's clock is wrong)"
    } else if m.contains("certificaterequired")
        || m.contains("handshakefailure") && m.contains("alert")
    {
        "Vault requires a client certificate: set VAULT_CLIENT_CERT and VAULT_CLIENT_KEY \
         (or --client-cert and --client-key)"
    } else if m.contains("alert") && (m.contains("unknownca") || m.contains("badcertificate")) {
        "Vault did not accept the client certificate (VAULT_CLIENT_CERT): it must be \
         signed by a CA that Vault's listener trusts (tls_client_ca_file)"
    } else if m.contains("invalid peer certificate") {
        "Vault's certificate was rejected: check VAULT_CACERT / --ca-cert"
    } else {
        return None;
    };
    Some(hint)
}

/// Over TLS 1.3 and HTTP/2, a listener that refuses the client
/// certificate (or its absence) sends its alert after the handshake, and
/// what reaches us is often only the closed connection ("connection
/// closed", "channel closed", "broken pipe"). At mount time that is almost
/// always the cause, so say what to check.
pub fn explain_closed(message: &str, tls: &TlsConfig, address: &Url) -> Option<&'static str> {
    let closed = [
        "connection closed",
        "channel closed",
        "broken pipe",
        "connection reset",
    ]
    .iter()
    .any(|c| message.contains(c));
    if address.scheme() != "https" || !closed {
        return None;
    }
    Some(if tls.client_cert.is_some() {
        "Vault closed the TLS connection: if its listener requires client certificates, \
         VAULT_CLIENT_CERT must be signed by a CA that Vault's listener trusts \
         (tls_client_ca_file)"
    } else {
        "Vault closed the TLS connection: if its listener requires client certificates, \
         set VAULT_CLIENT_CERT and VAULT_CLIENT_KEY (or --client-cert and --client-key)"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: Option<&str>) -> TlsConfig {
        TlsConfig {
            server_name: name.map(str::to_string),
            ..TlsConfig::default()
        }
    }

    #[test]
    fn server_name_swaps_the_host_over_https_only() {
        let a = Url::parse("https://127.0.0.1:8200/").unwrap();
        let u = request_address(&a, &cfg(Some("vault.example"))).unwrap();
        assert_eq!(u.as_str(), "https://vault.example:8200/");
        assert_eq!(real_host(&a), "127.0.0.1");
        let h = Url::parse("http://127.0.0.1:8200/").unwrap();
        assert_eq!(request_address(&h, &cfg(Some("x"))).unwrap(), h);
        assert_eq!(request_address(&a, &cfg(None)).unwrap(), a);
        assert!(request_address(&a, &cfg(Some("10.0.0.1"))).is_err());
        let v6 = Url::parse("https://[::1]:8200/").unwrap();
        assert_eq!(real_host(&v6), "::1");
    }

    #[test]
    fn hints_name_the_fix() {
        let unknown = "client error (Connect): invalid peer certificate: UnknownIssuer";
        assert!(explain(unknown).unwrap().contains("VAULT_CACERT"));
        let name = "invalid peer certificate: certificate not valid for name \"x\"; certificate is only valid for y";
        assert!(explain(name).unwrap().contains("--tls-server-name"));
        let client = "received fatal alert: CertificateRequired";
        assert!(explain(client).unwrap().contains("VAULT_CLIENT_CERT"));
        assert!(explain("connection refused").is_none());
    }

    #[test]
    fn client_cert_needs_both_halves() {
        let t = TlsConfig {
            client_cert: Some("/nonexistent".into()),
            ..TlsConfig::default()
        };
        let a = Url::parse("https://127.0.0.1:8200/").unwrap();
        let e = configure(reqwest::Client::builder(), &t, &a, false).unwrap_err();
        assert!(e.to_string().contains("VAULT_CLIENT_KEY"), "{e}");
    }

    #[test]
    fn ca_dir_skips_non_pem_and_needs_one_cert() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("README"), "not a cert").unwrap();
        assert!(dir_certs(d.path()).is_err());
    }
}
