//! What `vaultfs mount` runs with, resolved once from the flags and the
//! environment: flags first, then VAULT_*, then BAO_*, then defaults. Every
//! clamp and default is applied here; the daemon reads only [`Settings`].

use std::path::PathBuf;
use std::time::Duration;

use fuser::{Config as FuseConfig, MountOption, SessionACL};
use nix::unistd::{getgid, getuid};
use reqwest::Url;

use super::{mountpoint, parse_duration, CliError, LogFormat, MountArgs};
use crate::cache::CachePolicy;
use crate::env::{vault_env, Env};
use crate::fs::FsOptions;
use crate::mountpoint::state_dir;
use crate::tls::TlsConfig;
use crate::vault::{redact_userinfo, ClientConfig, MaxRequests};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a filesystem operation may take beyond one request's deadline.
const OP_SLACK: Duration = Duration::from_secs(1);

/// Everything `vaultfs mount` needs from its flags and environment.
pub struct Settings {
    /// Absolute, in the form the mount table uses.
    pub mountpoint: PathBuf,
    /// Absolute: the background daemon runs in `/`.
    pub token_file: Option<PathBuf>,
    pub client: ClientConfig,
    pub fs: FsOptions,
    pub cache: CachePolicy,
    pub fuse: FuseConfig,
    /// Whether directory reads prefetch their children (`--max-requests 0`
    /// turns it off).
    pub prefetch: bool,
    /// Use SCAN (OpenBao's recursive list) where the server has it.
    pub scan: bool,
    /// Lock memory, keeping secrets out of swap.
    pub mlock: bool,
    /// Mount over a directory that holds files (hiding them).
    pub allow_non_empty: bool,
    pub foreground: bool,
    /// How long to wait for the mount lock and, in the background, for the
    /// mount to be live.
    pub wait: Duration,
    pub log: LogSettings,
    /// `--audit-log`, else `VAULTFS_AUDIT_LOG`.
    pub audit: Option<AuditSettings>,
}

pub struct AuditSettings {
    /// Absolute: the background daemon runs in `/`.
    pub path: PathBuf,
    pub listings: bool,
}

pub struct LogSettings {
    /// `None`: stderr (in the foreground without `--log-file`).
    pub file: Option<LogTarget>,
    pub format: LogFormat,
    /// Past this size the file is rotated; 0: never.
    pub max_size: u64,
}

pub struct LogTarget {
    /// Absolute: the background daemon runs in `/`.
    pub path: PathBuf,
    /// The default under the state directory: a directory vaultfs owns,
    /// checked as such (see `private::open_log`).
    pub default_place: bool,
}

/// `n` MiB in bytes; at least one MiB.
fn mib(n: usize) -> usize {
    n.max(1) << 20
}

