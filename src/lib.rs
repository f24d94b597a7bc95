//! vaultfs: HashiCorp Vault / OpenBao KV secrets as a read-only FUSE filesystem.
//!
//! Layers, outermost first (docs/architecture.md): `run` (argv → command
//! → exit status) → `cli` (flags and environment → settings) → `daemon`
//! (the mount's life) → `fuse` (the FUSE shim) → `fs` (the filesystem core:
//! plain answers, and what the kernel may keep) → `tree` (names and
//! semantics) → `cache` → `store` (the `SecretStore` trait) ← `vault` (the
//! HTTP client implementing it).
//!
//! Public: `main`, which the binary runs, and, with the `testing` feature,
//! the `testing` module the end-to-end tests and the fuzz targets reach in
//! through. Every module is private to the crate.
#![deny(clippy::undocumented_unsafe_blocks)]

mod assets;
mod audit;
mod auth;
mod cache;
mod cli;
mod cmdline;
mod daemon;
mod env;
mod error;
mod exit;
mod fs;
mod fuse;
#[cfg(test)]
mod fuzz_tests;
mod logging;
mod mount_helper;
mod mountpoint;
mod naming;
mod private;
mod renew;
mod run;
mod secret;
#[cfg(test)]
mod semantics_tests;
mod slots;
mod store;
mod tls;
mod tree;
mod unseen;
mod vault;
mod views;
mod wiped;

#[cfg(feature = "testing")]
pub mod testing;

pub use run::main;
