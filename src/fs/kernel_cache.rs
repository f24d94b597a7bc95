//! What the kernel may cache of the mount, and for how long
//! (docs/performance.md, "The kernel cache"). The fs core asks this
//! module for every TTL and directory mtime it hands out; nothing here
//! knows FUSE or Vault.
//!
//! The rules:
//! - A file's name and attributes may be kept until the cached answer they
//!   came from expires (never longer than `--ttl`): when the daemon would
//!   serve a new version, the kernel looks the name up again.
//! - A directory's name keeps the full `--ttl`: a directory's inode does not
//!   change with its content.
//! - The kernel keeps the listings it reads and is never asked before
//!   serving them (no opendir); it drops its copy when the directory's mtime
//!   changes. So each listing served is recorded ([`KernelCache::note_served`]):
//!   a listing unlike the last one recorded gets a new, strictly later mtime.
//! - A directory's attributes may be kept only until the answers of the
//!   listing the kernel may hold expire (one never served: until the answers
//!   cached now expire, or `--ttl` when none is), so that it asks again
//!   before serving that listing longer.
//! - Before a directory's attributes are handed out again, a listing that
//!   outlived its answers ([`KernelCache::stale`]) is rebuilt and recorded,
//!   so a change shows as a new mtime.
//! - Records go with their inodes: [`KernelCache::forget`] when the kernel
//!   drops one, and an amortised sweep of those gone otherwise.

use std::collections::hash_map::Entry as Slot;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

use crate::tree::{Entry, Kind};

/// The kernel-cache policy of one mount.
pub struct KernelCache {
    /// The longest the kernel may keep anything (`--ttl`).
    ttl: Duration,
    /// The mtime of a file with none and of a directory whose listing
    /// never changed while served.
    start: SystemTime,
    served: Mutex<ServedDirs>,
}

#[derive(Default)]
struct ServedDirs {
    by_ino: HashMap<u64, Served>,
    /// How many records `by_ino` may hold before those of inodes that are
    /// gone are dropped.
    prune_at: usize,
}

/// A listing the kernel may have cached.
struct Served {
    fingerprint: u64,
    /// When the answers the served listing came from expire: the kernel's
    /// attributes of the directory are never valid longer.
    until: Instant,
    /// The directory's mtime: changes whenever the listing served does.
    mtime: SystemTime,
}

impl KernelCache {
    pub fn new(ttl: Duration) -> Self {
        KernelCache {
            ttl,
            start: SystemTime::now(),
            served: Mutex::default(),
        }
    }

    /// The mtime the kernel is given: a file's own, a directory's from the
    /// listings served of it.
    pub fn mtime(&self, e: &Entry) -> SystemTime {
        match e.kind {
            Kind::File => e.mtime.unwrap_or(self.start),
            Kind::Dir => {
                let served = self.served.lock().expect("served");
                served.by_ino.get(&e.ino).map_or(self.start, |s| s.mtime)
            }
        }
    }

    /// How long the kernel may keep an inode's attributes. A directory never
    /// served is bounded by `cached_until`: when the answers it would be
    /// listed from now expire, if any are cached.
    pub fn attr_ttl(
        &self,
        e: &Entry,
        cached_until: impl FnOnce(u64) -> Option<Instant>,
    ) -> Duration {
        match e.kind {
            Kind::File => self.file_ttl(e),
            Kind::Dir => {
                let served = self.served.lock().expect("served");
                let until = served.by_ino.get(&e.ino).map(|s| s.until);
                drop(served);
                // Nothing cached: whatever is fetched later expires later.
                until
                    .or_else(|| cached_until(e.ino))
                    .map_or(self.ttl, |u| remaining(u, self.ttl))
            }
        }
    }

    /// How long the kernel may keep a name: a file's until its version may
    /// change; a directory's name stays a directory.
    pub fn entry_ttl(&self, e: &Entry) -> Duration {
        match e.kind {
            Kind::File => self.file_ttl(e),
            Kind::Dir => self.ttl,
        }
    }

    fn file_ttl(&self, e: &Entry) -> Duration {
        e.valid_until.map_or(self.ttl, |u| remaining(u, self.ttl))
    }

