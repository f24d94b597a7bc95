//! The command line: every flag a user can set. [`Settings`] resolves the
//! mount's flags with the environment into what the other modules take.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::env::{home, Env};
pub use crate::logging::LogFormat;
use crate::mountpoint as mount_table;
use crate::vault::{redact_userinfo, MaxRequests};

mod help;
mod settings;

pub use help::ENVIRONMENT;
pub use settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "vaultfs",
    version,
    about = "Mount HashiCorp Vault / OpenBao KV secrets engines as a read-only filesystem",
    long_about = "Mount HashiCorp Vault / OpenBao KV secrets engines as a read-only FUSE \
filesystem.\n\nConnection settings follow the Vault CLI: VAULT_ADDR, VAULT_TOKEN, \
VAULT_NAMESPACE, VAULT_CACERT, ... (BAO_* names are a fallback). The token is read from \
--token-file, VAULT_TOKEN, BAO_TOKEN or ~/.vault-token, in that order; it is never taken \
on the command line.",
    after_long_help = help::footer()
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mount Vault's KV secrets at MOUNTPOINT (default ~/secrets)
    #[command(after_long_help = MOUNT_AFTER_HELP)]
    Mount(Box<MountArgs>),
    /// Unmount a vaultfs mount and wait for its daemon to exit
    #[command(alias = "umount")]
    Unmount(UnmountArgs),
    /// Print the shell completion script for SHELL (e.g. `vaultfs completions bash > /etc/bash_completion.d/vaultfs`)
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Print the man page (`vaultfs man | man -l -`), or write every page to --dir
    Man {
        /// Write vaultfs.1 and one page per subcommand (vaultfs-mount.1, ...) here
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Exit 0 when a live vaultfs is mounted at MOUNTPOINT; without one, list this user's vaultfs mounts
    Status(StatusArgs),
    /// Show the read audit of a mount (--audit-log): which program read which secret, when
    Audit(AuditArgs),
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Mount point whose audit file to read (default ~/secrets); found from what its daemon recorded at mount time, else VAULTFS_AUDIT_LOG
    pub mountpoint: Option<PathBuf>,
    /// Read this audit file instead
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Only reads this recent (1h, 30m) or since this time (2024-05-01T12:00:00Z)
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only paths inside the mount matching this glob (`secret/prod/*`; a trailing / means everything under it)
    #[arg(long, value_name = "GLOB")]
    pub secret: Option<String>,
    /// Only programs whose executable path, its file name or comm matches this glob (`python3*`)
    #[arg(long, value_name = "GLOB")]
    pub exe: Option<String>,
    /// Keep printing reads as they are recorded
    #[arg(long)]
    pub follow: bool,
    /// Print the matching JSON lines instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Mount point; without one (and without --wait), every vaultfs mount of this user is listed
    pub mountpoint: Option<PathBuf>,
    /// Wait up to this long for the mount (default ~/secrets) to be live, for start-up scripts
    #[arg(long, value_parser = parse_duration)]
    pub wait: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Where `vaultfs mount` is documented for /etc/fstab (man page and --help).
const MOUNT_AFTER_HELP: &str = "In /etc/fstab and with `mount -t fuse.vaultfs`, every flag is an \
-o option: its long name in snake_case, name=value or bare for a switch (token_file=PATH, \
kv=PATH repeatable, allow_other, ttl=5m). For example:\n\n  vaultfs /srv/secrets fuse.vaultfs \
address=https://vault:8200,token_file=/run/vault/token,kv=secret,allow_other,_netdev 0 0\n\n\
mount(8) finds vaultfs as /sbin/mount.fuse.vaultfs (a link to it) or on its PATH through \
mount.fuse3; see docs/lifecycle.md.\n\n\
Signals: SIGHUP drops every cached answer (the kernel's cached names, attributes and pages \
too), so a rotated secret shows at once, and reopens the log file. SIGTERM, SIGINT, SIGQUIT, \
SIGXCPU and SIGPWR unmount and exit 0, and so do SIGILL, SIGTRAP, SIGABRT, SIGFPE, SIGSEGV, \
SIGBUS and SIGSYS when another process sends them (a real fault logs one line and dumps \
core). SIGUSR1, SIGUSR2, SIGALRM, SIGPIPE and the other signals that would end the process \
are ignored. Each is logged.";

#[derive(Debug, Args)]
pub struct UnmountArgs {
    /// Mount point (default ~/secrets)
    pub mountpoint: Option<PathBuf>,
    /// How long to wait for the daemon to exit
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub wait: Duration,
    /// Detach even while files are open there (the daemon exits once they close)
    #[arg(long)]
    pub lazy: bool,
}

#[derive(Debug, Args, Clone)]
pub struct MountArgs {
    /// Mount point, created if missing (default ~/secrets)
    pub mountpoint: Option<PathBuf>,

    /// Mount even when the mount point holds files (they are hidden until unmounted)
    #[arg(long)]
    pub allow_non_empty: bool,

    /// Stay attached to the terminal (for systemd and tests); logs go to stderr
    #[arg(short, long)]
    pub foreground: bool,

    /// Vault address [env: VAULT_ADDR, BAO_ADDR] [default: https://127.0.0.1:8200]
    #[arg(long, value_name = "URL")]
    pub address: Option<Address>,

    /// Vault Enterprise / OpenBao namespace [env: VAULT_NAMESPACE, BAO_NAMESPACE]
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,

    /// Show only this KV mount (repeatable); default: every KV mount the token can see
    #[arg(long = "kv", value_name = "PATH")]
    pub kv: Vec<String>,

    /// Read the token from this file: a regular file (symlinks are followed), re-read when it changes
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,

    /// How long listings and secrets are cached, in the daemon and the kernel
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub ttl: Duration,

    /// Deadline of each Vault request, connect to last byte, retries included [env: VAULT_CLIENT_TIMEOUT] [default: 10s]
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,

    /// Retries of a request Vault answered "not now" (429, 502-504, sealed, leader election) or lost to a connection error [env: VAULT_MAX_RETRIES] [default: as many as fit in --timeout]
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,

    /// Keep serving cached answers this long past their TTL while Vault is unreachable (0 disables)
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub stale_if_error: Duration,

    /// Most Vault requests in flight at once; more wait. `auto`: start at 32
    /// and move between 1 and 256 with Vault's answers (more while the
    /// round trip stays flat, fewer on 429, 503, timeouts or a rising round
    /// trip). 0: 1 in flight and no prefetch
    #[arg(long, default_value = "32")]
    pub max_requests: MaxRequests,

    /// Never use SCAN (OpenBao's recursive list): read every folder with LIST
    #[arg(long)]
    pub no_scan: bool,

    /// Most cached listings and secrets (each)
    #[arg(long, default_value_t = 50_000)]
    pub cache_entries: usize,

    /// Most memory held by cached listings and secrets (each), in MiB
    #[arg(long, default_value_t = 256)]
    pub cache_mib: usize,

    /// Largest Vault response accepted, in MiB
    #[arg(long, default_value_t = 32)]
    pub max_response_mib: usize,

    /// Log to this file (default in background: $XDG_STATE_HOME/vaultfs/vaultfs.log); level from RUST_LOG
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Log lines as text, or as JSON objects (one per line) for a log shipper
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Past this size the log file is renamed to NAME.1 (replacing the last one) and started anew; 0: never (K, M, G: powers of 1024)
    #[arg(long, value_name = "SIZE", default_value = "10M", value_parser = parse_size)]
    pub log_max_size: u64,

    /// Record every open of a file here, one JSON line each: time, program (pid, exe, comm, uid), path, version [env: VAULTFS_AUDIT_LOG]
    #[arg(long, value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// Also record directory listings in the audit file
    #[arg(long)]
    pub audit_listings: bool,

    /// Owner of every file and directory (default: the mounting user)
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group of every file and directory (default: the mounting user's group)
    #[arg(long)]
    pub gid: Option<u32>,
    /// Mode of files, octal
    #[arg(long, default_value = "0400", value_parser = parse_mode)]
    pub file_mode: u16,
    /// Mode of directories, octal
    #[arg(long, default_value = "0500", value_parser = parse_mode)]
    pub dir_mode: u16,
    /// Let other users past FUSE; the file modes still decide who reads (needs user_allow_other in /etc/fuse.conf for non-root)
    #[arg(long)]
    pub allow_other: bool,
    /// Refused: FUSE cannot let in root alone (see docs/security.md)
    #[arg(long, hide = true)]
    pub allow_root: bool,

    /// How long `mount` waits in the background for the mount to be live
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub wait: Duration,

    /// Do not lock memory (secrets may then reach swap)
    #[arg(long)]
    pub no_mlock: bool,

    /// CA certificate (PEM) to verify Vault [env: VAULT_CACERT]
    #[arg(long, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
    /// Directory of CA certificates (PEM) [env: VAULT_CAPATH]
    #[arg(long, value_name = "DIR")]
    pub ca_path: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS [env: VAULT_CLIENT_CERT]
    #[arg(long, value_name = "PATH")]
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS [env: VAULT_CLIENT_KEY]
    #[arg(long, value_name = "PATH")]
    pub client_key: Option<PathBuf>,
    /// Name to verify in Vault's certificate (SNI) [env: VAULT_TLS_SERVER_NAME]
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
    /// Do not verify Vault's certificate (insecure) [env: VAULT_SKIP_VERIFY]
    #[arg(long)]
    pub tls_skip_verify: bool,
}

/// A duration flag. Bounded, so that no deadline or expiry computed from
/// it can overflow (`Instant + Duration` panics).
fn parse_duration(s: &str) -> Result<Duration, String> {
    const MAX: Duration = Duration::from_secs(365 * 24 * 3600);
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > MAX {
        return Err("at most 365 days".into());
    }
    Ok(d)
}

/// A size in bytes: a number with an optional unit, K, M or G (powers of
/// 1024; `KiB`, `MB`, ... and lower case read the same).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("{s:?} is not a size like 10M, 512K or 1048576")),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?} is not a size like 10M, 512K or 1048576"))
}

fn parse_mode(s: &str) -> Result<u16, String> {
    let m = u16::from_str_radix(s.trim_start_matches("0o"), 8)
        .map_err(|_| format!("{s:?} is not an octal mode like 0400"))?;
    if m > 0o7777 {
        return Err(format!("{s:?} is not a mode (max 07777)"));
    }
    Ok(m)
}

/// `--address` as given. Its `Debug` hides userinfo (`user:pass@`).
#[derive(Clone)]
pub struct Address(pub String);

impl std::str::FromStr for Address {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Address(s.to_string()))
    }
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        redact_userinfo(&self.0).fmt(f)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("invalid Vault address {0:?}: {1}")]
    BadAddress(String, String),
    #[error("cannot find the home directory: HOME is not set")]
    NoHome,
    #[error("invalid {0}={1:?}: {2}")]
    BadEnv(&'static str, String, String),
    #[error(
        "invalid namespace {0:?} (--namespace, VAULT_NAMESPACE or BAO_NAMESPACE): it cannot be \
         sent as an HTTP header (control characters)"
    )]
    BadNamespace(String),
    #[error(
        "--allow-root is not supported: the kernel would let every user in and answer cached \
         lookups without asking vaultfs; to let root in, use --allow-other with the default \
         owner-only modes (root passes them, other users do not); see docs/security.md"
    )]
    AllowRoot,
}

