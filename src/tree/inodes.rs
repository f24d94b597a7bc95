//! The inode table: which node each inode number stands for, and how long
//! it lives. Also what an inode is ([`Node`]) and what the adapter gets
//! back for one ([`Entry`], [`Held`], [`Listing`]), since each of those
//! holds references in the table.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::time::Instant;

use crate::error::FsError;
use crate::secret::{Secret, SecretFile};
use crate::store::KvMount;

pub const ROOT_INO: u64 = 1;

/// Everything that has an inode.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Node {
    Root,
    /// A directory made by a slash in a mount path (`team` of `team/kv`).
    Prefix(String),
    /// A folder and/or a secret inside a mount; `path` "" is the mount root.
    Dir {
        mount: KvMount,
        path: String,
    },
    /// `.versions` of a KV v2 secret: a directory per version that still
    /// holds data (history.rs).
    Versions {
        mount: KvMount,
        secret: String,
    },
    /// `.versions/<n>`: version `n` of a secret, laid out like the secret.
    AtVersion {
        mount: KvMount,
        secret: String,
        n: u64,
    },
    /// One content version of one file of a secret's directory: a changed
    /// value is a new inode, so the kernel's page cache of an inode only
    /// ever holds that inode's bytes (docs/performance.md).
    File {
        mount: KvMount,
        /// Shared by the secret's files.
        secret: Arc<str>,
        file: SecretFile,
        version: Version,
    },
}

/// What one file inode holds: its attributes never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    /// A keyed hash of the content.
    pub fingerprint: u64,
    pub size: u64,
    pub mtime: Option<SystemTime>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// What the adapter needs to build attributes.
#[derive(Debug, Clone)]
pub struct Entry {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub mtime: Option<SystemTime>,
    /// A file's content fingerprint (a keyed hash of its bytes); 0 for a
    /// directory. Lets the adapter tell whether a listing changed without
    /// comparing inode numbers, which are not stable for unreferenced entries.
    pub fingerprint: u64,
    /// Until when the kernel may keep the entry: the expiry of the cached
    /// answer it was built from (a file's secret), so the kernel never
    /// serves a name's old version after the daemon would serve a new one.
    /// `None`: the full `--ttl`.
    pub valid_until: Option<Instant>,
}

/// The inode table. Every inode handed out holds references: one per
/// lookup the kernel counts (released by FORGET) and one per directory
/// snapshot showing it ([`Listing`]). An inode without references is
/// dropped; its node gets a new number if it is seen again. Numbers are
/// never reused. A file inode holds its secret (shared with the cache)
/// while it lives, so reads are answered by inode, with no open.
pub(super) struct Inodes {
    by_node: HashMap<Arc<Node>, u64>,
    by_ino: HashMap<u64, Slot>,
    next: u64,
}

struct Slot {
    node: Arc<Node>,
    refs: u64,
    /// A file inode's secret: any version of it whose rendering of the
    /// file has the inode's fingerprint, so the same bytes.
    secret: Option<Arc<Secret>>,
}

impl Inodes {
    pub(super) fn new() -> Self {
        let root = Arc::new(Node::Root);
        let mut t = Inodes {
            by_node: HashMap::new(),
            by_ino: HashMap::new(),
            next: ROOT_INO + 1,
        };
        t.by_node.insert(root.clone(), ROOT_INO);
        t.by_ino.insert(
            ROOT_INO,
            Slot {
                node: root,
                refs: 1,
                secret: None,
            },
        );
        t
    }

    pub(super) fn node(&self, ino: u64) -> Option<Arc<Node>> {
        self.by_ino.get(&ino).map(|s| s.node.clone())
    }

    /// The inode of `node`, allocated if new, with one more reference.
    /// A file inode keeps `secret`, which holds its content: the newest
    /// answer given (the same bytes, as the node holds the fingerprint), so
    /// the read audit asks the answer this lookup was served from, not the
    /// first one, whether an open is its first.
    pub(super) fn acquire(&mut self, node: Node, secret: Option<&Arc<Secret>>) -> u64 {
        if let Some(&i) = self.by_node.get(&node) {
            let slot = self.by_ino.get_mut(&i).expect("inode table");
            slot.refs += 1;
            if let (Some(held), Some(new)) = (&mut slot.secret, secret) {
                if !Arc::ptr_eq(held, new) {
                    *held = new.clone();
                }
            }
            return i;
        }
        let i = self.next;
        self.next += 1;
        let node = Arc::new(node);
        self.by_node.insert(node.clone(), i);
        let secret = secret.cloned();
        self.by_ino.insert(
            i,
            Slot {
                node,
                refs: 1,
                secret,
            },
        );
        i
    }

