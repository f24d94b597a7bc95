//! Who sent a FUSE request: the details `/proc` gives of the calling
//! thread, read once per program and cached.
//!
//! The cache is keyed by the thread id AND its start time (`/proc/PID/stat`
//! field 22), and an entry is used only while the executable (`/proc/PID/exe`,
//! read as a link: never followed, so a hung filesystem under it cannot hang
//! the audit) and `comm` are still the ones it was read with: a reused pid
//! has another start time, and an `exec()` keeps pid and start time but
//! changes the executable. A process that started after the request (its
//! pid was reused in between) or is gone is not read at all: the record
//! then holds only what the request carried.

use std::collections::HashMap;
use std::sync::Arc;

use nix::time::{clock_gettime, ClockId};
use nix::unistd::{sysconf, SysconfVar};

use crate::mountpoint::proc_stat;
pub use crate::mountpoint::Stat;

/// What `/proc` told about a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The thread group (process) the calling thread belongs to.
    pub tgid: Option<u32>,
    pub ppid: u32,
    pub comm: String,
    /// `/proc/PID/exe`; `None` when it cannot be read (another user's
    /// process, a kernel thread).
    pub exe: Option<String>,
}

/// Where caller details come from: `/proc`, or a fake in tests.
pub trait Proc {
    fn stat(&self, pid: u32) -> Option<Stat>;
    fn exe(&self, pid: u32) -> Option<String>;
    fn tgid(&self, pid: u32) -> Option<u32>;
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
    fn ticks_per_sec(&self) -> u64;
}

/// The real `/proc`.
pub struct ProcFs {
    tick: u64,
}

impl ProcFs {
    pub fn new() -> ProcFs {
        let tick = sysconf(SysconfVar::CLK_TCK).ok().flatten();
        ProcFs {
            tick: tick
                .and_then(|t| u64::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(100),
        }
    }
}

impl Proc for ProcFs {
    fn stat(&self, pid: u32) -> Option<Stat> {
        proc_stat(pid)
    }

    fn exe(&self, pid: u32) -> Option<String> {
        let p = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        Some(p.to_string_lossy().into_owned())
    }

    fn tgid(&self, pid: u32) -> Option<u32> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        s.lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .and_then(|v| v.trim().parse().ok())
    }

    fn ticks_per_sec(&self) -> u64 {
        self.tick
    }
}

struct Cached {
    start: u64,
    caller: Arc<Caller>,
}

/// Caller details by pid and start time, bounded.
pub struct Callers<P> {
    proc: P,
    by_pid: HashMap<u32, Cached>,
    /// How many `/proc` reads of a program's details were made (tests).
    pub reads: u64,
}

/// Most callers remembered; past it the cache starts over (a workspace runs
/// far fewer programs that read secrets).
const MAX_CALLERS: usize = 4096;

impl<P: Proc> Callers<P> {
    pub fn new(proc: P) -> Callers<P> {
        Callers {
            proc,
            by_pid: HashMap::new(),
            reads: 0,
        }
    }

    /// The caller of a request sent by thread `pid` at `at_ns` nanoseconds
    /// after boot (CLOCK_BOOTTIME); `None` when it is gone, or its pid now
    /// belongs to a process started after the request.
    pub fn resolve(&mut self, pid: u32, at_ns: u64) -> Option<Arc<Caller>> {
        if pid == 0 {
            // Another pid namespace: the kernel could not name the caller.
            return None;
        }
        let stat = self.proc.stat(pid)?;
        let tick = self.proc.ticks_per_sec();
        // Whole ticks, rounded down: a process seen as started after the
        // request surely did (within one tick it cannot be told).
        if stat.start.saturating_mul(1_000_000_000 / tick.max(1)) > at_ns {
            self.by_pid.remove(&pid);
            return None;
        }
        let exe = self.proc.exe(pid);
        if let Some(c) = self.by_pid.get(&pid) {
            if c.start == stat.start && c.caller.exe == exe && c.caller.comm == stat.comm {
                return Some(c.caller.clone());
            }
        }
        self.reads += 1;
        let caller = Arc::new(Caller {
            tgid: self.proc.tgid(pid),
            ppid: stat.ppid,
            comm: stat.comm,
            exe,
        });
        if self.by_pid.len() >= MAX_CALLERS {
            self.by_pid.clear();
        }
        self.by_pid.insert(
            pid,
            Cached {
                start: stat.start,
                caller: caller.clone(),
            },
        );
        Some(caller)
    }
}

