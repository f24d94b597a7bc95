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

#![deny(clippy::undocumented_unsafe_blocks)]

mod harness;

/// Declares the modules that need what `$cfg` turns on.
macro_rules! modules {
    (#[$cfg:meta] $($module:ident),+ $(,)?) => {
        $(#[$cfg] mod $module;)+
    };
}

// The binary alone.
mod assets;
mod command_line;
mod latency_proxy;

modules! { #[cfg(feature = "bao_tests")] client }

modules! { #[cfg(feature = "fuse_tests")]
    adaptive, audit, auth_tls, cluster, dirs, faults, host, hostile, hostile_client,
    hostile_scale, identity, kv_history, lifecycle, messages, mount, perf_semantics,
    security, signals, soak, token_file, versions,
}

modules! { #[cfg(feature = "tool_tests")] package, views_readers }

modules! { #[cfg(all(feature = "fuse_tests", feature = "tool_tests"))] coder, dotenv }

modules! { #[cfg(feature = "root_tests")] fstab }