impl Settings {
    /// Resolve and check every setting. Touches nothing but the environment
    /// and, to resolve the mount point, the file system's names.
    pub fn resolve(args: &MountArgs, env: Env<'_>) -> Result<Settings, CliError> {
        args.check()?;
        let client = args.client_config(env)?;
        let (uid, gid) = (getuid().as_raw(), getgid().as_raw());
        let fs = FsOptions {
            uid: args.uid.unwrap_or(uid),
            gid: args.gid.unwrap_or(gid),
            file_mode: args.file_mode,
            dir_mode: args.dir_mode,
            ttl: args.ttl,
            op_timeout: client.timeout + OP_SLACK,
        };
        let cache = CachePolicy {
            ttl: args.ttl,
            stale_if_error: args.stale_if_error,
            max_entries: args.cache_entries.max(1),
            max_bytes: mib(args.cache_mib),
        };
        Ok(Settings {
            mountpoint: mountpoint(args.mountpoint.as_deref(), env)?,
            token_file: args.token_file.as_deref().map(absolute),
            client,
            fs,
            cache,
            fuse: fuse_config(args.allow_other),
            prefetch: args.max_requests != MaxRequests::Fixed(0),
            scan: !args.no_scan,
            mlock: !args.no_mlock,
            allow_non_empty: args.allow_non_empty,
            foreground: args.foreground,
            wait: args.wait,
            log: LogSettings {
                file: log_target(args, env),
                format: args.log_format,
                max_size: args.log_max_size,
            },
            audit: args
                .audit_log
                .clone()
                .or_else(|| {
                    env("VAULTFS_AUDIT_LOG")
                        .filter(|v| !v.is_empty())
                        .map(PathBuf::from)
                })
                .map(|p| AuditSettings {
                    path: absolute(&p),
                    listings: args.audit_listings,
                }),
        })
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `--log-file`, else in the background the default under the state dir.
fn log_target(args: &MountArgs, env: Env<'_>) -> Option<LogTarget> {
    if let Some(f) = &args.log_file {
        return Some(LogTarget {
            path: absolute(f),
            default_place: false,
        });
    }
    (!args.foreground)
        .then(|| state_dir(env))
        .flatten()
        .map(|d| LogTarget {
            path: d.join("vaultfs.log"),
            default_place: true,
        })
}

fn fuse_config(allow_other: bool) -> FuseConfig {
    let mut c = FuseConfig::default();
    c.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("vaultfs".into()),
        MountOption::Subtype("vaultfs".into()),
        MountOption::DefaultPermissions,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::NoExec,
        MountOption::NoAtime,
    ];
    // With allow_other the kernel lets every uid past FUSE and enforces the
    // modes on every access, cached or not (DefaultPermissions). fuser's
    // RootAndOwner is never used: see MountArgs::check.
    c.acl = if allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    c
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "t")
}

impl MountArgs {
    /// The client settings: flags first, then VAULT_*, then BAO_*, then defaults.
    pub fn client_config(&self, env: Env<'_>) -> Result<ClientConfig, CliError> {
        let addr = self
            .address
            .as_ref()
            .map(|a| a.0.clone())
            .or_else(|| vault_env(env, "ADDR"))
            .unwrap_or_else(|| "https://127.0.0.1:8200".to_string());
        let bad = |why: String| CliError::BadAddress(redact_userinfo(&addr), why);
        let address = Url::parse(&addr).map_err(|e| bad(e.to_string()))?;
        if !matches!(address.scheme(), "http" | "https") || address.host().is_none() {
            return Err(bad("expected http(s)://host[:port]".into()));
        }
        // Vault would answer every request under /v1/v1/ with 403 or 404,
        // which reads as a rejected token.
        if address.path().trim_end_matches('/').ends_with("/v1") {
            return Err(bad(
                "it ends in /v1, which vaultfs adds itself: drop the /v1 (the Vault CLI's \
                 VAULT_ADDR is the same, without /v1)"
                    .into(),
            ));
        }
        let path_env = |name| vault_env(env, name).map(PathBuf::from);
        // As the Vault CLI reads them: seconds, or a duration with a unit.
        let timeout = match (self.timeout, env("VAULT_CLIENT_TIMEOUT")) {
            (Some(t), _) => t,
            (None, Some(v)) if !v.is_empty() => {
                let secs = if v.bytes().all(|b| b.is_ascii_digit()) {
                    format!("{v}s")
                } else {
                    v.clone()
                };
                parse_duration(&secs)
                    .map_err(|why| CliError::BadEnv("VAULT_CLIENT_TIMEOUT", v, why))?
            }
            _ => DEFAULT_TIMEOUT,
        };
        let max_retries = match (self.max_retries, env("VAULT_MAX_RETRIES")) {
            (Some(n), _) => Some(n),
            (None, Some(v)) if !v.is_empty() => Some(v.parse().map_err(|_| {
                CliError::BadEnv("VAULT_MAX_RETRIES", v, "expected a whole number".into())
            })?),
            _ => None,
        };
        let namespace = self
            .namespace
            .clone()
            .or_else(|| vault_env(env, "NAMESPACE"));
        // Sent as X-Vault-Namespace: refused here rather than failing every
        // request as an unreachable Vault.
        if let Some(ns) = namespace.as_deref() {
            if reqwest::header::HeaderValue::from_str(ns).is_err() {
                return Err(CliError::BadNamespace(ns.to_string()));
            }
        }
        Ok(ClientConfig {
            address,
            namespace,
            timeout,
            kv_filter: self
                .kv
                .iter()
                .map(|k| k.trim_matches('/').to_string())
                .collect(),
            tls: TlsConfig {
                ca_cert: self.ca_cert.clone().or_else(|| path_env("CACERT")),
                ca_path: self.ca_path.clone().or_else(|| path_env("CAPATH")),
                client_cert: self.client_cert.clone().or_else(|| path_env("CLIENT_CERT")),
                client_key: self.client_key.clone().or_else(|| path_env("CLIENT_KEY")),
                server_name: self
                    .tls_server_name
                    .clone()
                    .or_else(|| vault_env(env, "TLS_SERVER_NAME")),
                skip_verify: self.tls_skip_verify
                    || vault_env(env, "SKIP_VERIFY").is_some_and(|v| truthy(&v)),
            },
            max_response_bytes: mib(self.max_response_mib),
            max_requests: match self.max_requests {
                MaxRequests::Fixed(n) => MaxRequests::Fixed(n.max(1)),
                auto => auto,
            },
            max_retries,
        })
    }
}

