//! The long `--help`'s footer: the environment variables vaultfs reads
//! and its exit statuses. The man pages (`assets`) render the same tables
//! as sections of their own.

use crate::exit::Exit;

/// Every environment variable vaultfs reads, and what for. Where both a
/// `VAULT_` and a `BAO_` name are listed, a flag wins, then `VAULT_`, then
/// `BAO_`; an empty value counts as unset.
pub const ENVIRONMENT: &[(&[&str], &str)] = &[
    (
        &["VAULT_ADDR", "BAO_ADDR"],
        "Vault's address (--address); default https://127.0.0.1:8200.",
    ),
    (
        &["VAULT_TOKEN", "BAO_TOKEN"],
        "The token, unless --token-file is given; without either, ~/.vault-token is read.",
    ),
    (
        &["VAULT_NAMESPACE", "BAO_NAMESPACE"],
        "The namespace (--namespace).",
    ),
    (
        &["VAULT_CACERT", "BAO_CACERT"],
        "A PEM file of CA certificates to trust (--ca-cert).",
    ),
    (
        &["VAULT_CAPATH", "BAO_CAPATH"],
        "A directory of PEM CA certificates (--ca-path).",
    ),
    (
        &["VAULT_CLIENT_CERT", "BAO_CLIENT_CERT"],
        "The client certificate for mutual TLS (--client-cert).",
    ),
    (
        &["VAULT_CLIENT_KEY", "BAO_CLIENT_KEY"],
        "The client key for mutual TLS (--client-key).",
    ),
    (
        &["VAULT_TLS_SERVER_NAME", "BAO_TLS_SERVER_NAME"],
        "The name to verify in Vault's certificate (--tls-server-name).",
    ),
    (
        &["VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY"],
        "1, true, yes or t: do not verify Vault's certificate (--tls-skip-verify; insecure).",
    ),
    (
        &["VAULT_CLIENT_TIMEOUT"],
        "Per-request timeout (--timeout): seconds, or a duration with a unit.",
    ),
    (
        &["VAULT_MAX_RETRIES"],
        "Retries of a failed request (--max-retries).",
    ),
    (
        &["VAULTFS_AUDIT_LOG"],
        "The read audit's file (--audit-log) when the flag is not given; `vaultfs audit` reads it \
         when the mount recorded none.",
    ),
    (
        &["SSL_CERT_FILE"],
        "The system CA bundle to trust besides the built-in roots (else the distribution's usual \
         paths).",
    ),
    (
        &["HOME"],
        "For ~/.vault-token, ~/secrets and ~/.local/state; when unset or empty (as under \
         mount(8)), the home directory from the password database.",
    ),
    (
        &["XDG_STATE_HOME"],
        "Where the log file (and, without XDG_RUNTIME_DIR, the pid and lock files) are kept; \
         default ~/.local/state.",
    ),
    (
        &["XDG_RUNTIME_DIR"],
        "Where the pid and lock files are kept ($XDG_RUNTIME_DIR/vaultfs).",
    ),
    (
        &["NOTIFY_SOCKET"],
        "Set by systemd (Type=notify): READY=1 is sent once the mount is live, STOPPING=1 on \
         a signal.",
    ),
    (
        &["RUST_LOG"],
        "The log level filter (default info; e.g. debug, or vaultfs=debug). TLS libraries stay \
         at info or above.",
    ),
];

/// What `vaultfs --help` says after the flags: the environment variables
/// and exit statuses, from the same tables as the man pages.
pub fn footer() -> String {
    let mut s = String::from("Environment (a flag wins, then VAULT_*, then BAO_*):\n");
    for (names, what) in ENVIRONMENT {
        s.push_str(&format!("  {}\n      {what}\n", names.join(", ")));
    }
    s.push_str("\nExit status:\n");
    for e in Exit::ALL {
        s.push_str(&format!("  {}  {}\n", e.code(), e.meaning()));
    }
    s.push_str("\nSee vaultfs(1) and mount.fuse.vaultfs(8).");
    s
}
