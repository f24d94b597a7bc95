//! The directory tree: which names exist where, and what they hold.
//!
//! This layer knows Vault's data model (mounts, folders, secrets, keys) but
//! neither HTTP (that is `vault.rs`, behind [`SecretStore`]) nor FUSE (that
//! is `fs.rs`). See docs/semantics.md for the rules implemented here.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tokio::sync::Semaphore;

use crate::cache::{Answer, Cache, CachePolicy, Weigh};
use crate::error::{FsError, VaultError};
use crate::naming;
use crate::secret::{Secret, SecretFile, ENV_VIEW, JSON_VIEW};
use crate::store::{KvMount, KvVersion, Metadata, SecretStore};

mod history;

pub const ROOT_INO: u64 = 1;

/// The longest path inside a mount shown, in bytes (Linux's PATH_MAX): a
/// folder deeper than that is left out. Every inode and cache key holds its
/// path, so without a bound a chain of folders (which one LIST answer per
/// level, or one small SCAN answer, can describe without end) would cost
/// memory quadratic in its depth.
pub const MAX_PATH: usize = 4096;

/// How long a mount LISTs after a SCAN ran out of its deadline before SCAN
/// is tried again: long enough that a huge tree costs one slow read in that
/// time, short enough that a Vault that hung for a while gets SCAN back.
const SCAN_RETRY: std::time::Duration = std::time::Duration::from_secs(600);

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
        secret: String,
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

impl Weigh for Secret {
    fn weight(&self) -> usize {
        self.mem_size()
    }
}

impl Weigh for (KvMount, String) {
    fn weight(&self) -> usize {
        self.0.path.len() + self.1.len()
    }
}

impl Weigh for (KvMount, String, u64) {
    fn weight(&self) -> usize {
        self.0.path.len() + self.1.len() + 8
    }
}

impl Weigh for Metadata {
    fn weight(&self) -> usize {
        self.document.mem_size() + self.live.len() * 8
    }
}

impl Weigh for Vec<KvMount> {
    fn weight(&self) -> usize {
        self.iter().map(|m| m.path.len() + 32).sum()
    }
}