#[cfg(test)]
mod tests {
    use nix::unistd::{getgid, getuid};
    use std::path::Path;

    use super::super::parse_mount as args;
    use super::*;

    #[test]
    fn env_precedence() {
        let env = |k: &str| match k {
            "VAULT_ADDR" => Some("http://127.0.0.1:1".to_string()),
            "BAO_ADDR" => Some("http://127.0.0.1:2".to_string()),
            "BAO_NAMESPACE" => Some("team".to_string()),
            "VAULT_SKIP_VERIFY" => Some("1".to_string()),
            _ => None,
        };
        let c = args(&[]).client_config(&env).unwrap();
        assert_eq!(c.address.as_str(), "http://127.0.0.1:1/");
        assert_eq!(c.namespace.as_deref(), Some("team"));
        assert!(c.tls.skip_verify);
        let c = args(&["--address", "http://127.0.0.1:3", "-n", "x"])
            .client_config(&env)
            .unwrap();
        assert_eq!(c.address.port(), Some(3));
        assert_eq!(c.namespace.as_deref(), Some("x"));
        let none = |_: &str| None;
        let c = args(&["--kv", "/team/kv/", "--kv", "secret"])
            .client_config(&none)
            .unwrap();
        assert_eq!(c.address.as_str(), "https://127.0.0.1:8200/");
        assert_eq!(c.kv_filter, ["team/kv", "secret"]);
        assert!(!c.tls.skip_verify);
    }

    #[test]
    fn namespace_must_be_a_header_value() {
        for bad in ["a\r\nX-Injected: 1", "a\nb", "a\0b"] {
            let env = |k: &str| (k == "VAULT_NAMESPACE").then(|| bad.to_string());
            let e = args(&[]).client_config(&env).unwrap_err().to_string();
            assert!(e.contains("VAULT_NAMESPACE") && !e.contains('\n'), "{e}");
        }
        let e = args(&["-n", "x\ry"]).client_config(&|_| None).unwrap_err();
        assert!(matches!(e, CliError::BadNamespace(_)), "{e}");
        let ok = args(&["-n", "team/sub"]).client_config(&|_| None).unwrap();
        assert_eq!(ok.namespace.as_deref(), Some("team/sub"));
    }

    #[test]
    fn bad_address() {
        let none = |_: &str| None;
        assert!(args(&["--address", "not a url"])
            .client_config(&none)
            .is_err());
        for v1 in [
            "http://h:8200/v1",
            "http://h:8200/v1/",
            "https://h/vault/v1",
        ] {
            let e = args(&["--address", v1])
                .client_config(&|_| None)
                .unwrap_err();
            assert!(e.to_string().contains("drop the /v1"), "{e}");
        }
        assert!(args(&["--address", "http://h/v1x"])
            .client_config(&|_| None)
            .is_ok());
        assert!(args(&["--address", "ftp://x"])
            .client_config(&none)
            .is_err());
    }

