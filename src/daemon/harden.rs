//! Process hardening for a daemon that holds secrets in memory: no core
//! dumps, no ptrace by same-uid processes, memory kept out of swap.

use std::io;

use nix::errno::Errno;
use nix::sys::mman::{self, MlockAllFlags};
use nix::sys::prctl;
use nix::sys::resource::{self, Resource};

/// Turn off core dumps and ptrace by same-uid processes, and keep memory
/// out of swap when that is safe (see docs/security.md).
pub fn harden(mlock: bool) {
    if let Err(e) = prctl::set_dumpable(false) {
        tracing::warn!(error = %io::Error::from(e), "cannot disable core dumps");
    }
    if !mlock {
        return;
    }
    match memlock_allowed() {
        Ok(()) => {
            // MCL_ONFAULT locks each page when it is first touched instead of
            // faulting in everything mapped: reserved but untouched memory
            // (fuser's 16 MiB request buffer, thread stacks) stays out of
            // RAM, while every page that ever holds data is locked the moment
            // it does. Kernels before 4.4 refuse the flag: lock it all then.
            let all = MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE;
            let on_fault = MlockAllFlags::from_bits_retain(libc::MCL_ONFAULT);
            let mut rc = mman::mlockall(all | on_fault);
            if rc == Err(Errno::EINVAL) {
                rc = mman::mlockall(all);
            }
            if let Err(e) = rc {
                tracing::warn!(
                    error = %io::Error::from(e),
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
    let (cur, max) = resource::getrlimit(Resource::RLIMIT_MEMLOCK)
        .map_err(|e| io::Error::from(e).to_string())?;
    if cur != max {
        let _ = resource::setrlimit(Resource::RLIMIT_MEMLOCK, max, max);
    }
    if max == resource::RLIM_INFINITY || has_cap_ipc_lock() {
        return Ok(());
    }
    Err(format!(
        "RLIMIT_MEMLOCK is {} KiB and CAP_IPC_LOCK is missing",
        max / 1024
    ))
}

fn has_cap_ipc_lock() -> bool {
    const CAP_IPC_LOCK: u32 = 14;
    cap_mask("CapEff:").is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// The capability mask named `field` (`CapEff:`, `CapBnd:`…) of
/// /proc/self/status, if it can be read.
pub(super) fn cap_mask(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix(field))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}
