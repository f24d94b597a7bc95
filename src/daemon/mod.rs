//! The mount's life: check the token, mount, prove the mount is live, serve,
//! unmount on a signal. Errors found before going into the background
//! ([`fork`]) are returned directly. [`control`]: `vaultfs status` and
//! `vaultfs unmount`; [`report`]: `vaultfs audit`.

mod control;
mod error;
mod fork;
mod fuse_access;
mod harden;
mod readiness;
mod report;
mod signals;

pub use control::{status, unmount};
pub use error::MountError;
pub use report::audit;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fuser::Session;

use crate::audit::{self, AuditLog};
use crate::auth::TokenSource;
use crate::cli::{MountArgs, Settings};
use crate::env;
use crate::error::VaultError;
use crate::fs::VaultFs;
use crate::fuse::FuseFs;
use crate::logging;
use crate::mountpoint::{self, PidFile, Shown, State};
use crate::private;
use crate::tree::Tree;
use crate::vault::{TokenInfo, VaultClient};
use readiness::Reporter;
use signals::{Reload, Signals};

/// Everything resolved and checked before mounting.
struct Prepared {
    settings: Settings,
    client: Arc<VaultClient>,
    /// The read audit's file, opened before going into the background so
    /// that a bad path fails `mount` itself.
    audit: Option<private::LogFile>,
}

/// Read the token and build the client: errors here need no network.
fn prepare(settings: Settings) -> Result<Prepared, MountError> {
    let home = env::home(&env::process);
    let token = TokenSource::resolve(
        settings.token_file.as_deref(),
        &env::process,
        home.as_deref(),
    )?;
    let client = Arc::new(VaultClient::new(settings.client.clone(), Arc::new(token))?);
    Ok(Prepared {
        settings,
        client,
        audit: None,
    })
}

/// Check the token and that mounts can be listed (through the tree, whose
/// cache then already holds the mount table).
async fn check_vault(
    client: &VaultClient,
    tree: &Tree<VaultClient>,
) -> Result<TokenInfo, MountError> {
    let addr = client.config().shown_address();
    let info = match client.lookup_self().await {
        Ok(info) => {
            tracing::info!(
                source = %client.token().origin(),
                ttl_s = info.ttl.as_secs(),
                renewable = info.renewable,
                "token accepted"
            );
            info
        }
        Err(e @ (VaultError::BadToken(_) | VaultError::Forbidden)) => {
            return Err(MountError::TokenRejected {
                origin: client.token().origin().to_string(),
                addr,
                source: e,
            })
        }
        Err(e) => return Err(MountError::Unreachable { addr, source: e }),
    };
    tree.mounts()
        .await
        .map_err(|e| MountError::Mounts { addr, source: e })?;
    Ok(info)
}

