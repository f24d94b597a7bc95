//! vaultfs: HashiCorp Vault / OpenBao KV secrets as a read-only FUSE filesystem.
//!
//! Layers, outermost first: `cli` (flags and environment) → `daemon` (the
//! mount's life) → `fs` (FUSE adapter) → `tree` (names and semantics) →
//! `cache` → `vault` (HTTP client behind the `SecretStore` trait).

pub mod assets;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod daemon;
pub mod env;
pub mod error;
pub mod fs;
pub mod logging;
pub mod mount_helper;
pub mod mountpoint;
pub mod naming;
pub mod private;
pub mod readiness;
pub mod renew;
pub mod secret;
#[cfg(test)]
mod semantics_tests;
pub mod store;
pub mod tls;
pub mod tree;
pub mod vault;
