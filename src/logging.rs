//! Log setup. Our own log lines never carry a token or a value; the HTTP and
//! TLS crates below us are capped at INFO whatever RUST_LOG says, because
//! their debug and trace output can include headers (the token) and bodies.

use std::fs::File;
use std::io::{self, IsTerminal};
use std::sync::Mutex;

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::prelude::*;

const CAPPED: &[&str] = &[
    "hyper",
    "h2",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "hyper_util",
    "tower",
];

fn capped(target: &str) -> bool {
    CAPPED
        .iter()
        .any(|c| target == *c || target.strip_prefix(c).is_some_and(|r| r.starts_with("::")))
}

/// Log to stderr, or to `file` (opened by `private::open_log`: 0600,
/// appended, no symlink followed).
pub fn init(file: Option<File>) -> io::Result<()> {
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let cap = filter_fn(|m| !(capped(m.target()) && *m.level() > Level::INFO));
    let fmt = tracing_subscriber::fmt::layer().with_target(true);
    let registry = tracing_subscriber::registry().with(env);
    let result = match file {
        Some(f) => registry
            .with(
                fmt.with_ansi(false)
                    .with_writer(Mutex::new(f))
                    .with_filter(cap),
            )
            .try_init(),
        None => registry
            .with(
                fmt.with_ansi(io::stderr().is_terminal())
                    .with_writer(io::stderr)
                    .with_filter(cap),
            )
            .try_init(),
    };
    result.map_err(|e| io::Error::other(e.to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn caps_http_crates_only() {
        assert!(super::capped("hyper"));
        assert!(super::capped("h2::codec"));
        assert!(super::capped("rustls::client"));
        assert!(!super::capped("h2o"));
        assert!(!super::capped("vaultfs::fs"));
    }
}
