//! The end-to-end tests: the vaultfs binary run as users run it, in one test
//! binary with one module per concern. What a module needs beyond Rust and
//! the built binary is a Cargo feature (Cargo.toml) that `scripts/test`
//! turns on after `scripts/setup` has installed it:
//!
//! - `bao_tests`: a real OpenBao server (`bao`, from scripts/setup), no
//!   mount.
//! - `fuse_tests` (implies `bao_tests`): real FUSE mounts (/dev/fuse and
//!   fusermount3), with the helpers scripts/setup installs beside them
//!   (openssl, util-linux, python3).
//! - `tool_tests`: the programs users read the views with or check the
//!   release with: python-dotenv, Node's dotenv, dash, zsh, busybox,
//!   shellcheck, terraform, the musl target.
//! - `root_tests` (implies `fuse_tests`): root, for mount(8) and fstab,
//!   tmpfs mounts, and acting as another user (65534).
//!
//! The modules without a feature need nothing but the binary and run with
//! a plain `cargo test`.

mod harness;

#[cfg(feature = "fuse_tests")]
mod adaptive;
mod assets;
#[cfg(feature = "fuse_tests")]
mod audit;
#[cfg(feature = "fuse_tests")]
mod auth_tls;
#[cfg(feature = "bao_tests")]
mod client;
#[cfg(feature = "fuse_tests")]
mod cluster;
#[cfg(all(feature = "fuse_tests", feature = "tool_tests"))]
mod coder;
mod command_line;
#[cfg(feature = "fuse_tests")]
mod dirs;
#[cfg(all(feature = "fuse_tests", feature = "tool_tests"))]
mod dotenv;
#[cfg(feature = "fuse_tests")]
mod faults;
#[cfg(feature = "root_tests")]
mod fstab;
#[cfg(feature = "fuse_tests")]
mod host;
#[cfg(feature = "fuse_tests")]
mod hostile;
#[cfg(feature = "fuse_tests")]
mod hostile_client;
#[cfg(feature = "fuse_tests")]
mod hostile_scale;
#[cfg(feature = "fuse_tests")]
mod identity;
#[cfg(feature = "fuse_tests")]
mod kv_history;
mod latency_proxy;
#[cfg(feature = "fuse_tests")]
mod lifecycle;
#[cfg(feature = "fuse_tests")]
mod messages;
#[cfg(feature = "fuse_tests")]
mod mount;
#[cfg(feature = "tool_tests")]
mod package;
#[cfg(feature = "fuse_tests")]
mod perf_semantics;
#[cfg(feature = "fuse_tests")]
mod security;
#[cfg(feature = "fuse_tests")]
mod signals;
#[cfg(feature = "fuse_tests")]
mod soak;
#[cfg(feature = "fuse_tests")]
mod token_file;
#[cfg(feature = "fuse_tests")]
mod versions;
#[cfg(feature = "tool_tests")]
mod views_readers;