    /// One more reference on an inode that is still there.
    pub(super) fn add_ref(&mut self, ino: u64) {
        if let Some(s) = self.by_ino.get_mut(&ino) {
            s.refs += 1;
        }
    }

    /// Drop `n` references; returns whether the inode is gone. The root
    /// stays for the life of the mount.
    pub(super) fn release(&mut self, ino: u64, n: u64) -> bool {
        if ino == ROOT_INO {
            return false;
        }
        let Some(slot) = self.by_ino.get_mut(&ino) else {
            return false;
        };
        slot.refs = slot.refs.saturating_sub(n);
        if slot.refs > 0 {
            return false;
        }
        let slot = self.by_ino.remove(&ino).expect("inode table");
        self.by_node.remove(&slot.node);
        true
    }

    /// Every inode with its node.
    pub(super) fn all(&self) -> impl Iterator<Item = (u64, &Node)> {
        self.by_ino.iter().map(|(&i, s)| (i, &*s.node))
    }

    /// The inode of `node`, if it has one now.
    pub(super) fn ino_of(&self, node: &Node) -> Option<u64> {
        self.by_node.get(node).copied()
    }

    /// The content of a file inode: the secret it holds and which file of
    /// it the inode is.
    pub(super) fn content(&self, ino: u64) -> Result<(Arc<Secret>, SecretFile), FsError> {
        let slot = self.by_ino.get(&ino).ok_or(FsError::BadHandle)?;
        match (&*slot.node, &slot.secret) {
            (Node::File { file, .. }, Some(s)) => Ok((s.clone(), file.clone())),
            _ => Err(FsError::IsDir),
        }
    }
}

/// Where an entry sits in a directory stream: a keyed hash of its name, so
/// the position names the entry, and a stream resumed after the listing
/// changed neither repeats nor skips the entries that stayed (there is no
/// opendir snapshot to keep positions stable). Streams list in this order,
/// and a directory read fetches its children in it, so a walker finds the
/// next child first. One key per mount: a clone orders alike.
#[derive(Clone, Default)]
pub(super) struct StreamOrder(RandomState);

impl StreamOrder {
    /// The cookie of `name`. 1 and 2 are `.` and `..`; the top bits stay
    /// clear, as `telldir` offsets are signed.
    pub(super) fn cookie(&self, name: &str) -> u64 {
        3 + (self.0.hash_one(name) >> 2)
    }
}

/// Directory entries (without `.` and `..`) in stream order: by cookie
/// ([`StreamOrder`]), so a chunk of a stream is found by binary
/// search rather than by sorting the listing again. Each entry holds a
/// reference on its inode while this lives, so a `readdirplus` reply built
/// from it never hands out a dropped inode.
pub struct Listing {
    entries: Vec<(String, Entry)>,
    /// Each entry's position in the stream, ascending.
    cookies: Vec<u64>,
    /// When the first of the cached answers this listing was built from
    /// expires: the kernel may keep the listing no longer than that.
    pub valid_until: Instant,
    inodes: Arc<Mutex<Inodes>>,
}

impl Listing {
    /// A listing of `entries`, each with a reference on its inode, put in
    /// stream order by `cookie`.
    pub(super) fn new(
        entries: Vec<(String, Entry)>,
        cookie: impl Fn(&str) -> u64,
        valid_until: Instant,
        inodes: Arc<Mutex<Inodes>>,
    ) -> Self {
        let ordered = stream_order(
            entries
                .into_iter()
                .map(|(n, e)| (cookie(&n), n, e))
                .collect(),
        );
        let (cookies, entries) = ordered.into_iter().map(|(c, n, e)| (c, (n, e))).unzip();
        Listing {
            entries,
            cookies,
            valid_until,
            inodes,
        }
    }

    /// The entries that follow `offset` in the stream, with their cookies.
    pub fn after(&self, offset: u64) -> impl Iterator<Item = (u64, &str, &Entry)> {
        let from = self.cookies.partition_point(|&c| c <= offset);
        self.cookies[from..]
            .iter()
            .zip(&self.entries[from..])
            .map(|(&c, (n, e))| (c, n.as_str(), e))
    }
}