    /// Record a listing of `ino` served (or checked), built from answers
    /// that expire at `until`. Now and then the records of inodes that are
    /// no longer `live` are dropped.
    pub fn note_served(
        &self,
        ino: u64,
        entries: &[(String, Entry)],
        until: Instant,
        live: impl Fn(u64) -> bool,
    ) {
        let fingerprint = listing_fingerprint(entries);
        let mut served = self.served.lock().expect("served");
        let ServedDirs { by_ino, prune_at } = &mut *served;
        match by_ino.entry(ino) {
            Slot::Vacant(v) => {
                v.insert(Served {
                    fingerprint,
                    until,
                    mtime: self.start,
                });
                // FORGET removes the record of an inode it drops, but an
                // inode a listing still held goes later, when that listing
                // is dropped: sweep (amortised: the map at least doubles in
                // between).
                if by_ino.len() > *prune_at {
                    by_ino.retain(|&ino, _| live(ino));
                    *prune_at = (by_ino.len() * 2).max(1024);
                }
            }
            Slot::Occupied(mut o) => {
                let s = o.get_mut();
                if s.fingerprint != fingerprint {
                    s.fingerprint = fingerprint;
                    s.mtime = SystemTime::now().max(s.mtime + Duration::from_nanos(1));
                }
                s.until = until;
            }
        }
    }

    /// The kernel dropped `ino`, and with it any listing it cached.
    pub fn forget(&self, ino: u64) {
        self.served.lock().expect("served").by_ino.remove(&ino);
    }

    /// Whether the kernel may hold a listing of `ino` that has outlived the
    /// answers it came from.
    pub fn stale(&self, ino: u64) -> bool {
        let served = self.served.lock().expect("served");
        served
            .by_ino
            .get(&ino)
            .is_some_and(|s| s.until <= Instant::now())
    }

    /// How many directories have a record.
    #[cfg(test)]
    pub(crate) fn records(&self) -> usize {
        self.served.lock().expect("served").by_ino.len()
    }
}

/// What a listing shows, inode numbers left out: an entry not handed to
/// the kernel may be dropped and numbered anew in the next chunk.
fn listing_fingerprint(entries: &[(String, Entry)]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for (name, e) in entries {
        (name, e.kind == Kind::Dir, e.fingerprint, e.size, e.mtime).hash(&mut h);
    }
    h.finish()
}

