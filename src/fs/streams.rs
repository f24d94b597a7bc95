//! The listings of directory streams in progress.

use std::sync::Arc;
use tokio::time::Instant;

use crate::tree::Listing;

/// The last listings served, by directory inode, so each later chunk of a
/// stream is a binary search in one (until its answers expire) instead of
/// a rebuild of the whole listing: reading a directory of N entries takes
/// time linear in N, not quadratic. Bounded: [`Streams::MAX_DIRS`]
/// listings and, the newest one aside, [`Streams::MAX_ENTRIES`] entries
/// (each holds its inode and, for a secret's files, the secret).
#[derive(Default)]
pub(super) struct Streams {
    /// Least recently used first.
    held: Vec<(u64, Arc<Listing>)>,
}

impl Streams {
    const MAX_DIRS: usize = 64;
    const MAX_ENTRIES: usize = 200_000;

    /// The listing served last for `ino`, while its answers are fresh.
    pub(super) fn get(&mut self, ino: u64) -> Option<Arc<Listing>> {
        let i = self.held.iter().position(|(i, _)| *i == ino)?;
        let (_, l) = self.held.remove(i);
        if l.valid_until <= Instant::now() {
            return None;
        }
        self.held.push((ino, l.clone()));
        Some(l)
    }

    pub(super) fn put(&mut self, ino: u64, listing: Arc<Listing>) {
        let now = Instant::now();
        self.held.retain(|(i, l)| *i != ino && l.valid_until > now);
        self.held.push((ino, listing));
        while self.held.len() > 1
            && (self.held.len() > Self::MAX_DIRS
                || self.held[..self.held.len() - 1]
                    .iter()
                    .map(|(_, l)| l.len())
                    .sum::<usize>()
                    > Self::MAX_ENTRIES)
        {
            self.held.remove(0);
        }
    }

    pub(super) fn forget(&mut self, ino: u64) {
        self.held.retain(|(i, _)| *i != ino);
    }
}
