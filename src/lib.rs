//! vaultfs: HashiCorp Vault / OpenBao KV secrets as a read-only FUSE filesystem.
//!
//! Layers, outermost first (docs/architecture.md): `cli` (flags and
//! environment → settings) → `daemon` (the mount's life) → `fuse` (the FUSE
//! shim) → `fs` (the filesystem core, asking `fs::kernel_cache` what the
//! kernel may keep) → `tree` (names and semantics, with its answer cache)
//! → `store` (the `SecretStore` trait) ← `vault` (the HTTP client
//! implementing it).
//!
//! Public: what `main.rs` runs (`cli`, `daemon`, `assets`, `mount_helper`)
//! and what the integration tests drive directly (the tree over a store,
//! the client's parsers and request paths, the token source, the mount table).
//! Everything else is private to the crate.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod assets;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod cmdline;
pub mod daemon;
mod env;
pub mod error;
pub mod exit;
mod fs;
mod fuse;
mod logging;
pub mod mount_helper;
pub mod mountpoint;
pub mod naming;
mod private;
mod renew;
pub mod secret;
#[cfg(test)]
mod semantics_tests;
pub mod slots;
pub mod store;
mod tls;
pub mod tree;
mod unseen;
pub mod vault;
pub mod views;
mod wiped;