fn remaining(until: Instant, cap: Duration) -> Duration {
    until.saturating_duration_since(Instant::now()).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);
    const DIR: u64 = 7;

    fn entry(ino: u64, kind: Kind, valid_until: Option<Instant>) -> Entry {
        Entry {
            ino,
            kind,
            size: 3,
            mtime: None,
            fingerprint: 11,
            valid_until,
        }
    }

    fn dir() -> Entry {
        entry(DIR, Kind::Dir, None)
    }

    fn listing(names: &[&str]) -> Vec<(String, Entry)> {
        let file = |i| entry(100 + i as u64, Kind::File, None);
        names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), file(i)))
            .collect()
    }

    fn in_secs(s: u64) -> Instant {
        Instant::now() + Duration::from_secs(s)
    }

    fn nothing_cached(_: u64) -> Option<Instant> {
        None
    }

    fn all_live(_: u64) -> bool {
        true
    }

    #[test]
    fn a_files_ttl_is_its_answers_remaining_validity_capped_at_the_ttl() {
        let k = KernelCache::new(TTL);
        let soon = entry(1, Kind::File, Some(in_secs(10)));
        for ttl in [k.attr_ttl(&soon, nothing_cached), k.entry_ttl(&soon)] {
            assert!(ttl <= Duration::from_secs(10) && ttl > Duration::from_secs(9));
        }
        let late = entry(1, Kind::File, Some(in_secs(3600)));
        assert_eq!(k.attr_ttl(&late, nothing_cached), TTL);
        assert_eq!(k.entry_ttl(&late), TTL);
        let expired = entry(1, Kind::File, Some(Instant::now()));
        assert_eq!(k.attr_ttl(&expired, nothing_cached), Duration::ZERO);
        assert_eq!(k.entry_ttl(&expired), Duration::ZERO);
        let unbounded = entry(1, Kind::File, None);
        assert_eq!(k.attr_ttl(&unbounded, nothing_cached), TTL);
    }

    #[test]
    fn a_directorys_attributes_expire_with_the_listing_served() {
        let k = KernelCache::new(TTL);
        // Never served: the answers cached now, or the full TTL.
        assert_eq!(k.attr_ttl(&dir(), nothing_cached), TTL);
        let cached = k.attr_ttl(&dir(), |_| Some(in_secs(20)));
        assert!(cached <= Duration::from_secs(20) && cached > Duration::from_secs(19));
        // Served: that listing's expiry, whatever is cached now.
        k.note_served(DIR, &listing(&["a"]), in_secs(5), all_live);
        let ttl = k.attr_ttl(&dir(), |_| Some(in_secs(3600)));
        assert!(ttl <= Duration::from_secs(5) && ttl > Duration::from_secs(4));
        k.note_served(DIR, &listing(&["a"]), Instant::now(), all_live);
        assert_eq!(k.attr_ttl(&dir(), nothing_cached), Duration::ZERO);
        // Its name keeps the full TTL.
        assert_eq!(k.entry_ttl(&dir()), TTL);
    }

    #[test]
    fn a_changed_listing_gets_a_strictly_later_mtime_and_an_unchanged_one_keeps_it() {
        let k = KernelCache::new(TTL);
        let first = k.mtime(&dir());
        k.note_served(DIR, &listing(&["a", "b"]), in_secs(60), all_live);
        assert_eq!(k.mtime(&dir()), first, "a first listing keeps the start");
        let mut last = first;
        // Changes closer together than the clock's resolution still count.
        for names in [&["a"][..], &["a", "c"], &["a"], &["a", "b"]] {
            k.note_served(DIR, &listing(names), in_secs(60), all_live);
            let now = k.mtime(&dir());
            assert!(now > last, "{names:?} did not move the mtime");
            last = now;
        }
        k.note_served(DIR, &listing(&["a", "b"]), in_secs(30), all_live);
        assert_eq!(k.mtime(&dir()), last);
        // A file's content changing under one name is a change too.
        let mut changed = listing(&["a", "b"]);
        changed[1].1.fingerprint += 1;
        k.note_served(DIR, &changed, in_secs(60), all_live);
        assert!(k.mtime(&dir()) > last);
    }

    #[test]
    fn inode_numbers_are_not_part_of_a_listing() {
        let k = KernelCache::new(TTL);
        let l = listing(&["a"]);
        k.note_served(DIR, &l, in_secs(60), all_live);
        let before = k.mtime(&dir());
        let mut renumbered = l.clone();
        renumbered[0].1.ino += 1000;
        k.note_served(DIR, &renumbered, in_secs(60), all_live);
        assert_eq!(k.mtime(&dir()), before);
    }

    #[test]
    fn stale_once_the_served_listings_answers_expire() {
        let k = KernelCache::new(TTL);
        assert!(!k.stale(DIR), "nothing served, nothing stale");
        k.note_served(DIR, &listing(&["a"]), in_secs(60), all_live);
        assert!(!k.stale(DIR));
        k.note_served(DIR, &listing(&["a"]), Instant::now(), all_live);
        assert!(k.stale(DIR));
        k.note_served(DIR, &listing(&["a"]), in_secs(60), all_live);
        assert!(!k.stale(DIR), "a recheck renews the record");
    }

    #[test]
    fn records_of_gone_inodes_are_swept_and_forgotten_ones_dropped() {
        let k = KernelCache::new(TTL);
        let l = listing(&["a"]);
        // Only even inodes live: the sweep keeps the map near their number.
        for ino in 0..10_000u64 {
            k.note_served(ino, &l, in_secs(60), |i| i % 2 == 0);
        }
        let held = k.records();
        assert!(
            (5_000..8_000).contains(&held),
            "{held} records for 5,000 live directories"
        );
        let other = 1 << 40;
        k.note_served(other, &l, Instant::now(), all_live);
        assert!(k.stale(other));
        k.forget(other);
        assert!(!k.stale(other));
        assert_eq!(k.records(), held);
    }
}
