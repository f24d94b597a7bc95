//! Process hardening for a daemon that holds secrets in memory: no core
//! dumps, no ptrace by same-uid processes, memory kept out of swap.

use std::io;

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
            // MCL_ONFAULT locks each page when it is first touched instead of
            // faulting in everything mapped: reserved but untouched memory
            // (fuser's 16 MiB request buffer, thread stacks) stays out of
            // RAM, while every page that ever holds data is locked the moment
            // it does. Kernels before 4.4 refuse the flag: lock it all then.
            let all = libc::MCL_CURRENT | libc::MCL_FUTURE;
            // SAFETY: plain syscalls with constant arguments.
            let mut rc = unsafe { libc::mlockall(all | libc::MCL_ONFAULT) };
            if rc != 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINVAL) {
                rc = unsafe { libc::mlockall(all) };
            }
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
    cap_mask("CapEff:").is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// The capability mask named `field` (`CapEff:`, `CapBnd:`…) of
/// /proc/self/status, if it can be read.
pub(super) fn cap_mask(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix(field))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}