/// Nanoseconds since boot (CLOCK_BOOTTIME, the clock of `/proc` start
/// times): when a request was received.
pub fn boot_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_BOOTTIME).map_or(0, |ts| {
        (ts.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec() as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// (stat, exe, tgid).
    type Process = (Stat, String, u32);

    /// A process table the test rewrites, by pid.
    #[derive(Default)]
    struct Fake(RefCell<HashMap<u32, Process>>);

    impl Proc for &Fake {
        fn stat(&self, pid: u32) -> Option<Stat> {
            self.0.borrow().get(&pid).map(|p| p.0.clone())
        }
        fn exe(&self, pid: u32) -> Option<String> {
            self.0.borrow().get(&pid).map(|p| p.1.clone())
        }
        fn tgid(&self, pid: u32) -> Option<u32> {
            self.0.borrow().get(&pid).map(|p| p.2)
        }
        fn ticks_per_sec(&self) -> u64 {
            100
        }
    }

    impl Fake {
        fn run(&self, pid: u32, start: u64, exe: &str) {
            let comm = exe.rsplit('/').next().unwrap().to_string();
            let stat = Stat {
                comm,
                state: 'S',
                ppid: 1,
                start,
            };
            self.0.borrow_mut().insert(pid, (stat, exe.into(), pid));
        }
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_reused_pid_is_the_new_program() {
        let fake = Fake::default();
        let mut c = Callers::new(&fake);
        fake.run(42, 100, "/usr/bin/cat");
        assert_eq!(
            c.resolve(42, 5 * SEC).unwrap().exe.as_deref(),
            Some("/usr/bin/cat")
        );
        assert_eq!(
            c.resolve(42, 6 * SEC).unwrap().exe.as_deref(),
            Some("/usr/bin/cat")
        );
        assert_eq!(c.reads, 1, "read once per process");
        // cat exits; pid 42 goes to a new program, started later.
        fake.run(42, 700, "/tmp/evil");
        let got = c.resolve(42, 8 * SEC).unwrap();
        assert_eq!(got.exe.as_deref(), Some("/tmp/evil"));
        assert_eq!(c.reads, 2);
        // Same program, same start time, but the same name at another
        // executable: exec() of a look-alike.
        fake.run(42, 700, "/usr/bin/evil");
        assert_eq!(
            c.resolve(42, 9 * SEC).unwrap().exe.as_deref(),
            Some("/usr/bin/evil")
        );
        // exec() of another program keeps pid and start time.
        fake.run(42, 700, "/usr/bin/head");
        assert_eq!(c.resolve(42, 9 * SEC).unwrap().comm, "head");
    }

    #[test]
    fn a_pid_reused_after_the_request_is_not_the_caller() {
        let fake = Fake::default();
        let mut c = Callers::new(&fake);
        // The request came at 5 s; by the time it is recorded its pid is a
        // process started at 6 s.
        fake.run(42, 600, "/usr/bin/other");
        assert_eq!(c.resolve(42, 5 * SEC), None);
        // Gone altogether, or another pid namespace (pid 0).
        assert_eq!(c.resolve(43, 5 * SEC), None);
        assert_eq!(c.resolve(0, 5 * SEC), None);
        // Started before the request: it is the caller.
        assert!(c.resolve(42, 7 * SEC).is_some());
    }
}
