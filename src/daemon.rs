//! The mount's life: check the token, mount, serve, unmount on a signal.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config as FuseConfig, MountOption, Session, SessionACL};

use crate::auth::{TokenError, TokenSource};
use crate::cache::CachePolicy;
use crate::cli::{self, MountArgs};
use crate::error::VaultError;
use crate::fs::{FsOptions, VaultFs};
use crate::tree::Tree;
use crate::vault::{ConfigError, SecretStore, VaultClient};

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error(transparent)]
    Cli(#[from] cli::CliError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("token from {origin} was rejected by Vault at {addr}: {source}")]
    TokenRejected {
        origin: String,
        addr: String,
        source: VaultError,
    },
    #[error("cannot reach Vault at {addr}: {source}")]
    Unreachable { addr: String, source: VaultError },
    #[error("cannot list KV mounts at {addr}: {source}")]
    Mounts { addr: String, source: VaultError },
    #[error("mountpoint {path}: {message}")]
    Mountpoint { path: PathBuf, message: String },
    #[error("cannot mount at {path}: {source}{hint}")]
    Fuse {
        path: PathBuf,
        source: io::Error,
        hint: &'static str,
    },
    #[error("{0}")]
    Other(String),
}

/// What a filesystem operation may take beyond one request's deadline.
const OP_SLACK: Duration = Duration::from_secs(1);

/// Turn off core dumps and ptrace by same-uid processes, and keep memory
/// out of swap when that is safe (see docs/security.md).
pub fn harden(mlock: bool) {
    // SAFETY: plain syscall with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        tracing::warn!(error = %io::Error::last_os_error(), "cannot disable core dumps");
    }
    if !mlock {
        return;
    }
    match memlock_allowed() {
        Ok(()) => {
            // SAFETY: plain syscall with constant arguments.
            let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
            if rc != 0 {
                tracing::warn!(
                    error = %io::Error::last_os_error(),
                    "cannot lock memory: secrets may reach swap (pass --no-mlock to silence)"
                );
            }
        }
        Err(why) => tracing::warn!(
            "not locking memory ({why}): secrets may reach swap; raise the limit \
             (ulimit -l unlimited, LimitMEMLOCK=infinity) or pass --no-mlock to silence"
        ),
    }
}

/// Whether mlockall(MCL_FUTURE) is safe: with a finite RLIMIT_MEMLOCK it
/// would make every allocation past the limit fail, crashing the daemon
/// later instead of warning now. Safe with an unlimited limit (the soft one
/// is raised to the hard one first) or with CAP_IPC_LOCK.
fn memlock_allowed() -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) != 0 {
            return Err(io::Error::last_os_error().to_string());
        }
        if lim.rlim_cur != lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
        }
    }
    if lim.rlim_max == libc::RLIM_INFINITY || has_cap_ipc_lock() {
        return Ok(());
    }
    Err(format!(
        "RLIMIT_MEMLOCK is {} KiB and CAP_IPC_LOCK is missing",
        lim.rlim_max / 1024
    ))
}

fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))?
                .trim()
                .to_string();
            u64::from_str_radix(&hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

fn getenv(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Everything resolved and checked before mounting.
pub struct Prepared {
    pub mountpoint: PathBuf,
    pub client: Arc<VaultClient>,
    pub args: MountArgs,
}

/// Resolve settings and read the token: errors here need no network.
pub fn prepare(args: &MountArgs) -> Result<Prepared, MountError> {
    let mountpoint = cli::mountpoint(args.mountpoint.as_deref(), &getenv)?;
    let cfg = args.client_config(&getenv)?;
    let home = cli::home(&getenv);
    let token = TokenSource::resolve(args.token_file.as_deref(), &getenv, home.as_deref())?;
    let client = Arc::new(VaultClient::new(cfg, Arc::new(token))?);
    Ok(Prepared {
        mountpoint,
        client,
        args: args.clone(),
    })
}

/// Check the token and that mounts can be listed.
pub async fn check_vault(client: &VaultClient) -> Result<(), MountError> {
    let addr = client.config().address.to_string();
    match client.lookup_self().await {
        Ok(info) => tracing::info!(
            source = %client.token().origin(),
            ttl_s = info.ttl.as_secs(),
            renewable = info.renewable,
            "token accepted"
        ),
        Err(e @ (VaultError::BadToken(_) | VaultError::Forbidden)) => {
            return Err(MountError::TokenRejected {
                origin: client.token().origin().to_string(),
                addr,
                source: e,
            })
        }
        Err(e) => return Err(MountError::Unreachable { addr, source: e }),
    }
    client
        .mounts()
        .await
        .map_err(|e| MountError::Mounts { addr, source: e })?;
    Ok(())
}

/// Create the mountpoint if missing; it must be an empty-enough directory.
pub fn prepare_mountpoint(path: &Path) -> Result<(), MountError> {
    let err = |message: String| MountError::Mountpoint {
        path: path.to_path_buf(),
        message,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(err("not a directory".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path).map_err(|e| err(format!("cannot create: {e}")))
        }
        Err(e) => Err(err(e.to_string())),
    }
}

fn fuse_config(args: &MountArgs) -> FuseConfig {
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
    c.acl = if args.allow_other {
        SessionACL::All
    } else if args.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    c
}

pub fn cache_policy(args: &MountArgs) -> CachePolicy {
    CachePolicy {
        ttl: args.ttl,
        stale_if_error: args.stale_if_error,
        max_entries: args.cache_entries.max(1),
        max_bytes: args.cache_mib.max(1) << 20,
    }
}

/// Mount and serve until unmounted or signalled. Blocks.
pub fn serve(p: Prepared, rt: &tokio::runtime::Runtime) -> Result<(), MountError> {
    prepare_mountpoint(&p.mountpoint)?;
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let opts = FsOptions {
        uid: p.args.uid.unwrap_or(uid),
        gid: p.args.gid.unwrap_or(gid),
        file_mode: p.args.file_mode,
        dir_mode: p.args.dir_mode,
        ttl: p.args.ttl,
        op_timeout: p.args.timeout + OP_SLACK,
    };
    let tree = Arc::new(Tree::new(p.client.clone(), cache_policy(&p.args)));
    let fs = VaultFs::new(tree, rt.handle().clone(), opts);
    let notifier = fs.notifier_slot();
    let mut session = Session::new(fs, &p.mountpoint, &fuse_config(&p.args)).map_err(|source| {
        let hint = if !Path::new("/dev/fuse").exists() {
            " (no /dev/fuse: FUSE is not available here)"
        } else if source.kind() == io::ErrorKind::PermissionDenied {
            " (is fusermount3 installed, and /dev/fuse accessible?)"
        } else {
            ""
        };
        MountError::Fuse {
            path: p.mountpoint.clone(),
            source,
            hint,
        }
    })?;
    let _ = notifier.set(session.notifier());
    let mut unmounter = session.unmount_callable();
    rt.spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: unmounting");
        if let Err(e) = unmounter.unmount() {
            tracing::warn!(error = %e, "unmount failed");
        }
    });
    tracing::info!(mountpoint = %p.mountpoint.display(), "mounted");
    session
        .run()
        .map_err(|e| MountError::Other(format!("FUSE session ended with an error: {e}")))?;
    tracing::info!("unmounted");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .thread_name("vaultfs-io")
        .enable_all()
        .build()
}

/// `vaultfs mount --foreground`.
pub fn run_foreground(args: &MountArgs) -> Result<(), MountError> {
    harden(!args.no_mlock);
    let p = prepare(args)?;
    let rt = runtime().map_err(|e| MountError::Other(format!("cannot start runtime: {e}")))?;
    rt.block_on(check_vault(&p.client))?;
    serve(p, &rt)
}