impl Deref for Listing {
    type Target = [(String, Entry)];
    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl Drop for Listing {
    fn drop(&mut self) {
        let mut t = self.inodes.lock().expect("inode lock");
        for (_, e) in &self.entries {
            t.release(e.ino, 1);
        }
    }
}

/// Sort by cookie. Two names with one cookie (a 62-bit keyed hash:
/// practically never) would make a resumed stream skip the second, so
/// they are spaced apart, the same way in every chunk of a stream over the
/// same listing.
fn stream_order<N: Ord, T>(mut entries: Vec<(u64, N, T)>) -> Vec<(u64, N, T)> {
    entries.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    for i in 1..entries.len() {
        if entries[i].0 <= entries[i - 1].0 {
            entries[i].0 = entries[i - 1].0 + 1;
        }
    }
    entries
}

/// An entry whose inode reference is meant for the kernel: released when
/// this is dropped, unless [`Held::hand_over`] says the reply went out.
pub struct Held {
    entry: Entry,
    inodes: Option<Arc<Mutex<Inodes>>>,
}

impl Held {
    /// `entry`, whose reference in `inodes` this guards.
    pub(super) fn new(entry: Entry, inodes: Arc<Mutex<Inodes>>) -> Self {
        Held {
            entry,
            inodes: Some(inodes),
        }
    }

    /// The reply carrying the entry was sent: the kernel holds the
    /// reference now (released by FORGET).
    pub fn hand_over(mut self) {
        self.inodes = None;
    }
}

impl Deref for Held {
    type Target = Entry;
    fn deref(&self) -> &Entry {
        &self.entry
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(inodes) = self.inodes.take() {
            inodes
                .lock()
                .expect("inode lock")
                .release(self.entry.ino, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::test_tree::m;

    #[test]
    fn inodes_live_while_referenced_and_are_never_reused() {
        let mut t = Inodes::new();
        let dir = |p: &str| Node::Dir {
            mount: m("secret"),
            path: p.into(),
        };
        let a = t.acquire(dir("a"), None);
        assert_eq!(t.acquire(dir("a"), None), a, "same node, same inode");
        let b = t.acquire(dir("b"), None);
        assert_ne!(a, b);
        assert!(!t.release(a, 1), "one reference left");
        assert!(t.release(a, 1));
        assert!(!t.release(a, 1), "already gone");
        // Seen again: a new number, not the old one, and not b's.
        let a2 = t.acquire(dir("a"), None);
        assert!(a2 != a && a2 != b);
        // A FORGET of more than is held drops it; the root is never dropped.
        assert!(t.release(b, 5));
        assert!(!t.release(ROOT_INO, 100));
        assert!(t.by_ino.contains_key(&ROOT_INO));
        assert_eq!(t.by_ino.len(), t.by_node.len());
    }

    fn entry() -> Entry {
        Entry {
            ino: 9,
            kind: Kind::File,
            size: 0,
            mtime: None,
            fingerprint: 0,
            valid_until: None,
        }
    }

    /// A listing of names with the given cookies.
    fn listing(l: &[(u64, &str)]) -> Listing {
        let cookies: HashMap<&str, u64> = l.iter().map(|&(c, n)| (n, c)).collect();
        Listing::new(
            l.iter().map(|&(_, n)| (n.to_string(), entry())).collect(),
            |n| cookies[n],
            Instant::now(),
            Arc::new(Mutex::new(Inodes::new())),
        )
    }

    /// Read a stream a chunk of `n` at a time, resuming after the cookie of
    /// the last entry read, over whatever the listing is at that moment.
    fn read_in_chunks(listings: &[Vec<(u64, &str)>], n: usize) -> Vec<String> {
        let (mut offset, mut out) = (0, Vec::new());
        for l in listings.iter().cycle().take(1000) {
            let l = listing(l);
            let take: Vec<_> = l.after(offset).take(n).collect();
            let Some(last) = take.last() else {
                return out;
            };
            offset = last.0;
            out.extend(take.iter().map(|e| e.1.to_string()));
        }
        panic!("stream did not end");
    }

    #[test]
    fn resumes_after_the_named_entry_across_a_change() {
        // Cookies out of name order, as hashes are; "new" arrives and "b"
        // goes between chunks.
        let before = vec![(10, "a"), (30, "b"), (20, "c"), (40, "d")];
        let after = vec![(10, "a"), (5, "new"), (20, "c"), (40, "d")];
        let got = read_in_chunks(&[before, after], 2);
        // a, c read first; then, over the new listing, what follows c's
        // cookie (20): d. b (gone) and new (cookie before 20) are not seen,
        // and nothing repeats.
        assert_eq!(got, ["a", "c", "d"]);
    }

    #[test]
    fn equal_cookies_are_spaced_apart_and_none_is_skipped() {
        let l = vec![(7, "x"), (7, "y"), (8, "z"), (3, "w")];
        let got = read_in_chunks(std::slice::from_ref(&l), 1);
        assert_eq!(got, ["w", "x", "y", "z"]);
        let cookies: Vec<u64> = listing(&l).after(0).map(|e| e.0).collect();
        assert_eq!(cookies, [3, 7, 8, 9]);
    }
}
