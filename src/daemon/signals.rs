//! What each signal does to a running daemon. Nothing the kernel would
//! deliver with a terminating default is left to that default, which would
//! kill the daemon silently and leave a dead mount:
//!
//! - SIGTERM, SIGINT, SIGQUIT, SIGXCPU, SIGPWR: unmount and exit 0.
//! - SIGHUP: drop every cached answer and reopen the log file (the
//!   [`Reload`] actions), then serve on.
//! - SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPIPE, SIGXFSZ,
//!   SIGSTKFLT and the real-time signals: ignored, with a log line.
//!
//! - The fault signals (SIGILL, SIGTRAP, SIGABRT, SIGFPE, SIGSEGV, SIGBUS,
//!   SIGSYS) sent by another process (`kill`): unmount and exit 0, as
//!   SIGTERM. Raised by a real fault (or by the daemon itself, as `abort`
//!   does): one fixed line naming it on stderr (the log), then the default
//!   action (a core dump), as a handler cannot resume the faulting code.
//!
//! Each one is logged by name. SIGKILL and SIGSTOP cannot be caught.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::OnceLock;

use nix::sys::signal::{self as sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{self, getpid};

use tokio::io::AsyncReadExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Unmount and exit, as SIGTERM.
    Stop,
    /// Run the [`Reload`] actions.
    Reload,
    /// Log it and carry on.
    Ignore,
}

/// The named signals and what they do; the real-time ones are added by
/// [`handled`].
const NAMED: &[(libc::c_int, &str, Action)] = &[
    (libc::SIGTERM, "SIGTERM", Action::Stop),
    (libc::SIGINT, "SIGINT", Action::Stop),
    (libc::SIGQUIT, "SIGQUIT", Action::Stop),
    (libc::SIGXCPU, "SIGXCPU", Action::Stop),
    (libc::SIGPWR, "SIGPWR", Action::Stop),
    (libc::SIGHUP, "SIGHUP", Action::Reload),
    (libc::SIGUSR1, "SIGUSR1", Action::Ignore),
    (libc::SIGUSR2, "SIGUSR2", Action::Ignore),
    (libc::SIGALRM, "SIGALRM", Action::Ignore),
    (libc::SIGVTALRM, "SIGVTALRM", Action::Ignore),
    (libc::SIGPROF, "SIGPROF", Action::Ignore),
    (libc::SIGIO, "SIGIO", Action::Ignore),
    (libc::SIGPIPE, "SIGPIPE", Action::Ignore),
    (libc::SIGXFSZ, "SIGXFSZ", Action::Ignore),
    (libc::SIGSTKFLT, "SIGSTKFLT", Action::Ignore),
];

/// A [`FAULTS`] row: number, name, and its line, whole, so that the handler
/// writes it in one `write`.
macro_rules! fault {
    ($sig:ident) => {
        (
            libc::$sig,
            stringify!($sig),
            concat!(
                "vaultfs: fatal signal ",
                stringify!($sig),
                " (a bug): dumping core\n"
            )
            .as_bytes(),
        )
    };
}

/// The fault signals, and the line written when one is a real fault. The
/// runtime's signal streams refuse some of them (a handler that returns
/// would re-run the faulting instruction), so these get a handler of their
/// own ([`on_fault`]).
const FAULTS: &[(libc::c_int, &str, &[u8])] = &[
    fault!(SIGILL),
    fault!(SIGTRAP),
    fault!(SIGABRT),
    fault!(SIGFPE),
    fault!(SIGSEGV),
    fault!(SIGBUS),
    fault!(SIGSYS),
];

/// The write end of the pipe [`on_fault`] tells the runtime through about
/// a fault signal another process sent; unset before [`Signals::install`].
/// It lives as long as the process: the handler may run at any time.
static FAULT_PIPE: OnceLock<OwnedFd> = OnceLock::new();