/// Make `path` ready to mount on: recover a dead mount left by a killed
/// daemon, refuse a live one, create the directory if missing, and refuse
/// one that holds files unless `allow_non_empty`.
///
/// Mounting over a live vaultfs mount is an error, whatever its settings:
/// a second daemon stacked on the first would hide it without stopping it.
/// Emptiness is judged on the directory a mount would cover: under a dead
/// mount, only once that mount is gone (its root cannot be read).
fn prepare_mountpoint(path: &Path, allow_non_empty: bool) -> Result<(), MountError> {
    let err = |message: String| MountError::Mountpoint {
        path: path.to_path_buf(),
        message,
    };
    let entry = mountpoint::mount_at(path);
    match entry
        .clone()
        .map_or(State::Free, |e| mountpoint::probe(path, e))
    {
        State::Free => {}
        State::Dead => {
            tracing::warn!(mountpoint = %Shown(path), "recovering a dead vaultfs mount (its daemon was killed)");
            let entry = entry.expect("a dead mount is in the table");
            mountpoint::unmount(&entry, true).map_err(|e| {
                err(format!(
                    "a dead FUSE mount is left here and cannot be removed: {e}"
                ))
            })?;
        }
        s @ (State::Live | State::Unresponsive) => {
            let pid = PidFile::path_for(&env::process, path)
                .and_then(|f| PidFile::read_live(&f))
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default();
            let why = if s == State::Unresponsive {
                " but its daemon does not answer (stopped?)"
            } else {
                ""
            };
            return Err(MountError::AlreadyMounted {
                path: path.to_path_buf(),
                pid,
                why,
            });
        }
        State::Other(fstype) => {
            return Err(err(format!("busy: a {fstype} filesystem is mounted here")))
        }
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {
            if allow_non_empty {
                return Ok(());
            }
            let mut entries = std::fs::read_dir(path).map_err(|e| err(e.to_string()))?;
            match entries.next() {
                None => Ok(()),
                Some(_) => Err(err(
                    "not empty: mounting would hide its files; empty it, choose another \
                     mount point, or pass --allow-non-empty"
                        .into(),
                )),
            }
        }
        Ok(_) => Err(err("not a directory".into())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(path).map_err(|e| err(format!("cannot create: {e}")))
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Mount and serve until unmounted or signalled. Blocks. `reporter` hears
/// once the root has been listed (or why the mount failed to come up); it is
/// left pending when an error is returned before the mount exists.
fn serve(
    p: Prepared,
    tree: Arc<Tree<VaultClient>>,
    token: TokenInfo,
    rt: &tokio::runtime::Runtime,
    reporter: &mut Reporter,
    life: &Life,
    reload: &Reload,
) -> Result<(), MountError> {
    let mp = &p.settings.mountpoint;
    let audit = match (p.audit, &p.settings.audit) {
        (Some(file), Some(a)) => Some(
            AuditLog::start(file, p.settings.log.max_size, a.listings)
                .map_err(|e| MountError::Other(format!("cannot start the read audit: {e}")))?,
        ),
        _ => None,
    };
    if let Some(a) = &audit {
        let a = a.clone();
        reload.on("audit file reopened", move || a.reopen());
    }
    let fs = VaultFs::new(tree.clone(), p.settings.fs.clone()).with_audit(audit.clone());
    let fs = FuseFs::new(fs, rt.handle().clone());
    life.mounting();
    let session = Session::new(fs, mp, &p.settings.fuse).map_err(|source| MountError::Fuse {
        path: mp.clone(),
        message: fuse_access::explain(&source),
    })?;
    // Who we are in the mount table, read before anyone else can stack a
    // mount here (the mount lock is held).
    let mine = own_entry(mp);
    let serving = session
        .spawn()
        .map_err(|e| MountError::Other(format!("cannot start the FUSE session: {e}")))?;
    let notifier = serving.notifier();
    let session_thread = without_unmount_by_path(serving)
        .map_err(|e| MountError::Other(format!("cannot start a thread: {e}")))?;
    let Some(mine) = mine else {
        return Err(MountError::Mountpoint {
            path: mp.clone(),
            message: "mounted, but the mount table does not show it there".into(),
        });
    };
    tracing::debug!(mount_id = mine.id, dev = %mine.dev, "mounted");
    reload.on("the kernel's cached names, attributes and pages dropped", {
        let tree = tree.clone();
        move || {
            invalidate_kernel(&tree, &notifier);
            true
        }
    });
    life.mounted(mine.clone());
    crate::renew::spawn(p.client.clone(), token, rt.handle());
    // The session must run for the root to be listed: check from a thread
    // of our own while it serves.
    let check = {
        let mine = mine.clone();
        let mp = mp.clone();
        let wait = p.settings.wait;
        let address = p.client.config().shown_address();
        let reporter = std::mem::take(reporter);
        std::thread::Builder::new()
            .name("vaultfs-ready".into())
            .spawn(move || announce_when_live(&mp, &address, wait, reporter, &mine))
            .map_err(|e| MountError::Other(format!("cannot start a thread: {e}")))?
    };
    let ended = session_thread
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the FUSE session panicked")));
    if let Some(a) = &audit {
        a.flush(Duration::from_secs(2));
    }
    let (ready, _pid_file) = check.join().unwrap_or((
        Err(MountError::Other("readiness check panicked".into())),
        None,
    ));
    // The session ends when the kernel ends the connection (unmounted, or
    // detached and the last file closed); on an error our mount may still be
    // there, and is removed, but only if it is still ours.
    if mountpoint::find_again(&mine).is_some() {
        unmount_own(&mine);
    }
    ready?;
    ended.map_err(|e| MountError::Other(format!("FUSE session ended with an error: {e}")))?;
    tracing::info!("unmounted");
    Ok(())
}

/// Make the kernel ask again for everything it may hold: attributes and
/// listings of directories, and file names (a file inode is one version of
/// a file: the name leads to the current one). Errors are per entry and
/// expected (ENOENT: the kernel no longer holds it).
fn invalidate_kernel(tree: &Tree<VaultClient>, notifier: &fuser::Notifier) {
    let (dirs, names) = tree.kernel_held();
    for ino in dirs {
        let _ = notifier.inval_inode(fuser::INodeNo(ino), 0, 0);
    }
    for (parent, name) in names {
        let _ = notifier.inval_entry(fuser::INodeNo(parent), std::ffi::OsStr::new(&name));
    }
}

/// The topmost mount at `mp`, if it is a vaultfs mount: ours, just made.
/// Looked for a few times before giving up, since giving up leaves a mount
/// that only the next `mount` or `unmount` of the path removes.
fn own_entry(mp: &Path) -> Option<mountpoint::MountEntry> {
    let at = |p: &Path| mountpoint::mount_at(p).filter(|e| e.is_vaultfs());
    (0..5).find_map(|i| {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        at(mp).or_else(|| mp.canonicalize().ok().and_then(|c| at(&c)))
    })
}

/// The session's thread, with fuser's unmount-on-drop disarmed.
///
/// fuser unmounts by path when its session handle is dropped (and checks
/// first whether its connection is still mounted, wrongly, so it always
/// does): after a lazy detach that is whatever is mounted at the path by
/// then, such as the next vaultfs mount, and after a rename of a directory
/// above the mount point, someone else's filesystem. Unmounting is
/// [`unmount_own`]'s job instead, by the mount's identity. fuser's mount
/// handle (a path, and a second reference to the /dev/fuse descriptor) is
/// leaked on purpose: the descriptor closes when the process exits. The
/// session's thread handle is taken out first, a finished placeholder
/// thread's left in its place (and leaked with it: one small exited
/// thread, never joined).
fn without_unmount_by_path(
    mut serving: fuser::BackgroundSession,
) -> io::Result<std::thread::JoinHandle<io::Result<()>>> {
    let placeholder = std::thread::Builder::new()
        .name("vaultfs-unused".into())
        .stack_size(0)
        .spawn(|| Ok(()))?;
    let session = std::mem::replace(&mut serving.guard, placeholder);
    std::mem::forget(serving);
    Ok(session)
}

/// Prove the mount is live (it is FUSE, and its root lists), then record the
/// pid and tell the parent and systemd. On failure, unmount so the session
/// ends and nothing is left behind. The probe is bounded by `wait` like the
/// parent: a session that never answers must not keep this thread forever.
fn announce_when_live(
    mp: &Path,
    address: &str,
    wait: Duration,
    mut reporter: Reporter,
    mine: &mountpoint::MountEntry,
) -> (Result<(), MountError>, Option<PidFile>) {
    let probe = mp.to_path_buf();
    let listed = mountpoint::bounded(mountpoint::PROBE, wait, move || {
        if mountpoint::is_fuse_root(&probe) {
            list_root(&probe)
        } else {
            Err(io::Error::other("it is not mounted"))
        }
    })
    .unwrap_or_else(|| {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {}", humantime::format_duration(wait)),
        ))
    });
    if let Err(source) = listed {
        let e = MountError::NotReady {
            path: mp.to_path_buf(),
            source,
        };
        reporter.failed(&e);
        unmount_own(mine);
        return (Err(e), None);
    }
    let pid_file = PidFile::path_for(&env::process, mp).and_then(|f| {
        PidFile::create(&f, address)
            .inspect_err(|e| tracing::warn!(error = %e, "cannot write pid file: `vaultfs unmount` will not wait for this daemon"))
            .ok()
    });
    if reporter.ready().is_err() {
        tracing::warn!("nobody is waiting for the mount any more (interrupted?): unmounting");
        unmount_own(mine);
        return (Ok(()), pid_file);
    }
    if let Err(e) = readiness::sd_notify(&env::process, "READY=1") {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
    tracing::info!(mountpoint = %Shown(mp), "mounted and live");
    (Ok(()), pid_file)
}

/// Read every entry of the root. Permission denied still proves the kernel
/// got answers from us (e.g. --uid set to another user, mode 0500).
fn list_root(mp: &Path) -> io::Result<()> {
    let r = std::fs::read_dir(mp).and_then(|mut d| d.try_for_each(|e| e.map(drop)));
    match r {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        r => r,
    }
}

/// Unmount our own mount, wherever it is now (see [`mountpoint::unmount`]),
/// and nothing else; when busy (root gets EBUSY while files are open),
/// detach it lazily: the kernel ends the session once the last file closes.
/// When another filesystem now covers it, it is left alone and the daemon
/// ends the session itself: the process exits, and our mount, if it is
/// still attached under the other one, answers "not connected" until the
/// next `vaultfs mount` or `unmount` removes it.
fn unmount_own(mine: &mountpoint::MountEntry) {
    use mountpoint::Unmounted;
    let r = mountpoint::unmount(mine, false).or_else(|e| {
        if !e.is_busy() {
            return Err(e);
        }
        tracing::warn!(
            "the mount is busy: detaching it lazily (the daemon exits when the last file closes)"
        );
        mountpoint::unmount(mine, true)
    });
    match r {
        Ok(Unmounted::Done(path)) if path != mine.target => {
            tracing::info!(now_at = %path.display(), "unmounted our mount where it was moved to")
        }
        Ok(Unmounted::Done(_)) => {}
        Ok(Unmounted::Gone) => {
            tracing::info!("our mount is already gone: nothing to unmount");
            std::process::exit(0);
        }
        Err(e) => {
            tracing::error!(error = %e, "not unmounting: exiting");
            std::process::exit(1);
        }
    }
}

fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .thread_name("vaultfs-io")
        .enable_all()
        .build()
}

/// Everything after the fork (or all of it in the foreground): needs the
/// runtime, so threads, so it never runs in a process that will fork.
fn run_daemon(p: Prepared, reporter: &mut Reporter) -> Result<(), MountError> {
    harden::harden(p.settings.mlock);
    let rt = runtime().map_err(|e| MountError::Other(format!("cannot start runtime: {e}")))?;
    let signals = {
        let _in = rt.enter();
        Signals::install().map_err(|e| MountError::Other(format!("cannot handle signals: {e}")))?
    };
    let tree = Arc::new(
        Tree::new(p.client.clone(), p.settings.cache)
            .with_prefetch(p.settings.prefetch.then(|| p.client.slots()))
            .with_scan(p.settings.scan),
    );
    let reload = Arc::new(Reload::default());
    reload.on("cached answers dropped", {
        let tree = tree.clone();
        move || {
            tree.forget_answers();
            true
        }
    });
    reload.on("log file reopened", || {
        let reopened = logging::reopen();
        if !reopened {
            tracing::warn!("cannot reopen the log file: writing on in the old one");
        }
        reopened
    });
    let life = Arc::new(Life::default());
    {
        let (reload, life) = (reload.clone(), life.clone());
        rt.spawn(async move {
            let name = signals.serve(&reload).await;
            life.stop(&name);
        });
    }
    let token = rt.block_on(check_vault(&p.client, &tree))?;
    serve(p, tree, token, &rt, reporter, &life, &reload)
}

/// How far the daemon got, for a stopping signal: before the mount is made
/// it just exits; while it is being made the stop waits for it; after, the
/// mount is unmounted (only ours, [`unmount_own`]).
#[derive(Default)]
struct Life(std::sync::Mutex<Phase>);

#[derive(Default)]
enum Phase {
    #[default]
    Starting,
    /// Mounting; `Some`: a stopping signal (its name) came meanwhile.
    Mounting(Option<String>),
    Mounted(mountpoint::MountEntry),
}

impl Life {
    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mounting(&self) {
        let mut phase = self.lock();
        if let Phase::Starting = *phase {
            *phase = Phase::Mounting(None);
        }
    }

    fn mounted(&self, mine: mountpoint::MountEntry) {
        let pending = match std::mem::replace(&mut *self.lock(), Phase::Mounted(mine.clone())) {
            Phase::Mounting(pending) => pending,
            _ => None,
        };
        if let Some(name) = pending {
            Self::unmount(&name, &mine);
        }
    }

    fn stop(&self, name: &str) {
        let mut phase = self.lock();
        match &mut *phase {
            Phase::Starting => {
                tracing::info!(signal = %name, "signal received before mounting: exiting");
                std::process::exit(0);
            }
            Phase::Mounting(pending) => *pending = Some(name.to_string()),
            Phase::Mounted(mine) => {
                let mine = mine.clone();
                drop(phase);
                Self::unmount(name, &mine);
            }
        }
    }

    fn unmount(name: &str, mine: &mountpoint::MountEntry) {
        tracing::info!(signal = %name, "signal received: unmounting");
        let _ = readiness::sd_notify(&env::process, "STOPPING=1");
        unmount_own(mine);
    }
}

/// `vaultfs mount`.
pub fn mount(args: &MountArgs) -> Result<(), MountError> {
    let settings = Settings::resolve(args, &env::process)?;
    let log_f = match &settings.log.file {
        Some(log) => {
            Some(private::open_log(&log.path, log.default_place).map_err(MountError::Log)?)
        }
        None => None,
    };
    // The same open file serves the logger and, in the background, the
    // daemon's stderr: the path is never opened twice. (The logger moves
    // stderr along when it rotates the file.)
    let dup = |f: &private::LogFile| {
        f.file
            .try_clone()
            .map_err(|e| MountError::Other(format!("cannot duplicate the log file: {e}")))
    };
    let stderr_f = log_f.as_ref().map(dup).transpose()?;
    logging::init(log_f, settings.log.format, settings.log.max_size)
        .map_err(|e| MountError::Other(format!("cannot start logging: {e}")))?;
    let mut p = prepare(settings)?;
    if let Some(a) = &p.settings.audit {
        p.audit = Some(audit::open(&a.path).map_err(MountError::Audit)?);
        let remembered = mountpoint::state_dir(&env::process)
            .map(|d| audit::remember(&d, &p.settings.mountpoint, &a.path));
        if let Some(Err(e)) = remembered {
            tracing::warn!(error = %e, "cannot record the audit file's place: `vaultfs audit` will need --file");
        }
    }
    let mp = &p.settings.mountpoint;
    let lock = mountpoint::lock(&env::process, mp, p.settings.wait).map_err(|e| {
        MountError::Mountpoint {
            path: mp.clone(),
            message: format!("cannot take the mount lock: {e}"),
        }
    })?;
    prepare_mountpoint(mp, p.settings.allow_non_empty)?;
    if p.settings.foreground {
        return run_daemon(p, &mut Reporter::none());
    }
    let watch = fork::Watch {
        wait: p.settings.wait,
        mountpoint: p.settings.mountpoint.clone(),
        log: p.settings.log.file.as_ref().map(|l| l.path.clone()),
    };
    fork::background(|reporter| run_daemon(p, reporter), watch, stderr_f, lock)
}
