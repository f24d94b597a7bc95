//! The HTTP client against a real OpenBao, in this process and with no
//! mount: the protocol it speaks, built as the daemon builds it.

use std::sync::Arc;

use crate::harness::*;

#[tokio::test]
async fn http2_over_tls_and_http1_in_the_clear() {
    use clap::Parser;
    use vaultfs::testing::auth::{TokenOrigin, TokenSource};
    use vaultfs::testing::cli::{Cli, Command as Sub};
    use vaultfs::testing::vault::VaultClient;

    async fn version(b: &Bao) -> reqwest::Version {
        let Sub::Mount(args) = Cli::parse_from(["vaultfs", "mount"]).command else {
            unreachable!()
        };
        let ca = b.ca_file().map(|p| p.to_string_lossy().into_owned());
        let env = |k: &str| match k {
            "VAULT_ADDR" => Some(b.addr.clone()),
            "VAULT_CACERT" => ca.clone(),
            _ => None,
        };
        let cfg = args.client_config(&env).unwrap();
        let token = TokenSource::fixed(TokenOrigin::Env("VAULT_TOKEN"), ROOT_TOKEN.into());
        let c = VaultClient::new(cfg, Arc::new(token)).unwrap();
        c.http_version().await.unwrap()
    }
    assert_eq!(version(&Bao::start(true)).await, reqwest::Version::HTTP_2);
    assert_eq!(version(Bao::shared()).await, reqwest::Version::HTTP_11);
}