/// The fault signals' handler. Async-signal-safe only: atomics (the
/// `OnceLock` read), getpid, write, sigaction, raise.
extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler;
    // si_pid is meaningful for si_code <= 0 (SI_USER, SI_QUEUE, SI_TKILL),
    // the only case it is read in.
    let sent = unsafe { (*info).si_code <= 0 && (*info).si_pid() != getpid().as_raw() };
    if let (true, Some(pipe)) = (sent, FAULT_PIPE.get()) {
        // A full pipe drops the byte: one is already queued.
        let _ = unistd::write(pipe, &[sig as u8]);
        return;
    }
    let line = FAULTS
        .iter()
        .find(|f| f.0 == sig)
        .map_or(&b"vaultfs: fatal signal\n"[..], |f| f.2);
    let _ = unistd::write(io::stderr(), line);
    let Ok(signal) = Signal::try_from(sig) else {
        return;
    };
    // SAFETY: putting back the default action, which is not a handler. The
    // signal raised next is delivered when this handler returns (a fault
    // re-run then also meets the default): the core dump happens as without
    // a handler.
    let _ = unsafe { sigaction::signal(signal, SigHandler::SigDfl) };
    let _ = sigaction::raise(signal);
}

/// Install [`on_fault`] for every fault signal, telling `pipe` (when there
/// is one) about those another process sent.
fn install_fault_handlers(pipe: Option<OwnedFd>) -> io::Result<()> {
    if let Some(pipe) = pipe {
        let _ = FAULT_PIPE.set(pipe);
    }
    // On the alternate stack (a stack overflow is a SIGSEGV) when the
    // thread has one.
    let action = SigAction::new(
        SigHandler::SigAction(on_fault),
        SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK | SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for &(n, _, _) in FAULTS {
        let signal = Signal::try_from(n).map_err(io::Error::from)?;
        // SAFETY: `on_fault` is an SA_SIGINFO handler of the right type
        // that makes only async-signal-safe calls.
        unsafe { sigaction::sigaction(signal, &action) }.map_err(io::Error::from)?;
    }
    Ok(())
}

/// Every handled signal: number, name, action.
pub fn handled() -> Vec<(libc::c_int, String, Action)> {
    let mut all: Vec<_> = NAMED
        .iter()
        .map(|&(n, name, a)| (n, name.to_string(), a))
        .collect();
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    all.extend((min..=max).map(|n| (n, format!("SIGRTMIN+{}", n - min), Action::Ignore)));
    all
}

/// What SIGHUP runs, in order. Each action is named for the log line. The
/// daemon adds its cache drop and the log reopen; anything else that holds
/// a file by name (an audit log) adds its reopen with [`Reload::on`]. An
/// action says whether it was done: only a done one gets its log line.
/// Actions may be added while signals are already served (those that need
/// the mount are added once it exists).
#[derive(Default)]
pub struct Reload {
    actions: std::sync::Mutex<Vec<(&'static str, ReloadAction)>>,
}

/// Returns whether it was done; one that was not logs why itself.
type ReloadAction = Box<dyn Fn() -> bool + Send + Sync>;

impl Reload {
    pub fn on(&self, what: &'static str, f: impl Fn() -> bool + Send + Sync + 'static) {
        self.actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((what, Box::new(f)));
    }

    fn run(&self) {
        let actions = self.actions.lock().unwrap_or_else(|e| e.into_inner());
        for (what, f) in actions.iter() {
            if f() {
                tracing::info!("SIGHUP: {what}");
            }
        }
    }
}

/// The handlers, installed. Installed as soon as the runtime exists, so a
/// signal that arrives while the daemon starts is not lost to its default;
/// it is acted on once [`Signals::serve`] runs.
pub struct Signals {
    rx: mpsc::UnboundedReceiver<usize>,
    table: Vec<(libc::c_int, String, Action)>,
}

impl Signals {
    /// Must be called inside the runtime.
    pub fn install() -> io::Result<Signals> {
        let mut table = handled();
        let (tx, rx) = mpsc::unbounded_channel();
        for (i, (n, _, _)) in table.iter().enumerate() {
            let mut s = signal(SignalKind::from_raw(*n))?;
            let tx = tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    if tx.send(i).is_err() {
                        break;
                    }
                }
            });
        }
        let first_fault = table.len();
        table.extend(
            FAULTS
                .iter()
                .map(|&(n, name, _)| (n, name.to_string(), Action::Stop)),
        );
        let (write, read) = std::os::unix::net::UnixStream::pair()?;
        write.set_nonblocking(true)?;
        read.set_nonblocking(true)?;
        let mut read = tokio::net::UnixStream::from_std(read)?;
        tokio::spawn(async move {
            let mut b = [0u8; 1];
            while read.read_exact(&mut b).await.is_ok() {
                let Some(i) = FAULTS.iter().position(|f| f.0 == libc::c_int::from(b[0])) else {
                    continue;
                };
                if tx.send(first_fault + i).is_err() {
                    break;
                }
            }
        });
        install_fault_handlers(Some(write.into()))?;
        Ok(Signals { rx, table })
    }

    /// Act on signals until one says stop; returns its name.
    pub async fn serve(mut self, reload: &Reload) -> String {
        while let Some(i) = self.rx.recv().await {
            let (n, name, action) = &self.table[i];
            match action {
                Action::Stop => return name.clone(),
                Action::Reload => {
                    tracing::info!(signal = %name, "signal received: dropping cached answers, reopening the log");
                    reload.run();
                }
                Action::Ignore => {
                    tracing::warn!(signal = %name, number = n, "signal received and ignored")
                }
            }
        }
        // Every sender is gone: the runtime is shutting down.
        "shutdown".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real fault (and `abort`, raised by the process itself) is written
    /// down in one line, then kills as its default does: in a child, with
    /// its stderr on a pipe and core dumps off.
    #[test]
    fn a_real_fault_writes_one_line_then_dies_of_it() {
        use nix::sys::resource::{setrlimit, Resource};
        use nix::sys::wait::{waitpid, WaitStatus};
        use std::io::Read;

        /// A real SIGSEGV without `unsafe`: a stack overflow, met on the
        /// alternate stack.
        fn overflow(depth: u64) -> u64 {
            let frame = std::hint::black_box([depth as u8; 512]);
            if std::hint::black_box(depth) == u64::MAX {
                return 0;
            }
            overflow(depth + 1) + u64::from(frame[7])
        }
        fn segv() {
            std::hint::black_box(overflow(0));
        }
        fn abort() {
            std::process::abort()
        }
        for (sig, name, crash) in [
            (Signal::SIGSEGV, "SIGSEGV", segv as fn()),
            (Signal::SIGABRT, "SIGABRT", abort),
        ] {
            let (read, write) = unistd::pipe().unwrap();
            // SAFETY: in the child only async-signal-safe calls before the
            // fault, and it never returns; the parent reads and reaps it.
            match unsafe { unistd::fork() }.unwrap() {
                unistd::ForkResult::Child => {
                    drop(read);
                    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
                    let _ = unistd::dup2_stderr(&write);
                    if install_fault_handlers(None).is_ok() {
                        crash();
                    }
                    // Dies of SIGABRT: not the status asked for.
                    std::process::abort();
                }
                unistd::ForkResult::Parent { child } => {
                    drop(write);
                    let mut out = String::new();
                    std::fs::File::from(read).read_to_string(&mut out).unwrap();
                    let status = waitpid(child, None).unwrap();
                    assert!(
                        matches!(status, WaitStatus::Signaled(_, s, _) if s == sig),
                        "{name}: {status:?}"
                    );
                    assert_eq!(
                        out,
                        format!("vaultfs: fatal signal {name} (a bug): dumping core\n")
                    );
                }
            }
        }
    }

    /// Every signal whose default action ends the process, other than the
    /// fault signals and the uncatchable ones, is handled; none twice.
    #[test]
    fn every_terminating_signal_is_handled_once() {
        let all = handled();
        let mut nums: Vec<_> = all.iter().map(|(n, _, _)| *n).collect();
        nums.sort_unstable();
        let len = nums.len();
        nums.dedup();
        assert_eq!(nums.len(), len, "a signal is listed twice");
        let faults = [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGTRAP,
            libc::SIGSYS,
            libc::SIGABRT,
            libc::SIGKILL,
            libc::SIGSTOP,
        ];
        // Defaults that do not end the process (signal(7)).
        let harmless = [
            libc::SIGCHLD,
            libc::SIGCONT,
            libc::SIGURG,
            libc::SIGWINCH,
            libc::SIGTSTP,
            libc::SIGTTIN,
            libc::SIGTTOU,
        ];
        for n in 1..=libc::SIGRTMAX() {
            // glibc keeps 32 and 33 for its threads.
            if (32..libc::SIGRTMIN()).contains(&n) || faults.contains(&n) || harmless.contains(&n) {
                continue;
            }
            assert!(nums.contains(&n), "signal {n} is left to its default");
        }
        assert!(all
            .iter()
            .any(|(n, name, a)| *n == libc::SIGHUP && name == "SIGHUP" && *a == Action::Reload));
    }
}