/// The mount point given, else `~/secrets`: absolute, in the form the mount
/// table uses.
pub fn mountpoint(arg: Option<&Path>, env: Env<'_>) -> Result<PathBuf, CliError> {
    let given = match arg {
        Some(p) => p.to_path_buf(),
        None => home(env).ok_or(CliError::NoHome)?.join("secrets"),
    };
    Ok(mount_table::resolve(&given))
}

impl MountArgs {
    /// Flags that are refused whatever else is set.
    pub fn check(&self) -> Result<(), CliError> {
        // FUSE's allow_root is allow_other plus a check in the daemon, which
        // cannot see what the kernel answers from its caches (lookups,
        // attributes, page cache): anyone would get in. See docs/security.md.
        if self.allow_root {
            return Err(CliError::AllowRoot);
        }
        Ok(())
    }
}

/// `vaultfs mount` with `extra` flags, parsed.
#[cfg(test)]
fn parse_mount(extra: &[&str]) -> MountArgs {
    let mut v = vec!["vaultfs", "mount"];
    v.extend_from_slice(extra);
    match Cli::parse_from(v).command {
        Command::Mount(m) => *m,
        _ => unreachable!(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_mount as args;
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0440").unwrap(), 0o440);
        assert!(parse_mode("0999").is_err());
        let a = args(&["--file-mode", "0440", "--ttl", "5s"]);
        assert_eq!(a.file_mode, 0o440);
        assert_eq!(a.ttl, Duration::from_secs(5));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10M").unwrap(), 10 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("0").unwrap(), 0);
        for bad in ["", "M", "10T", "-1", "1.5M", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        let a = args(&[]);
        assert_eq!((a.log_max_size, a.log_format), (10 << 20, LogFormat::Text));
        let a = args(&["--log-format", "json", "--log-max-size", "64K"]);
        assert_eq!((a.log_max_size, a.log_format), (64 << 10, LogFormat::Json));
    }

    #[test]
    fn durations_are_bounded() {
        assert_eq!(
            parse_duration("365d").unwrap(),
            Duration::from_secs(365 * 86400)
        );
        for huge in ["366d", "1000000000y", "18446744073709551615s"] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
        assert!(Cli::try_parse_from(["vaultfs", "mount", "--ttl", "1000000000y"]).is_err());
    }

    #[test]
    fn allow_root_is_refused() {
        assert!(args(&["--allow-other"]).check().is_ok());
        let e = args(&["--allow-root"]).check().unwrap_err().to_string();
        assert!(e.starts_with("--allow-root is not supported") && !e.contains('\n'));
        assert!(args(&["--allow-root", "--allow-other"]).check().is_err());
    }

    #[test]
    fn default_mountpoint() {
        let env = |k: &str| (k == "HOME").then(|| "/home/dev".to_string());
        assert_eq!(
            mountpoint(None, &env).unwrap(),
            PathBuf::from("/home/dev/secrets")
        );
        assert!(mountpoint(None, &|_| None).is_err());
    }
}