    #[test]
    fn vault_cli_timeout_and_retries_are_defaults() {
        let env = |k: &str| match k {
            "VAULT_CLIENT_TIMEOUT" => Some("45".to_string()),
            "VAULT_MAX_RETRIES" => Some("3".to_string()),
            _ => None,
        };
        let c = args(&[]).client_config(&env).unwrap();
        assert_eq!(c.timeout, Duration::from_secs(45));
        assert_eq!(c.max_retries, Some(3));
        let c = args(&["--timeout", "2s", "--max-retries", "0"])
            .client_config(&env)
            .unwrap();
        assert_eq!(
            (c.timeout, c.max_retries),
            (Duration::from_secs(2), Some(0))
        );
        let none = |_: &str| None;
        let c = args(&[]).client_config(&none).unwrap();
        assert_eq!((c.timeout, c.max_retries), (DEFAULT_TIMEOUT, None));
        let unit = |k: &str| (k == "VAULT_CLIENT_TIMEOUT").then(|| "1m30s".to_string());
        assert_eq!(
            args(&[]).client_config(&unit).unwrap().timeout,
            Duration::from_secs(90)
        );
        for (k, v) in [
            ("VAULT_CLIENT_TIMEOUT", "soon"),
            ("VAULT_CLIENT_TIMEOUT", "99999999999"),
            ("VAULT_MAX_RETRIES", "-1"),
        ] {
            let bad = |name: &str| (name == k).then(|| v.to_string());
            let e = args(&[]).client_config(&bad).unwrap_err().to_string();
            assert!(e.contains(k) && e.contains(v), "{e}");
        }
    }

