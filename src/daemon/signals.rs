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
//! Each one is logged by name. The fault signals (SIGSEGV, SIGBUS, SIGILL,
//! SIGFPE, SIGTRAP, SIGSYS, SIGABRT) keep their default: they mean a bug,
//! and a handler could not resume the faulting code. SIGKILL and SIGSTOP
//! cannot be caught.

use std::io;

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
/// a file by name (an audit log) adds its reopen with [`Reload::on`].
/// Actions may be added while signals are already served (those that need
/// the mount are added once it exists).
#[derive(Default)]
pub struct Reload {
    actions: std::sync::Mutex<Vec<(&'static str, ReloadAction)>>,
}

type ReloadAction = Box<dyn Fn() + Send + Sync>;

impl Reload {
    pub fn on(&self, what: &'static str, f: impl Fn() + Send + Sync + 'static) {
        self.actions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((what, Box::new(f)));
    }

    fn run(&self) {
        let actions = self.actions.lock().unwrap_or_else(|e| e.into_inner());
        for (what, f) in actions.iter() {
            f();
            tracing::info!("SIGHUP: {what}");
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
        let table = handled();
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
