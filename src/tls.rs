//! TLS settings for the Vault client, following the Vault CLI's variables.

use reqwest::{ClientBuilder, Url};

use crate::vault::{ConfigError, TlsConfig};

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn bad_pem(what: &'static str, path: &std::path::Path, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::BadPem {
        what,
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Apply CA, client certificate and verification settings.
pub fn configure(
    mut b: ClientBuilder,
    tls: &TlsConfig,
    _address: &Url,
) -> Result<ClientBuilder, ConfigError> {
    b = b.use_rustls_tls();
    if let Some(path) = &tls.ca_cert {
        let pem = read("CA certificate", path)?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| bad_pem("CA certificate", path, e))?;
        if certs.is_empty() {
            return Err(bad_pem("CA certificate", path, "no certificate found"));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if tls.skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    Ok(b)
}