    /// A home of its own, so the default mount point resolves the same on
    /// every machine.
    fn resolve(extra: &[&str], home: &Path, more: &[(&str, &str)]) -> Settings {
        let env = |k: &str| match k {
            "HOME" => Some(home.to_string_lossy().into_owned()),
            _ => more
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string()),
        };
        Settings::resolve(&args(extra), &env).unwrap()
    }

    #[test]
    fn defaults() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path().canonicalize().unwrap();
        let s = resolve(&[], &home, &[]);
        assert_eq!(s.mountpoint, home.join("secrets"));
        assert_eq!(s.token_file, None);
        let (uid, gid) = (getuid().as_raw(), getgid().as_raw());
        assert_eq!((s.fs.uid, s.fs.gid), (uid, gid));
        assert_eq!((s.fs.file_mode, s.fs.dir_mode), (0o400, 0o500));
        assert_eq!(s.fs.ttl, Duration::from_secs(60));
        assert_eq!(s.fs.op_timeout, DEFAULT_TIMEOUT + OP_SLACK);
        assert_eq!(s.cache.ttl, s.fs.ttl);
        assert_eq!(s.cache.stale_if_error, Duration::from_secs(3600));
        assert_eq!(
            (s.cache.max_entries, s.cache.max_bytes),
            (50_000, 256 << 20)
        );
        assert_eq!(
            (s.client.max_requests, s.client.max_response_bytes),
            (MaxRequests::Fixed(32), 32 << 20)
        );
        assert!(s.prefetch);
        assert!(s.scan && s.mlock && !s.foreground);
        assert_eq!(s.wait, Duration::from_secs(30));
        assert_eq!(s.fuse.acl, SessionACL::Owner);
        for o in [MountOption::RO, MountOption::NoSuid, MountOption::NoExec] {
            assert!(s.fuse.mount_options.contains(&o), "{o:?}");
        }
        let log = s.log.file.unwrap();
        assert_eq!(log.path, home.join(".local/state/vaultfs/vaultfs.log"));
        assert!(log.default_place);
        assert_eq!((s.log.format, s.log.max_size), (LogFormat::Text, 10 << 20));
        let s = resolve(&[], &home, &[("XDG_STATE_HOME", "/state")]);
        assert_eq!(
            s.log.file.unwrap().path,
            Path::new("/state/vaultfs/vaultfs.log")
        );
    }

    #[test]
    fn flags_and_environment() {
        let home = tempfile::tempdir().unwrap();
        let cwd = std::env::current_dir().unwrap();
        let s = resolve(
            &[
                "--ttl",
                "5s",
                "--timeout",
                "2s",
                "--uid",
                "5",
                "--gid",
                "6",
                "--allow-other",
                "--no-mlock",
                "--no-scan",
                "--wait",
                "3s",
                "--stale-if-error",
                "0s",
                "--token-file",
                "tok",
                "--log-file",
                "v.log",
                "--log-format",
                "json",
            ],
            home.path(),
            &[("VAULT_CLIENT_TIMEOUT", "45")],
        );
        assert_eq!((s.fs.uid, s.fs.gid), (5, 6));
        assert_eq!(
            (s.fs.ttl, s.cache.ttl),
            (Duration::from_secs(5), Duration::from_secs(5))
        );
        assert_eq!(s.cache.stale_if_error, Duration::ZERO);
        // The flag wins over VAULT_CLIENT_TIMEOUT, and every operation's
        // deadline follows the request's.
        assert_eq!(s.fs.op_timeout, Duration::from_secs(2) + OP_SLACK);
        assert_eq!(s.fuse.acl, SessionACL::All);
        assert!(!s.scan && !s.mlock);
        assert_eq!(s.wait, Duration::from_secs(3));
        assert_eq!(s.token_file, Some(cwd.join("tok")));
        let log = s.log.file.unwrap();
        assert_eq!(log.path, cwd.join("v.log"));
        assert!(!log.default_place);
        assert_eq!(s.log.format, LogFormat::Json);

        let s = resolve(&[], home.path(), &[("VAULT_CLIENT_TIMEOUT", "45")]);
        assert_eq!(s.fs.op_timeout, Duration::from_secs(45) + OP_SLACK);
        let s = resolve(&["-f", "/mnt/there"], home.path(), &[]);
        assert!(s.foreground && s.log.file.is_none());
        assert_eq!(s.mountpoint, Path::new("/mnt/there"));
    }

    #[test]
    fn audit_log_flag_then_environment() {
        let home = tempfile::tempdir().unwrap();
        assert!(resolve(&[], home.path(), &[]).audit.is_none());
        assert!(resolve(&[], home.path(), &[("VAULTFS_AUDIT_LOG", "")])
            .audit
            .is_none());
        let a = resolve(&[], home.path(), &[("VAULTFS_AUDIT_LOG", "/var/a.jsonl")])
            .audit
            .unwrap();
        assert_eq!(
            (a.path.as_path(), a.listings),
            (Path::new("/var/a.jsonl"), false)
        );
        let a = resolve(
            &["--audit-log", "rel.jsonl", "--audit-listings"],
            home.path(),
            &[("VAULTFS_AUDIT_LOG", "/var/a.jsonl")],
        )
        .audit
        .unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!((a.path, a.listings), (cwd.join("rel.jsonl"), true));
    }

    #[test]
    fn zero_limits_are_clamped() {
        let home = tempfile::tempdir().unwrap();
        let s = resolve(
            &[
                "--max-requests",
                "0",
                "--cache-entries",
                "0",
                "--cache-mib",
                "0",
                "--max-response-mib",
                "0",
            ],
            home.path(),
            &[],
        );
        assert_eq!((s.cache.max_entries, s.cache.max_bytes), (1, 1 << 20));
        assert_eq!(
            (s.client.max_requests, s.client.max_response_bytes),
            (MaxRequests::Fixed(1), 1 << 20)
        );
        // 0 turns prefetch off (Tree::with_prefetch) rather than meaning 1.
        assert!(!s.prefetch);
    }

    #[test]
    fn refused_flags_stop_resolution() {
        let env = |k: &str| (k == "HOME").then(|| "/nonexistent".to_string());
        let e = Settings::resolve(&args(&["--allow-root"]), &env)
            .err()
            .unwrap();
        assert!(matches!(e, CliError::AllowRoot), "{e}");
        let e = Settings::resolve(&args(&["--address", "ftp://x"]), &env)
            .err()
            .unwrap();
        assert!(matches!(e, CliError::BadAddress(..)), "{e}");
        assert!(matches!(
            Settings::resolve(&args(&[]), &|_| None).err().unwrap(),
            CliError::NoHome
        ));
    }
}