/// The inode table. Every inode handed out holds references: one per
/// lookup the kernel counts (released by FORGET) and one per directory
/// snapshot showing it ([`Listing`]). An inode without references is
/// dropped; its node gets a new number if it is seen again. Numbers are
/// never reused. A file inode holds its secret (shared with the cache)
/// while it lives, so reads are answered by inode, with no open.
struct Inodes {
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
    fn new() -> Self {
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

    /// The inode of `node`, allocated if new, with one more reference.
    /// A new file inode keeps `secret`, which holds its content.
    fn acquire(&mut self, node: Node, secret: Option<&Arc<Secret>>) -> u64 {
        if let Some(&i) = self.by_node.get(&node) {
            self.by_ino.get_mut(&i).expect("inode table").refs += 1;
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

    /// Drop `n` references; returns whether the inode is gone. The root
    /// stays for the life of the mount.
    fn release(&mut self, ino: u64, n: u64) -> bool {
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
}

/// Directory entries (without `.` and `..`) in stream order: by cookie
/// ([`Tree::cookie`]), so a chunk of a stream is found by binary search
/// rather than by sorting the listing again. Each entry holds a reference
/// on its inode while this lives, so a `readdirplus` reply built from it
/// never hands out a dropped inode.
pub struct Listing {
    entries: Vec<(String, Entry)>,
    /// Each entry's position in the stream, ascending.
    cookies: Vec<u64>,
    /// When the first of the cached answers this listing was built from
    /// expires: the kernel may keep the listing no longer than that.
    pub valid_until: Instant,
    inodes: Arc<Mutex<Inodes>>,
}

impl Deref for Listing {
    type Target = [(String, Entry)];
    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl Listing {
    /// The entries that follow `offset` in the stream, with their cookies.
    pub fn after(&self, offset: u64) -> impl Iterator<Item = (u64, &str, &Entry)> {
        let from = self.cookies.partition_point(|&c| c <= offset);
        self.cookies[from..]
            .iter()
            .zip(&self.entries[from..])
            .map(|(&c, (n, e))| (c, n.as_str(), e))
    }
}

/// Sort by cookie. Two names with one cookie (a 62-bit keyed hash:
/// practically never) would make a resumed stream skip the second, so
/// they are spaced apart, the same way in every chunk of a stream over the
/// same listing.
pub fn stream_order<N: Ord, T>(mut entries: Vec<(u64, N, T)>) -> Vec<(u64, N, T)> {
    entries.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    for i in 1..entries.len() {
        if entries[i].0 <= entries[i - 1].0 {
            entries[i].0 = entries[i - 1].0 + 1;
        }
    }
    entries
}

/// At most this many children of a directory are prefetched per read of
/// it: the rest are fetched when asked for. Without a bound, one `ls` of a
/// folder of 100,000 secrets would make 100,000 requests.
pub const PREFETCH_MAX: usize = 1000;

/// Whether a sorted LIST answer holds `key`.
fn holds(keys: &[String], key: &str) -> bool {
    keys.binary_search_by(|k| k.as_str().cmp(key)).is_ok()
}

impl Drop for Listing {
    fn drop(&mut self) {
        let mut t = self.inodes.lock().expect("inode lock");
        for (_, e) in &self.entries {
            t.release(e.ino, 1);
        }
    }
}

/// An entry whose inode reference is meant for the kernel: released when
/// this is dropped, unless [`Held::hand_over`] says the reply went out.
pub struct Held {
    entry: Entry,
    inodes: Option<Arc<Mutex<Inodes>>>,
}

impl Held {
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

type Key = (KvMount, String);

pub struct Tree<S> {
    store: Arc<S>,
    /// Bounds background prefetches (see [`Tree::prefetch_children`]);
    /// `None` disables them.
    prefetch: Option<Arc<Semaphore>>,
    mounts: Cache<(), Vec<KvMount>>,
    listings: Cache<Key, Vec<String>>,
    /// SCAN answers: every secret below a folder (see [`Tree::walk_listing`]).
    scans: Cache<Key, Vec<String>>,
    /// Mounts where SCAN was refused (for good: `None`) or ran out of its
    /// deadline (until then): LIST only there.
    no_scan: Mutex<HashMap<String, Option<Instant>>>,
    /// SCAN may be used at all (off with `--no-scan`).
    scan: bool,
    /// The listings cache's byte budget (see [`Tree::scan_budget`]).
    listing_bytes: usize,
    secrets: Cache<Key, Secret>,
    /// KV v2 history (history.rs): versions before the current one, kept
    /// longer than `--ttl`, and metadata.
    old_versions: Cache<(KvMount, String, u64), Secret>,
    metadata: Cache<Key, Metadata>,
    inodes: Arc<Mutex<Inodes>>,
    /// Keys the content fingerprints, so no value can be crafted to
    /// collide with another version of the same file.
    hasher: RandomState,
    /// Keys the directory order (see [`Tree::cookie`]).
    order: RandomState,
}

fn join(parent: &str, seg: &str) -> String {
    if parent.is_empty() {
        seg.to_string()
    } else {
        format!("{parent}/{seg}")
    }
}

fn split_parent(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    }
}

/// Whether a Vault name can be one segment of a request path: `.` and
/// `..` would move the request elsewhere (docs/security.md), and a slash
/// would make it two segments. Such names are never folders or secrets
/// here (nor are names with NUL, which Vault refuses); they can still be
/// key names, which never reach a path.
pub fn is_path_segment(seg: &str) -> bool {
    !seg.is_empty() && seg != "." && seg != ".." && !seg.contains(['/', '\0'])
}

/// The children of the root (`prefix` "") or of a mount-path prefix.
pub fn mount_children(mounts: &[KvMount], prefix: &str) -> Vec<(String, Node)> {
    let mut out = BTreeMap::new();
    for m in mounts
        .iter()
        .filter(|m| m.path.len() <= MAX_PATH && m.path.split('/').all(is_path_segment))
    {
        let rest = if prefix.is_empty() {
            Some(m.path.as_str())
        } else {
            m.path
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('/'))
        };
        let Some(rest) = rest.filter(|r| !r.is_empty()) else {
            continue;
        };
        let seg = rest.split('/').next().unwrap_or(rest);
        let node = if seg == rest {
            Node::Dir {
                mount: m.clone(),
                path: String::new(),
            }
        } else {
            Node::Prefix(join(prefix, seg))
        };
        out.entry(seg.to_string()).or_insert(node);
    }
    out.into_iter().collect()
}

/// Group raw LIST keys into child names: `a` (secret) and `a/` (folder) are
/// one child. Keys that cannot be one path segment are skipped.
pub fn listing_children(keys: &[String]) -> Vec<String> {
    let mut segs: Vec<String> = keys
        .iter()
        .map(|k| k.strip_suffix('/').unwrap_or(k))
        .filter(|s| is_path_segment(s))
        .map(str::to_string)
        .collect();
    segs.sort();
    segs.dedup();
    segs
}

/// Whether a name is a child directory, when it can be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    Yes,
    No,
    /// Vault denied the requests that would tell.
    Denied,
}

impl<S: SecretStore> Tree<S> {
    pub fn new(store: Arc<S>, policy: CachePolicy) -> Self {
        Tree {
            store,
            prefetch: None,
            mounts: Cache::new(CachePolicy {
                max_entries: 1,
                ..policy
            }),
            listings: Cache::new(policy),
            scans: Cache::new(policy),
            no_scan: Mutex::default(),
            scan: true,
            listing_bytes: policy.max_bytes,
            secrets: Cache::new(policy),
            old_versions: Cache::new(CachePolicy {
                ttl: policy.ttl.max(history::OLD_VERSION_TTL),
                ..policy
            }),
            metadata: Cache::new(policy),
            inodes: Arc::new(Mutex::new(Inodes::new())),
            hasher: RandomState::new(),
            order: RandomState::new(),
        }
    }

    /// Let a directory read fetch its children in the background, at most
    /// `max_requests * 3 / 4` at a time, so a quarter of the request slots
    /// stay free for what the user asks next. 0 disables prefetching.
    /// Whether directory reads may use SCAN (on by default; servers without
    /// it are detected).
    pub fn with_scan(mut self, scan: bool) -> Self {
        self.scan = scan;
        self
    }

    pub fn with_prefetch(mut self, max_requests: usize) -> Self {
        self.prefetch =
            (max_requests > 0).then(|| Arc::new(Semaphore::new((max_requests * 3 / 4).max(1))));
        self
    }

    /// Where an entry named `name` sits in a directory stream: a keyed hash
    /// of the name, so the position names the entry, and a stream resumed
    /// after the listing changed neither repeats nor skips the entries that
    /// stayed (there is no opendir snapshot to keep positions stable).
    /// Streams list in this order, and a directory read fetches its
    /// children in it, so a walker finds the next child first. 1 and 2 are
    /// `.` and `..`; the top bits stay clear, as `telldir` offsets are signed.
    pub fn cookie(&self, name: &str) -> u64 {
        3 + (self.order.hash_one(name) >> 2)
    }

    pub fn node(&self, ino: u64) -> Option<Arc<Node>> {
        let t = self.inodes.lock().expect("inode lock");
        t.by_ino.get(&ino).map(|s| s.node.clone())
    }

    /// The inode of a node with one more reference: the caller hands it to
    /// the kernel (a lookup, released by [`Tree::forget`]) or keeps it in a
    /// [`Listing`]. A node keeps its number while referenced.
    fn ino(&self, node: Node, secret: Option<&Arc<Secret>>) -> u64 {
        self.inodes
            .lock()
            .expect("inode lock")
            .acquire(node, secret)
    }

    /// `e`, as returned by [`Tree::lookup`] with one reference, guarded.
    pub fn held(&self, e: Entry) -> Held {
        Held {
            entry: e,
            inodes: Some(self.inodes.clone()),
        }
    }

    /// One more kernel reference on an inode a [`Listing`] holds (an entry
    /// of a `readdirplus` reply counts as a lookup).
    pub fn hand_out(&self, ino: u64) {
        if let Some(s) = self.inodes.lock().expect("inode lock").by_ino.get_mut(&ino) {
            s.refs += 1;
        }
    }

    /// The kernel forgot `n` lookups of `ino`; returns whether the inode
    /// is gone.
    pub fn forget(&self, ino: u64, n: u64) -> bool {
        self.inodes.lock().expect("inode lock").release(ino, n)
    }

    fn version(&self, s: &Secret, file: &SecretFile) -> Option<Version> {
        let c = s.content(file)?;
        Some(Version {
            fingerprint: self.hasher.hash_one(c.as_slice()),
            size: c.len() as u64,
            mtime: s.mtime,
        })
    }

    pub async fn mounts(&self) -> Answer<Vec<KvMount>> {
        let store = &self.store;
        self.mounts.get(&(), || store.mounts()).await
    }

    /// A folder's LIST answer, sorted and without duplicates (whatever the
    /// server sent), so a name is found in it by binary search: a lookup
    /// per child of a big folder must not read the whole answer.
    pub async fn listing(&self, mount: &KvMount, path: &str) -> Answer<Vec<String>> {
        let key = (mount.clone(), path.to_string());
        let store = &self.store;
        let fetch = || async {
            let mut keys = store.list(mount, path).await?;
            keys.sort_unstable();
            keys.dedup();
            Ok(keys)
        };
        self.listings.get(&key, fetch).await
    }

    pub async fn secret(&self, mount: &KvMount, path: &str) -> Answer<Secret> {
        let key = (mount.clone(), path.to_string());
        let store = &self.store;
        self.secrets.get(&key, || store.read(mount, path)).await
    }

    fn dir_entry(&self, node: Node) -> Entry {
        Entry {
            ino: self.ino(node, None),
            kind: Kind::Dir,
            size: 0,
            mtime: None,
            fingerprint: 0,
            valid_until: None,
        }
    }

    fn file_entry(
        &self,
        mount: &KvMount,
        secret_path: &str,
        s: &Arc<Secret>,
        file: SecretFile,
    ) -> Option<Entry> {
        let key = (mount.clone(), secret_path.to_string());
        // The cached answer `s` came from expires then. If the cache holds
        // another answer by now (refreshed, or evicted), the entry is not
        // kept at all: the kernel asks again at once.
        let valid_until = until_of(&self.secrets, &key, &Ok(s.clone()));
        self.file_entry_until(mount, secret_path, s, file, valid_until)
    }

    /// A file of `s` (any answer that renders a secret's files), kept by the
    /// kernel until `valid_until`.
    fn file_entry_until(
        &self,
        mount: &KvMount,
        secret_path: &str,
        s: &Arc<Secret>,
        file: SecretFile,
        valid_until: Instant,
    ) -> Option<Entry> {
        let version = self.version(s, &file)?;
        Some(Entry {
            ino: self.ino(
                Node::File {
                    mount: mount.clone(),
                    secret: secret_path.to_string(),
                    file,
                    version,
                },
                Some(s),
            ),
            kind: Kind::File,
            size: version.size,
            mtime: version.mtime,
            fingerprint: version.fingerprint,
            valid_until: Some(valid_until),
        })
    }

    pub async fn lookup(&self, parent: u64, name: &[u8]) -> Result<Entry, FsError> {
        let node = self.node(parent).ok_or(FsError::BadHandle)?;
        let seg = naming::decode(name).ok_or(FsError::NoEntry)?;
        match &*node {
            Node::Root | Node::Prefix(_) => {
                let prefix = match &*node {
                    Node::Prefix(p) => p.as_str(),
                    _ => "",
                };
                let mounts = self.mounts().await?;
                mount_children(&mounts, prefix)
                    .into_iter()
                    .find(|(s, _)| *s == seg)
                    .map(|(_, n)| self.dir_entry(n))
                    .ok_or(FsError::NoEntry)
            }
            Node::Dir { mount, path } => self.lookup_in_dir(mount, path, &seg).await,
            Node::Versions { mount, secret } => self.lookup_version(mount, secret, &seg).await,
            Node::AtVersion { mount, secret, n } => {
                self.lookup_in_version(mount, secret, *n, &seg).await
            }
            Node::File { .. } => Err(FsError::NotDir),
        }
    }

    async fn lookup_in_dir(
        &self,
        mount: &KvMount,
        path: &str,
        seg: &str,
    ) -> Result<Entry, FsError> {
        // Not a folder we would show (see MAX_PATH); may still be a key.
        let too_deep = join(path, seg).len() > MAX_PATH;
        let known = if !is_path_segment(seg) || too_deep {
            Known::No
        } else {
            self.is_child_dir(mount, path, seg).await?
        };
        if known == Known::Yes {
            return Ok(self.dir_entry(Node::Dir {
                mount: mount.clone(),
                path: join(path, seg),
            }));
        }
        // Only ask for the parent as a secret when its own listing does not
        // rule that out (during an outage that would turn ENOENT into EIO).
        let mut secret_denied = false;
        let parent_secret = if path.is_empty() || self.dir_facts(mount, path).await.0 == Known::No {
            None
        } else {
            match self.secret(mount, path).await {
                Ok(s) => Some(s),
                Err(VaultError::NotFound) => None,
                Err(VaultError::Forbidden) => {
                    secret_denied = true;
                    None
                }
                Err(e) => return Err(e.into()),
            }
        };
        if let Some(s) = &parent_secret {
            if let Some(e) = file_named(s, seg).and_then(|f| self.file_entry(mount, path, s, f)) {
                return Ok(e);
            }
            if let Some(e) = self.history_entry(mount, path, s, seg).await? {
                return Ok(e);
            }
        }
        match known {
            // Vault would not say whether this is a folder. Inside a plain
            // folder, assume it is one, so a read-only token can still walk to
            // secrets it knows the path of; inside a secret, the name is far
            // more likely a key that does not exist.
            Known::Denied if parent_secret.is_none() => Ok(self.dir_entry(Node::Dir {
                mount: mount.clone(),
                path: join(path, seg),
            })),
            _ if too_deep => Err(FsError::PathTooLong),
            // The keys of a secret we may not read: say so, not "no such file".
            _ if secret_denied => Err(VaultError::Forbidden.into()),
            _ => Err(FsError::NoEntry),
        }
    }

    /// Is `seg` a child folder or secret of `path`? Answered from the parent's
    /// LIST when the token may list; otherwise by asking for the child itself,
    /// so that read-only tokens can still walk to what they know the name of.
    async fn is_child_dir(&self, mount: &KvMount, path: &str, seg: &str) -> Result<Known, FsError> {
        // A secret that is not also a folder has no children: LISTing it
        // would cost a request per lookup only to hear 404.
        if self.dir_facts(mount, path).await.1 == Known::No {
            return Ok(Known::No);
        }
        match self.listing(mount, path).await {
            Ok(keys) => {
                let hit = holds(&keys, seg) || holds(&keys, &format!("{seg}/"));
                return Ok(if hit { Known::Yes } else { Known::No });
            }
            Err(VaultError::NotFound) => return Ok(Known::No),
            Err(VaultError::Forbidden) => {}
            Err(e) => return Err(e.into()),
        }
        let child = join(path, seg);
        match self.secret(mount, &child).await {
            Ok(_) => return Ok(Known::Yes),
            Err(VaultError::NotFound | VaultError::Forbidden) => {}
            Err(e) => return Err(e.into()),
        }
        match self.listing(mount, &child).await {
            Ok(keys) if !keys.is_empty() => Ok(Known::Yes),
            Ok(_) | Err(VaultError::NotFound) => Ok(Known::No),
            Err(VaultError::Forbidden) => Ok(Known::Denied),
            Err(e) => Err(e.into()),
        }
    }

    /// Attributes of an inode: a file inode answers its own version's size
    /// and mtime (consistent with its cached pages), never a newer one's.
    pub fn getattr(&self, ino: u64) -> Result<Entry, FsError> {
        let node = self.node(ino).ok_or(FsError::BadHandle)?;
        Ok(match &*node {
            Node::File { version, .. } => Entry {
                ino,
                kind: Kind::File,
                size: version.size,
                mtime: version.mtime,
                fingerprint: version.fingerprint,
                valid_until: None,
            },
            _ => Entry {
                ino,
                kind: Kind::Dir,
                size: 0,
                mtime: None,
                fingerprint: 0,
                valid_until: None,
            },
        })
    }

    /// The content of a file inode: its own version's bytes, whoever asks
    /// and whenever (reads are answered by inode; there is no open).
    pub fn content(&self, ino: u64) -> Result<(Arc<Secret>, SecretFile), FsError> {
        let t = self.inodes.lock().expect("inode lock");
        let slot = t.by_ino.get(&ino).ok_or(FsError::BadHandle)?;
        match (&*slot.node, &slot.secret) {
            (Node::File { file, .. }, Some(s)) => Ok((s.clone(), file.clone())),
            _ => Err(FsError::IsDir),
        }
    }

    /// Every entry of a directory (without `.` and `..`), sorted by name.
    /// With `prefetch`, its children are fetched in the background (see
    /// [`Tree::prefetch_children`]): for the start of a directory stream.
    pub async fn readdir(self: &Arc<Self>, ino: u64, prefetch: bool) -> Result<Listing, FsError> {
        let node = self.node(ino).ok_or(FsError::BadHandle)?;
        let (mount, path) = match &*node {
            Node::Root | Node::Prefix(_) => {
                let prefix = match &*node {
                    Node::Prefix(p) => p.clone(),
                    _ => String::new(),
                };
                let answer = self.mounts().await;
                let until = until_of(&self.mounts, &(), &answer);
                let mounts = answer?;
                return Ok(self.listing_of(
                    mount_children(&mounts, &prefix)
                        .into_iter()
                        .filter_map(|(seg, n)| Some((encoded(&seg)?, self.dir_entry(n))))
                        .collect(),
                    until,
                ));
            }
            Node::Dir { mount, path } => (mount.clone(), path.clone()),
            Node::Versions { mount, secret } => return self.readdir_versions(mount, secret).await,
            Node::AtVersion { mount, secret, n } => {
                return self.readdir_version(mount, secret, *n).await
            }
            Node::File { .. } => return Err(FsError::NotDir),
        };
        let (parent, leaf) = split_parent(&path);
        let parent_listing = match path.is_empty() {
            true => None,
            false => Some(self.listing(&mount, parent).await),
        };
        let (is_secret, is_folder) = match &parent_listing {
            Some(l) => facts(l, leaf),
            None => (Known::No, Known::Yes),
        };
        let (listing, secret) = tokio::join!(
            async {
                match is_folder {
                    Known::No => None,
                    _ if prefetch => Some(self.walk_listing(&mount, &path).await),
                    _ => Some(self.listing(&mount, &path).await),
                }
            },
            async {
                match is_secret {
                    Known::No => None,
                    _ => Some(self.secret(&mount, &path).await),
                }
            }
        );
        if let (Some(Ok(keys)), true) = (&listing, prefetch) {
            self.prefetch_children(&mount, &path, keys);
        }
        self.assemble(&mount, &path, parent_listing.as_ref(), listing, secret)
    }

    /// A folder's listing for the start of a directory read. When it is not
    /// at hand and the server has SCAN, one SCAN answers it and every folder
    /// below it, so a walk of the folder then makes no LIST at all, however
    /// deep (with LIST, each level waits for the one above). Otherwise, and
    /// whenever SCAN fails, LIST as ever.
    async fn walk_listing(&self, mount: &KvMount, path: &str) -> Answer<Vec<String>> {
        let key = (mount.clone(), path.to_string());
        let scan = self.scan && self.scan_allowed(&mount.path);
        if scan && !self.listings.in_hand(&key) {
            let store = &self.store;
            let started = Instant::now();
            match self.scans.get(&key, || store.scan(mount, path)).await {
                Ok(keys) => {
                    if let Some((_, until)) = self.scans.peek_expiry(&key) {
                        match scan_listings(path, &keys, self.scan_budget(&keys)) {
                            Some(folders) => {
                                for (folder, entries) in folders {
                                    let folder_key = (mount.clone(), join(path, &folder));
                                    self.listings.offer(&folder_key, entries, until);
                                }
                            }
                            // Describes far more than it weighs: LIST, as
                            // for an answer too large to take at once.
                            None => {
                                tracing::info!(mount = %mount.path, path = %path, "SCAN answer expands past its budget: listing folders one at a time")
                            }
                        }
                    }
                }
                // Not found, unreachable, or too big to take at once: LIST.
                Err(VaultError::NotFound | VaultError::TooLarge(_)) => {}
                // Slower than its share of the deadline: it would be again
                // (the tree only grows), and each try costs a user's read
                // that share. Only a SCAN that ran for that share: a timeout
                // that comes sooner is the breaker's (another request found
                // Vault down), and says nothing about SCAN.
                // A hung Vault looks the same, so it is tried again later.
                Err(e @ VaultError::Timeout(d)) if !d.is_zero() && started.elapsed() >= d => {
                    tracing::info!(mount = %mount.path, error = %e, retry_s = SCAN_RETRY.as_secs(), "SCAN too slow: listing folders one at a time");
                    let again = Instant::now() + SCAN_RETRY;
                    self.no_scan_until(&mount.path, Some(again));
                }
                Err(e) if e.is_transient() => {}
                // Refused (no `scan` capability) or not understood (a server
                // without SCAN): LIST in this mount from now on, rather than
                // a refused SCAN before every LIST.
                Err(e) => {
                    tracing::info!(mount = %mount.path, error = %e, "SCAN not available: listing folders one at a time");
                    self.no_scan_until(&mount.path, None);
                }
            }
        }
        self.listing(mount, path).await
    }

    /// Whether SCAN may be tried in this mount now.
    fn scan_allowed(&self, mount: &str) -> bool {
        match self.no_scan.lock().expect("no_scan").get(mount) {
            None => true,
            Some(until) => until.is_some_and(|t| Instant::now() >= t),
        }
    }

    /// No SCAN in this mount until then (`None`: for the life of the mount).
    fn no_scan_until(&self, mount: &str, until: Option<Instant>) {
        let mut no_scan = self.no_scan.lock().expect("no_scan");
        // A refusal is for good; a slow SCAN never shortens that.
        if no_scan.get(mount) != Some(&None) {
            no_scan.insert(mount.to_string(), until);
        }
    }

    /// How many bytes the folders derived from one SCAN answer may take:
    /// 4 times the answer plus 1 MiB (a real tree's folders weigh about as
    /// much as its keys), and never more than a quarter of the listings
    /// budget, so one SCAN cannot flush the listings cache.
    fn scan_budget(&self, answer: &Vec<String>) -> usize {
        answer
            .weight()
            .saturating_mul(4)
            .saturating_add(1 << 20)
            .min(self.listing_bytes / 4)
    }

    /// When the first of the answers a directory's listing was built from
    /// expires (its parent's listing, which says what it is; its own listing;
    /// its secret). An answer the cache no longer holds counts as expired.
    fn answers_until(
        &self,
        mount: &KvMount,
        path: &str,
        parent_listing: Option<&Answer<Vec<String>>>,
        listing: Option<&Answer<Vec<String>>>,
        secret: Option<&Answer<Secret>>,
    ) -> Instant {
        let key = (mount.clone(), path.to_string());
        let parent = parent_listing.map(|a| {
            let parent_key = (mount.clone(), split_parent(path).0.to_string());
            until_of(&self.listings, &parent_key, a)
        });
        [
            parent,
            listing.map(|a| until_of(&self.listings, &key, a)),
            secret.map(|a| until_of(&self.secrets, &key, a)),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(Instant::now)
    }

    /// When the cached answers a directory's listing would be built from
    /// expire, if any is cached; `None` when none is (any answer fetched
    /// later expires later than anything handed out now).
    pub fn dir_valid_until(&self, ino: u64) -> Option<Instant> {
        let node = self.node(ino)?;
        match &*node {
            Node::Root | Node::Prefix(_) => self.mounts.peek_expiry(&()).map(|(_, u)| u),
            Node::Dir { mount, path } => {
                let key = (mount.clone(), path.clone());
                let parent = (!path.is_empty())
                    .then(|| (mount.clone(), split_parent(path).0.to_string()))
                    .and_then(|k| self.listings.peek_expiry(&k))
                    .map(|(_, u)| u);
                [
                    parent,
                    self.listings.peek_expiry(&key).map(|(_, u)| u),
                    self.secrets.peek_expiry(&key).map(|(_, u)| u),
                ]
                .into_iter()
                .flatten()
                .min()
            }
            Node::Versions { .. } | Node::AtVersion { .. } => self.history_valid_until(&node),
            Node::File { .. } => None,
        }
    }

    /// [`Tree::readdir`] of a folder or secret when it needs no request
    /// (everything it shows is cached and fresh) and, with `prefetch`, no
    /// prefetch either (its children are cached or on their way); `None`
    /// otherwise. Lets walks skip a task per directory.
    pub fn readdir_cached(&self, ino: u64, prefetch: bool) -> Option<Result<Listing, FsError>> {
        let node = self.node(ino)?;
        let Node::Dir { mount, path } = &*node else {
            return None;
        };
        let (parent, leaf) = split_parent(path);
        let parent_listing = match path.is_empty() {
            true => None,
            false => Some(self.listings.peek(&(mount.clone(), parent.to_string()))?),
        };
        let (is_secret, is_folder) = match &parent_listing {
            Some(l) => facts(l, leaf),
            None => (Known::No, Known::Yes),
        };
        let key = (mount.clone(), path.clone());
        let listing = match is_folder {
            Known::No => None,
            _ => Some(self.listings.peek(&key)?),
        };
        let secret = match is_secret {
            Known::No => None,
            _ => Some(self.secrets.peek(&key)?),
        };
        if let (Some(Ok(keys)), true) = (&listing, prefetch) {
            let all_cached = keys.iter().all(|k| match k.strip_suffix('/') {
                Some(f) => self.listings.in_hand(&(mount.clone(), join(path, f))),
                None => self.secrets.in_hand(&(mount.clone(), join(path, k))),
            });
            if !all_cached {
                return None;
            }
        }
        Some(self.assemble(mount, path, parent_listing.as_ref(), listing, secret))
    }

    fn listing_of(&self, entries: Vec<(String, Entry)>, valid_until: Instant) -> Listing {
        let ordered = stream_order(
            entries
                .into_iter()
                .map(|(n, e)| (self.cookie(&n), n, e))
                .collect(),
        );
        let (cookies, entries) = ordered.into_iter().map(|(c, n, e)| (c, (n, e))).unzip();
        Listing {
            entries,
            cookies,
            valid_until,
            inodes: self.inodes.clone(),
        }
    }

    /// The entries of a directory from its listing and its own secret.
    /// `listing` and `secret` are `None` when the parent's listing says the
    /// directory is no folder, or no secret.
    fn assemble(
        &self,
        mount: &KvMount,
        path: &str,
        parent_listing: Option<&Answer<Vec<String>>>,
        listing: Option<Answer<Vec<String>>>,
        secret: Option<Answer<Secret>>,
    ) -> Result<Listing, FsError> {
        let valid_until = self.answers_until(
            mount,
            path,
            parent_listing,
            listing.as_ref(),
            secret.as_ref(),
        );
        let (mount, path) = (mount.clone(), path.to_string());
        let secret = match secret {
            Some(Ok(s)) => Some(s),
            Some(Err(VaultError::NotFound | VaultError::Forbidden)) | None => None,
            Some(Err(e)) => return Err(e.into()),
        };
        let children = match listing {
            Some(Ok(keys)) => listing_children(&keys),
            None | Some(Err(VaultError::NotFound)) => Vec::new(),
            // A readable secret still shows its keys when its folder is unlistable.
            Some(Err(VaultError::Forbidden)) if secret.is_some() => Vec::new(),
            Some(Err(e)) => return Err(e.into()),
        };
        let mut out: BTreeMap<String, Entry> = BTreeMap::new();
        for seg in &children {
            if join(&path, seg).len() > MAX_PATH {
                tracing::warn!(mount = %mount.path, len = path.len() + seg.len(), "folder path too long; left out");
                continue;
            }
            match encoded(seg) {
                Some(name) => {
                    let node = Node::Dir {
                        mount: mount.clone(),
                        path: join(&path, seg),
                    };
                    out.insert(name, self.dir_entry(node));
                }
                None => {
                    tracing::warn!(mount = %mount.path, path = %path, len = seg.len(), "child name too long or empty; left out")
                }
            }
        }
        if let Some(s) = secret {
            for f in s.files() {
                let Some(name) = file_name(&mount, &path, &f) else {
                    continue;
                };
                // A child folder or secret wins over a key of the same name.
                if out.contains_key(&name) {
                    continue;
                }
                if let Some(e) = self.file_entry(&mount, &path, &s, f) {
                    out.insert(name, e);
                }
            }
        }
        Ok(self.listing_of(out.into_iter().collect(), valid_until))
    }

    /// Walks (`find`, `ls -lR`, `grep -r`) visit every child of a directory
    /// they have just read, one at a time. Fetching those children now, in
    /// parallel, turns a serial chain of round trips into a pipeline: the
    /// walker then finds each child cached or already in flight (the cache's
    /// single-flight joins it). One level deep only, so `ls` of a big tree's
    /// root does not fetch the whole tree, and the first [`PREFETCH_MAX`]
    /// children in stream order only. One task works through them, a
    /// request slot at a time, so a big folder costs no task per child.
    fn prefetch_children(self: &Arc<Self>, mount: &KvMount, path: &str, keys: &[String]) {
        let Some(permits) = &self.prefetch else {
            return;
        };
        // In the order the walker will visit them.
        let mut queue: Vec<(u64, Key, bool)> = keys
            .iter()
            .filter_map(|k| {
                let (seg, folder) = match k.strip_suffix('/') {
                    Some(f) => (f, true),
                    None => (k.as_str(), false),
                };
                if !is_path_segment(seg) || path.len() + seg.len() >= MAX_PATH {
                    return None;
                }
                let cookie = self.cookie(&encoded(seg)?);
                Some((cookie, (mount.clone(), join(path, seg)), folder))
            })
            .collect();
        if queue.len() > PREFETCH_MAX {
            queue.select_nth_unstable_by_key(PREFETCH_MAX, |q| q.0);
            queue.truncate(PREFETCH_MAX);
        }
        queue.sort_unstable_by_key(|q| q.0);
        // Cached, or already on its way (an earlier read of this
        // directory): a fetch would only hold a slot to wait.
        queue.retain(|(_, key, folder)| match folder {
            true => !self.listings.in_hand(key),
            false => !self.secrets.in_hand(key),
        });
        if queue.is_empty() {
            return;
        }
        let (tree, permits) = (self.clone(), permits.clone());
        tokio::spawn(async move {
            for (_, (mount, path), folder) in queue {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let tree = tree.clone();
                // At most as many fetches at once as there are permits.
                tokio::spawn(async move {
                    let _permit = permit;
                    // Errors are cached or retried by whoever asks next.
                    if folder {
                        let _ = tree.listing(&mount, &path).await;
                    } else {
                        let _ = tree.secret(&mount, &path).await;
                    }
                });
            }
        });
    }

    /// What the parent's listing says `path` is: (a secret?, a folder?).
    async fn dir_facts(&self, mount: &KvMount, path: &str) -> (Known, Known) {
        if path.is_empty() {
            return (Known::No, Known::Yes);
        }
        let (parent, leaf) = split_parent(path);
        facts(&self.listing(mount, parent).await, leaf)
    }
}

/// The file of secret `s` named `seg`: a key wins over a view's name.
fn file_named(s: &Secret, seg: &str) -> Option<SecretFile> {
    if s.has_key(seg) {
        Some(SecretFile::Key(seg.to_string()))
    } else if seg == JSON_VIEW {
        Some(SecretFile::Json)
    } else if seg == ENV_VIEW {
        Some(SecretFile::Env)
    } else {
        None
    }
}

/// The file name of a secret's file, `None` (logged) for a key that cannot
/// be one.
fn file_name(mount: &KvMount, path: &str, f: &SecretFile) -> Option<String> {
    match f {
        SecretFile::Key(k) => {
            let name = encoded(k);
            if name.is_none() {
                tracing::warn!(mount = %mount.path, path = %path, len = k.len(), "key name too long or empty; left out");
            }
            name
        }
        SecretFile::Json => Some(JSON_VIEW.to_string()),
        SecretFile::Env => Some(ENV_VIEW.to_string()),
    }
}

/// What a parent's listing says its child `leaf` is: (a secret?, a folder?).
fn facts(listing: &Answer<Vec<String>>, leaf: &str) -> (Known, Known) {
    match listing {
        Ok(keys) => {
            let has = |k: &str| {
                if holds(keys, k) {
                    Known::Yes
                } else {
                    Known::No
                }
            };
            (has(leaf), has(&format!("{leaf}/")))
        }
        Err(_) => (Known::Denied, Known::Denied),
    }
}

/// What a folder of a SCAN's expansion costs besides its path and
/// entries: its cache key and slot, and its vector.
const FOLDER_WEIGHT: usize = std::mem::size_of::<Key>() + 64 + 24;

/// The LIST answer of every folder below a SCAN's folder `base` (`""` for
/// itself, first), from the SCAN's keys (`a/b/c`: `a/` in "", `b/` in "a",
/// `c` in "a/b"), sorted as LIST sorts them. Folders deeper than
/// [`MAX_PATH`] are left out. `None` when the folders would weigh more than
/// `budget` bytes: each holds its own path, so a few deep keys describe far
/// more than they weigh. Time and memory are linear in the answer's size
/// (each segment is hashed once; a folder's path is built once).
fn scan_listings(base: &str, keys: &[String], budget: usize) -> Option<Vec<(String, Vec<String>)>> {
    let base_len = if base.is_empty() { 0 } else { base.len() + 1 };
    let mut paths = vec![String::new()];
    let mut entries: Vec<BTreeSet<String>> = vec![BTreeSet::new()];
    // A folder's index by (its parent's index, its name).
    let mut ids: HashMap<(usize, &str), usize> = HashMap::new();
    let mut weight = FOLDER_WEIGHT;
    for k in keys {
        let mut folder = 0;
        let mut segs = k.split('/').peekable();
        while let Some(seg) = segs.next() {
            let parent = &paths[folder];
            if base_len + parent.len() + usize::from(!parent.is_empty()) + seg.len() > MAX_PATH {
                break;
            }
            let is_folder = segs.peek().is_some();
            let entry = if is_folder {
                format!("{seg}/")
            } else {
                seg.to_string()
            };
            let len = entry.len();
            if entries[folder].insert(entry) {
                weight += len + 24;
            }
            if !is_folder {
                break;
            }
            folder = match ids.get(&(folder, seg)) {
                Some(&id) => id,
                None => {
                    let path = join(&paths[folder], seg);
                    weight += path.len() + FOLDER_WEIGHT;
                    paths.push(path);
                    entries.push(BTreeSet::new());
                    ids.insert((folder, seg), paths.len() - 1);
                    paths.len() - 1
                }
            };
            if weight > budget {
                return None;
            }
        }
        if weight > budget {
            return None;
        }
    }
    Some(
        paths
            .into_iter()
            .zip(entries)
            .map(|(p, e)| (p, e.into_iter().collect()))
            .collect(),
    )
}

/// Until when `used`, an answer taken from `cache` under `key`, is served
/// without asking Vault: its expiry while the cache still holds that very
/// answer, else now (it was refreshed or evicted since).
fn until_of<K, V>(cache: &Cache<K, V>, key: &K, used: &Answer<V>) -> Instant
where
    K: Hash + Eq + Clone + Weigh,
    V: Weigh,
{
    match (cache.peek_expiry(key), used) {
        (Some((Ok(held), until)), Ok(used)) if Arc::ptr_eq(&held, used) => until,
        (Some((Err(_), until)), Err(_)) => until,
        _ => Instant::now(),
    }
}

fn encoded(seg: &str) -> Option<String> {
    naming::encode(seg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KvVersion;

    fn m(p: &str) -> KvMount {
        KvMount {
            path: p.into(),
            version: KvVersion::V2,
        }
    }

    #[test]
    fn mount_paths_nest() {
        let ms = vec![m("secret"), m("team/kv"), m("team/other"), m("a/b/c")];
        let root: Vec<String> = mount_children(&ms, "").into_iter().map(|c| c.0).collect();
        assert_eq!(root, ["a", "secret", "team"]);
        let team = mount_children(&ms, "team");
        assert_eq!(team.len(), 2);
        assert!(matches!(&team[0].1, Node::Dir { mount, .. } if mount.path == "team/kv"));
        assert_eq!(mount_children(&ms, "a")[0].1, Node::Prefix("a/b".into()));
        assert!(mount_children(&ms, "te").is_empty());
    }

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

    #[test]
    fn scan_keys_make_the_list_answers_of_every_folder() {
        let keys: Vec<String> = ["a", "top", "a/x", "a/b/c"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let l: BTreeMap<String, Vec<String>> = scan_listings("", &keys, usize::MAX)
            .unwrap()
            .into_iter()
            .collect();
        let want = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // What `LIST` answers for each (checked against OpenBao by hand).
        assert_eq!(l[""], want(&["a", "a/", "top"]));
        assert_eq!(l["a"], want(&["b/", "x"]));
        assert_eq!(l["a/b"], want(&["c"]));
        assert_eq!(l.len(), 3);
    }

    /// A store whose SCAN answers `scan` and whose LIST answers from `keys`
    /// (every secret path), counting the calls.
    struct Fake {
        keys: Vec<String>,
        scan: Result<(), VaultError>,
        calls: Mutex<Vec<String>>,
    }

    impl Fake {
        /// The secrets below `path`, relative to it: what SCAN answers.
        fn below(&self, path: &str) -> Vec<String> {
            let prefix = if path.is_empty() {
                String::new()
            } else {
                format!("{path}/")
            };
            self.keys
                .iter()
                .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
                .collect()
        }

        fn calls(&self, op: &str) -> usize {
            let calls = self.calls.lock().unwrap();
            calls.iter().filter(|c| c.starts_with(op)).count()
        }
    }

    impl SecretStore for Fake {
        async fn mounts(&self) -> Result<Vec<KvMount>, VaultError> {
            Ok(vec![m("secret")])
        }
        async fn list(&self, _: &KvMount, path: &str) -> Result<Vec<String>, VaultError> {
            self.calls.lock().unwrap().push(format!("list {path}"));
            let folders = scan_listings("", &self.below(path), usize::MAX);
            let (_, keys) = folders.unwrap().swap_remove(0);
            match keys.is_empty() {
                true => Err(VaultError::NotFound),
                false => Ok(keys),
            }
        }
        async fn scan(&self, _: &KvMount, path: &str) -> Result<Vec<String>, VaultError> {
            self.calls.lock().unwrap().push(format!("scan {path}"));
            self.scan.clone()?;
            Ok(self.below(path))
        }
        async fn read(&self, _: &KvMount, path: &str) -> Result<Secret, VaultError> {
            self.calls.lock().unwrap().push(format!("read {path}"));
            match self.keys.iter().any(|k| k == path) {
                true => Ok(Secret::from_data(serde_json::Map::new(), None)),
                false => Err(VaultError::NotFound),
            }
        }
    }

    /// Read every directory below the mount root, as a walk does; returns
    /// the names seen.
    async fn walk(tree: &Arc<Tree<Fake>>) -> Vec<String> {
        let root = tree.lookup(ROOT_INO, b"secret").await.unwrap().ino;
        let (mut todo, mut seen) = (vec![(root, String::new())], Vec::new());
        while let Some((ino, at)) = todo.pop() {
            for (name, e) in tree.readdir(ino, true).await.unwrap().iter() {
                let path = format!("{at}/{name}");
                if e.kind == Kind::Dir {
                    // As the kernel would hold it after a readdirplus.
                    tree.hand_out(e.ino);
                    todo.push((e.ino, path.clone()));
                }
                seen.push(path);
            }
        }
        seen.sort();
        seen
    }

    fn fake(scan: Result<(), VaultError>) -> Arc<Tree<Fake>> {
        let keys = ["a/b/c", "a/d", "e"].map(String::from).to_vec();
        fake_with(keys, scan, 100, 1 << 20)
    }

    fn fake_with(
        keys: Vec<String>,
        scan: Result<(), VaultError>,
        max_entries: usize,
        max_bytes: usize,
    ) -> Arc<Tree<Fake>> {
        let store = Fake {
            keys,
            scan,
            calls: Mutex::default(),
        };
        let policy = CachePolicy {
            ttl: std::time::Duration::from_secs(60),
            stale_if_error: std::time::Duration::ZERO,
            max_entries,
            max_bytes,
        };
        Arc::new(Tree::new(Arc::new(store), policy))
    }

    #[test]
    fn a_slow_scan_is_tried_again_later_a_refused_one_never() {
        let tree = fake_with(Vec::new(), Ok(()), 10, 1 << 20);
        let (now, s) = (Instant::now(), std::time::Duration::from_secs(1));
        assert!(tree.scan_allowed("a"));
        tree.no_scan_until("a", Some(now + 10 * s));
        assert!(!tree.scan_allowed("a"));
        tree.no_scan_until("a", Some(now - s));
        assert!(tree.scan_allowed("a"), "the wait is over");
        tree.no_scan_until("b", None);
        tree.no_scan_until("b", Some(now - s));
        assert!(!tree.scan_allowed("b"), "a refusal is for good");
    }

    /// (bytes the cached listings hold at the least: their keys' strings and
    /// their entries; bytes the listings cache accounts for).
    fn listings_held(tree: &Tree<Fake>) -> (usize, usize) {
        let held = tree.listings.weigh_all(|(m, p), v| {
            m.path.len() + p.len() + v.iter().map(String::len).sum::<usize>()
        });
        (held, tree.listings.usage().1)
    }

    /// Read the mount root as `ls` does: its listing comes from a SCAN.
    async fn read_mount_root(tree: &Arc<Tree<Fake>>) {
        let root = tree.lookup(ROOT_INO, b"secret").await.unwrap().ino;
        let _ = tree.readdir(root, true).await;
    }

    /// The reproduction, smaller: one key of `a/` × 5,000 made
    /// 5,000 folders, each holding its whole path (quadratic), none of it
    /// counted by the cache.
    #[tokio::test]
    async fn a_deep_scan_answer_stays_within_the_listing_budget() {
        let budget = 1 << 20;
        let tree = fake_with(vec!["a/".repeat(5_000)], Ok(()), 100_000, budget);
        read_mount_root(&tree).await;
        let (held, counted) = listings_held(&tree);
        assert!(held <= budget, "{held} bytes held, budget {budget}");
        assert!(held <= counted, "{held} bytes held, {counted} counted");
    }

    /// Scan answers: a few keys, each up to 400 levels deep.
    fn scan_answers() -> impl proptest::strategy::Strategy<Value = Vec<String>> {
        use proptest::prelude::*;
        let key = (prop::collection::vec("[ab]{1,4}", 1..400), any::<bool>()).prop_map(
            |(segs, folder)| {
                let k = segs.join("/");
                if folder {
                    k + "/"
                } else {
                    k
                }
            },
        );
        prop::collection::vec(key, 1..6)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config { cases: 48, ..Default::default() })]
        /// Whatever a SCAN answers, what the listings cache holds stays
        /// within its byte budget and within what it counts.
        #[test]
        fn cached_listings_stay_within_budget_for_any_scan_answer(keys in scan_answers()) {
            let budget = 64 << 10;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (held, counted) = rt.block_on(async {
                let tree = fake_with(keys, Ok(()), 100_000, budget);
                read_mount_root(&tree).await;
                listings_held(&tree)
            });
            proptest::prop_assert!(held <= budget, "{} bytes held, budget {}", held, budget);
            proptest::prop_assert!(held <= counted, "{} bytes held, {} counted", held, counted);
        }
    }

    /// A chain of folders deeper than the path budget (4,096 bytes inside
    /// the mount, Linux's PATH_MAX): its inodes would hold ever longer
    /// paths. It ends where the path would exceed the budget.
    #[tokio::test]
    async fn a_deep_chain_of_folders_ends_at_the_path_budget() {
        let keys = vec!["aaaaaaa/".repeat(600) + "s"];
        let tree = fake_with(
            keys,
            Err(VaultError::Http {
                status: 405,
                message: String::new(),
            }),
            100_000,
            1 << 30,
        );
        let mut ino = tree.lookup(ROOT_INO, b"secret").await.unwrap().ino;
        let mut depth = 0;
        let err = loop {
            match tree.lookup(ino, b"aaaaaaa").await {
                Ok(e) => ino = e.ino,
                Err(e) => break e,
            }
            depth += 1;
        };
        // "aaaaaaa/" × 512 is 4,096 bytes: the deepest path that fits.
        assert_eq!(depth, 512, "{err}");
        assert_eq!(err.errno(), libc::ENAMETOOLONG);
        // Nor is the child shown.
        assert!(tree.readdir(ino, false).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_walk_lists_with_one_scan_where_scan_works() {
        let tree = fake(Ok(()));
        let seen = walk(&tree).await;
        assert!(seen.contains(&"/a/b/c".to_string()), "{seen:?}");
        assert_eq!(tree.store.calls("scan"), 1);
        assert_eq!(tree.store.calls("list"), 0);
    }

    #[tokio::test]
    async fn a_server_without_scan_is_asked_once_then_listed() {
        for refusal in [
            VaultError::Http {
                status: 405,
                message: "unsupported operation".into(),
            },
            VaultError::Forbidden,
        ] {
            let tree = fake(Err(refusal));
            let via_list = walk(&tree).await;
            assert_eq!(tree.store.calls("scan"), 1, "asked once, then not again");
            // The root, `a` and `a/b`: one LIST per folder.
            assert_eq!(tree.store.calls("list"), 3);
            assert_eq!(via_list, walk(&fake(Ok(()))).await, "same tree either way");
        }
    }

    #[test]
    fn listing_merges_secret_and_folder() {
        let keys: Vec<String> = ["app", "app/", "db/", "x/y", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(listing_children(&keys), ["app", "db"]);
    }
}
