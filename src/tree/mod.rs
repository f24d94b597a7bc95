//! The directory tree: which names exist where, and what they hold.
//!
//! This layer knows Vault's data model (mounts, folders, secrets, keys) but
//! neither HTTP (that is `vault/`, behind [`SecretStore`]) nor FUSE (that
//! is `fuse.rs`). See docs/semantics.md for the rules implemented here.
//!
//! [`Tree`] (this file) answers the adapter's questions: lookups (with the
//! rules for walking where LIST is denied), directory reads, attributes and
//! content. What it is built from lives beside it:
//! - `inodes`: the inode table and what an inode is;
//! - `layout`: how Vault names become paths and file names;
//! - `caches`: the caches of Vault's answers, and what a directory is
//!   made of;
//! - `scan`: the SCAN fallback for listings;
//! - `prefetch`: fetching a read directory's children in the background;
//! - `history`: KV v2 `.versions` and `.metadata.json`.

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

use crate::cache::{Answer, CachePolicy, Cached};
use crate::error::{FsError, VaultError};
use crate::secret::{Secret, SecretFile};
use crate::slots::Slots;
use crate::store::{KvMount, SecretStore};

mod caches;
mod history;
mod inodes;
mod layout;
mod prefetch;
mod scan;
#[cfg(test)]
mod test_tree;

use caches::{Caches, DirAnswers, Facts, Known};
#[cfg(test)]
pub use inodes::ROOT_INO;
pub use inodes::{Entry, Held, Kind, Listing, Node, Version};
use inodes::{Inodes, StreamOrder};
use layout::{encoded, file_name, file_named, holds, join, Name};
pub use layout::{is_path_segment, listing_children, mount_children, MAX_PATH};
use prefetch::{Prefetch, PREFETCH_MAX};

/// What Vault said about a name as a child folder ([`Tree::is_child_dir`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Child {
    /// Listed by its parent, a readable secret, or a folder with entries.
    Yes,
    No,
    /// No secret of that name (404), and its own LIST refused.
    Unlisted,
    /// Every question refused (403).
    Refused,
}

pub struct Tree<S> {
    /// What Vault said, and where SCAN may be used.
    caches: Arc<Caches<S>>,
    /// Fetches a read directory's children in the background; `None`
    /// disables it.
    prefetch: Option<Prefetch>,
    inodes: Arc<Mutex<Inodes>>,
    /// Keys the content fingerprints, so no value can be crafted to
    /// collide with another version of the same file.
    hasher: RandomState,
    /// The directory streams' order (see [`Tree::cookie`]).
    order: StreamOrder,
    /// The store's credentials when last seen after a refusal (see
    /// [`Tree::refused_before_new_credentials`]).
    credentials: AtomicU64,
}

impl<S: SecretStore> Tree<S> {
    pub fn new(store: Arc<S>, policy: CachePolicy) -> Self {
        Tree {
            caches: Arc::new(Caches::new(store, policy)),
            prefetch: None,
            inodes: Arc::new(Mutex::new(Inodes::new())),
            hasher: RandomState::new(),
            order: StreamOrder::default(),
            credentials: AtomicU64::new(0),
        }
    }

    /// Whether directory reads may use SCAN (on by default; servers without
    /// it are detected).
    pub fn with_scan(mut self, scan: bool) -> Self {
        // Only the prefetch shares the caches, and it is given them per call.
        Arc::get_mut(&mut self.caches)
            .expect("the caches are the tree's alone")
            .scan
            .enabled = scan;
        self
    }

    /// Let a directory read fetch its children in the background, in the
    /// request slots `slots` (the store's) that no user request waits for.
    /// `None` disables prefetching.
    pub fn with_prefetch(mut self, slots: Option<Arc<Slots>>) -> Self {
        self.prefetch = slots.map(|s| Prefetch::new(self.order.clone(), s));
        self
    }

    /// Where an entry named `name` sits in a directory stream (see
    /// [`StreamOrder`]).
    pub fn cookie(&self, name: &str) -> u64 {
        self.order.cookie(name)
    }

    /// The user visited `child` (a read or lookup of it): the prefetch
    /// moves on ([`Prefetch::visited`]). `false` when that needs a task
    /// and `can_spawn` is not set.
    fn visited(&self, mount: &KvMount, child: &str, can_spawn: bool) -> bool {
        self.prefetch
            .as_ref()
            .is_none_or(|p| p.visited(&self.caches, mount, child, can_spawn))
    }

    pub fn node(&self, ino: u64) -> Option<Arc<Node>> {
        self.inodes.lock().expect("inode lock").node(ino)
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
        Held::new(e, self.inodes.clone())
    }

    /// One more kernel reference on an inode a [`Listing`] holds (an entry
    /// of a `readdirplus` reply counts as a lookup).
    pub fn hand_out(&self, ino: u64) {
        self.inodes.lock().expect("inode lock").add_ref(ino);
    }

    /// The kernel forgot `n` lookups of `ino`; returns whether the inode
    /// is gone.
    pub fn forget(&self, ino: u64, n: u64) -> bool {
        self.inodes.lock().expect("inode lock").release(ino, n)
    }

    /// Where an inode shows in the mount, and a file's secret: what the read
    /// audit records of an open.
    pub fn shown(&self, ino: u64) -> Option<(String, Option<Arc<Secret>>)> {
        let (node, secret) = {
            let inodes = self.inodes.lock().expect("inode lock");
            let secret = inodes.content(ino).ok().map(|(s, _)| s);
            (inodes.node(ino)?, secret)
        };
        Some((layout::shown_path(&node, secret.as_deref()), secret))
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
        self.caches.mounts().await.answer
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

    /// A file of `s` (any answer that renders a secret's files), kept by the
    /// kernel until `valid_until`, when the answer `s` came from expires.
    /// The files of one secret share its path.
    fn file_entry(
        &self,
        mount: &KvMount,
        secret_path: &Arc<str>,
        s: &Arc<Secret>,
        file: SecretFile,
        valid_until: Instant,
    ) -> Option<Entry> {
        let version = self.version(s, &file)?;
        Some(Entry {
            ino: self.ino(
                Node::File {
                    mount: mount.clone(),
                    secret: secret_path.clone(),
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

    /// SIGHUP: drop every cached answer; the next access asks Vault.
    pub fn forget_answers(&self) {
        self.caches.forget(|_| true);
    }

    /// What the kernel may hold that a new answer could change: every
    /// directory inode (its attributes and listing), and each current file's
    /// name as (its directory's inode, name). A file inode is one version of
    /// a file, so its name, not the inode, must be looked up again. Files of
    /// `.versions/<n>` are left out: an old version never changes.
    pub fn kernel_held(&self) -> (Vec<u64>, Vec<(u64, String)>) {
        let inodes = self.inodes.lock().expect("inode lock");
        let (mut dirs, mut names) = (Vec::new(), Vec::new());
        for (ino, node) in inodes.all() {
            match node {
                Node::File {
                    mount,
                    secret,
                    file,
                    ..
                } => {
                    let dir = Node::Dir {
                        mount: mount.clone(),
                        path: secret.to_string(),
                    };
                    if let (Some(parent), Some(name)) =
                        (inodes.ino_of(&dir), file_name(mount, secret, file))
                    {
                        names.push((parent, name));
                    }
                }
                _ => dirs.push(ino),
            }
        }
        (dirs, names)
    }

    /// Whether `r` is a refusal that the credentials changed since (a token
    /// file re-read after `vault login` or by Vault Agent): the refusals
    /// are then dropped, and the question is worth asking again.
    fn refused_before_new_credentials<T>(&self, r: &Result<T, FsError>) -> bool {
        if !matches!(r, Err(FsError::Vault(VaultError::Forbidden))) {
            return false;
        }
        let now = self.caches.store.credentials();
        if self.credentials.swap(now, Ordering::Relaxed) == now {
            return false;
        }
        // Drop the refusals (403) the old token got, which the new one may
        // not get.
        self.caches
            .forget(|e| matches!(e, Some(VaultError::Forbidden | VaultError::BadToken(_))));
        tracing::info!("new token: answers refused under the old one dropped");
        true
    }

    /// `ask`, and once more if it was refused under credentials that have
    /// changed since (see [`Tree::refused_before_new_credentials`]).
    async fn again_if_new_credentials<T, Fut>(&self, ask: impl Fn() -> Fut) -> Result<T, FsError>
    where
        Fut: Future<Output = Result<T, FsError>>,
    {
        let r = ask().await;
        if self.refused_before_new_credentials(&r) {
            return ask().await;
        }
        r
    }

    pub async fn lookup(&self, parent: u64, name: &[u8]) -> Result<Entry, FsError> {
        self.again_if_new_credentials(|| self.lookup_once(parent, name))
            .await
    }

    async fn lookup_once(&self, parent: u64, name: &[u8]) -> Result<Entry, FsError> {
        let node = self.node(parent).ok_or(FsError::BadHandle)?;
        let name = Name::of(name).ok_or(FsError::NoEntry)?;
        match &*node {
            Node::Dir { mount, path } => self.lookup_in_dir(mount, path, &name).await,
            Node::AtVersion { mount, secret, n } => {
                self.lookup_in_version(mount, secret, *n, &name).await
            }
            Node::File { .. } => Err(FsError::NotDir),
            Node::Root | Node::Prefix(_) => {
                // vaultfs's own names exist only in a secret's directories.
                let Name::Vault(seg) = name else {
                    return Err(FsError::NoEntry);
                };
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
            Node::Versions { mount, secret } => match name {
                Name::Vault(seg) => self.lookup_version(mount, secret, &seg).await,
                Name::Own(_) => Err(FsError::NoEntry),
            },
        }
    }

    async fn lookup_in_dir(
        &self,
        mount: &KvMount,
        path: &str,
        name: &Name,
    ) -> Result<Entry, FsError> {
        let seg = match name {
            Name::Own(own) => own,
            Name::Vault(seg) => seg.as_str(),
        };
        let child = join(path, seg);
        // An own name is never a folder; a Vault name too deep is not a
        // folder we would show (see MAX_PATH), but may still be a key.
        let too_deep = matches!(name, Name::Vault(_)) && child.len() > MAX_PATH;
        let facts = self.caches.facts(mount, path).await;
        let known = match name {
            Name::Vault(seg) if !too_deep && is_path_segment(seg) => {
                self.is_child_dir(mount, path, facts, seg).await?
            }
            _ => Child::No,
        };
        if known == Child::Yes {
            self.visited(mount, &child, true);
            return Ok(self.dir_entry(Node::Dir {
                mount: mount.clone(),
                path: child,
            }));
        }
        // Only ask for the parent as a secret when its own listing does not
        // rule that out (during an outage that would turn ENOENT into EIO).
        let mut secret_denied = false;
        let parent_secret = match facts.secret {
            Known::No => None,
            _ => {
                let Cached { answer, until } = self.caches.secret(mount, path).await;
                match answer {
                    Ok(s) => Some((s, until)),
                    Err(VaultError::NotFound) => None,
                    Err(VaultError::Forbidden) => {
                        secret_denied = true;
                        None
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        if let Some((s, until)) = &parent_secret {
            let shared = path.into();
            let file = file_named(s, name);
            if let Some(e) = file.and_then(|f| self.file_entry(mount, &shared, s, f, *until)) {
                return Ok(e);
            }
            if let Name::Own(own) = name {
                if let Some(e) = self.history_entry(mount, path, own).await? {
                    return Ok(e);
                }
            }
        }
        match known {
            // Vault would not list this folder, but read there and found no
            // secret of that name. Inside a plain folder, take it for a
            // folder, so a read-only token can still walk to secrets it knows
            // the path of; inside a secret, the name is far more likely a key
            // that does not exist.
            Child::Unlisted if parent_secret.is_none() => Ok(self.dir_entry(Node::Dir {
                mount: mount.clone(),
                path: child,
            })),
            // Vault refused every question (an expired token): nothing says
            // it is a folder, so it is not shown as one.
            Child::Refused if parent_secret.is_none() => Err(VaultError::Forbidden.into()),
            _ if too_deep => Err(FsError::PathTooLong),
            // The keys of a secret we may not read: say so, not "no such file".
            _ if secret_denied => Err(VaultError::Forbidden.into()),
            _ => Err(FsError::NoEntry),
        }
    }

    /// Is `seg` a child folder or secret of `path`? Answered from the parent's
    /// LIST when the token may list; otherwise by asking for the child itself,
    /// so that read-only tokens can still walk to what they know the name of.
    /// `facts`: what `path` is.
    async fn is_child_dir(
        &self,
        mount: &KvMount,
        path: &str,
        facts: Facts,
        seg: &str,
    ) -> Result<Child, FsError> {
        // A secret that is not also a folder has no children: LISTing it
        // would cost a request per lookup only to hear 404.
        if facts.folder == Known::No {
            return Ok(Child::No);
        }
        match self.caches.listing(mount, path).await.answer {
            Ok(keys) => {
                let hit = holds(&keys, seg) || holds(&keys, &format!("{seg}/"));
                return Ok(if hit { Child::Yes } else { Child::No });
            }
            Err(VaultError::NotFound) => return Ok(Child::No),
            Err(VaultError::Forbidden) => {}
            Err(e) => return Err(e.into()),
        }
        let child = join(path, seg);
        // 404 means the token may read there (else 403): a folder is then
        // plausible. A 403 tells nothing, an expired token included.
        let read_there = match self.caches.secret(mount, &child).await.answer {
            Ok(_) => return Ok(Child::Yes),
            Err(VaultError::NotFound) => true,
            Err(VaultError::Forbidden) => false,
            Err(e) => return Err(e.into()),
        };
        match self.caches.listing(mount, &child).await.answer {
            Ok(keys) if !keys.is_empty() => Ok(Child::Yes),
            Ok(_) | Err(VaultError::NotFound) => Ok(Child::No),
            Err(VaultError::Forbidden) if read_there => Ok(Child::Unlisted),
            Err(VaultError::Forbidden) => Ok(Child::Refused),
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
        self.inodes.lock().expect("inode lock").content(ino)
    }

    /// Every entry of a directory (without `.` and `..`), sorted by name.
    /// With `prefetch`, its children are fetched in the background (see
    /// [`Prefetch::children`]): for the start of a directory stream.
    pub async fn readdir(&self, ino: u64, prefetch: bool) -> Result<Listing, FsError> {
        self.again_if_new_credentials(|| self.readdir_once(ino, prefetch))
            .await
    }

    async fn readdir_once(&self, ino: u64, prefetch: bool) -> Result<Listing, FsError> {
        let node = self.node(ino).ok_or(FsError::BadHandle)?;
        let (mount, path) = match &*node {
            Node::Root | Node::Prefix(_) => {
                let prefix = match &*node {
                    Node::Prefix(p) => p.clone(),
                    _ => String::new(),
                };
                let cached = self.caches.mounts().await;
                let mounts = cached.answer?;
                return Ok(self.listing_of(
                    mount_children(&mounts, &prefix)
                        .into_iter()
                        .filter_map(|(seg, n)| Some((encoded(&seg)?, self.dir_entry(n))))
                        .collect(),
                    cached.until,
                ));
            }
            Node::Dir { mount, path } => (mount.clone(), path.clone()),
            Node::Versions { mount, secret } => return self.readdir_versions(mount, secret).await,
            Node::AtVersion { mount, secret, n } => {
                return self.readdir_version(mount, secret, *n).await
            }
            Node::File { .. } => return Err(FsError::NotDir),
        };
        if prefetch {
            self.visited(&mount, &path, true);
        }
        let answers = self.caches.fetch_dir(&mount, &path, prefetch).await;
        if let (Some(Ok(keys)), true, Some(p)) = (answers.listing(), prefetch, &self.prefetch) {
            p.children(&self.caches, &mount, &path, keys);
        }
        self.assemble(&mount, &path, answers)
    }

    /// When the cached answers a directory's listing would be built from
    /// expire, if any is cached; `None` when none is (any answer fetched
    /// later expires later than anything handed out now).
    pub fn dir_valid_until(&self, ino: u64) -> Option<Instant> {
        let node = self.node(ino)?;
        match &*node {
            Node::Root | Node::Prefix(_) => self.caches.mounts.peek(&()).map(|c| c.until),
            Node::Dir { mount, path } => self.caches.dir_until(mount, path),
            Node::Versions { .. } | Node::AtVersion { .. } => self.history_valid_until(&node),
            Node::File { .. } => None,
        }
    }

    /// [`Tree::readdir`] of a folder or secret when it needs no request
    /// (everything it shows is cached and fresh) and, with `prefetch`, no
    /// prefetch either; `None` otherwise. Lets walks skip a task per
    /// directory: it runs on the FUSE thread, so it leaves to a task what
    /// may take long there, a folder too big for one prefetch batch (its
    /// listing of many thousand children, and its window) and a refusal
    /// (checking the token may read its file).
    pub fn readdir_cached(&self, ino: u64, prefetch: bool) -> Option<Result<Listing, FsError>> {
        let node = self.node(ino)?;
        let Node::Dir { mount, path } = &*node else {
            return None;
        };
        let answers = self.caches.peek_dir(mount, path)?;
        let keys = match answers.listing() {
            Some(Ok(keys)) => Some(keys),
            _ => None,
        };
        // Told by the key count alone, before anything is worked out here.
        if prefetch && keys.is_some_and(|k| k.len() > PREFETCH_MAX) {
            return None;
        }
        let prefetch = self.prefetch.as_ref().filter(|_| prefetch);
        let first_batch = match (keys, prefetch) {
            (Some(keys), Some(p)) => Some((p, p.first_batch(&self.caches, mount, path, keys))),
            _ => None,
        };
        if first_batch
            .as_ref()
            .is_some_and(|(_, b)| !b.queue.is_empty())
        {
            return None;
        }
        if prefetch.is_some() && !self.visited(mount, path, false) {
            return None;
        }
        if let Some((p, batch)) = first_batch {
            p.start_window(mount, path, &batch);
        }
        let r = self.assemble(mount, path, answers);
        if matches!(r, Err(FsError::Vault(VaultError::Forbidden))) {
            return None;
        }
        Some(r)
    }

    fn listing_of(&self, entries: Vec<(String, Entry)>, valid_until: Instant) -> Listing {
        Listing::new(
            entries,
            |n| self.cookie(n),
            valid_until,
            self.inodes.clone(),
        )
    }

    /// The entries of a directory from its listing and its own secret.
    fn assemble(
        &self,
        mount: &KvMount,
        path: &str,
        answers: DirAnswers,
    ) -> Result<Listing, FsError> {
        let DirAnswers {
            listing,
            secret,
            valid_until,
        } = answers;
        let valid_until = valid_until.unwrap_or_else(Instant::now);
        let (mount, path) = (mount.clone(), path.to_string());
        let secret = match secret.map(|c| (c.answer, c.until)) {
            Some((Ok(s), until)) => Some((s, until)),
            Some((Err(VaultError::NotFound | VaultError::Forbidden), _)) | None => None,
            Some((Err(e), _)) => return Err(e.into()),
        };
        let children = match listing.map(|l| l.answer) {
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
        if let Some((s, until)) = secret {
            let shared: Arc<str> = path.as_str().into();
            for f in s.files() {
                let Some(name) = file_name(&mount, &path, &f) else {
                    continue;
                };
                // A child folder or secret wins over a key of the same name.
                if out.contains_key(&name) {
                    continue;
                }
                if let Some(e) = self.file_entry(&mount, &shared, &s, f, until) {
                    out.insert(name, e);
                }
            }
        }
        Ok(self.listing_of(out.into_iter().collect(), valid_until))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::Op;
    use test_tree::tree_of;

    /// A lookup asks what its directory is (its parent's listing) once:
    /// while that listing fails, each ask is a request.
    #[tokio::test]
    async fn a_lookup_asks_for_the_parent_listing_once() {
        let tree = tree_of(vec!["a/b".into()], Ok(()), 100, 1 << 20);
        let store = tree.caches.store.clone();
        store.put("secret", "a/b", serde_json::json!({"k": "v"}));
        let mut ino = tree.lookup(ROOT_INO, b"secret").await.unwrap().ino;
        for name in ["a", "b"] {
            ino = tree.lookup(ino, name.as_bytes()).await.unwrap().ino;
        }
        tree.forget_answers();
        store.fail(Op::List, "secret", "a", VaultError::Sealed);
        store.clear_calls();
        let k = tree.lookup(ino, b"k").await.unwrap();
        assert_eq!(k.kind, Kind::File);
        assert_eq!(store.count_at(Op::List, "secret", "a"), 1);
    }

    /// A chain of folders deeper than the path budget (4,096 bytes inside
    /// the mount, Linux's PATH_MAX): its inodes would hold ever longer
    /// paths. It ends where the path would exceed the budget.
    #[tokio::test]
    async fn a_deep_chain_of_folders_ends_at_the_path_budget() {
        let keys = vec!["aaaaaaa/".repeat(600) + "s"];
        let tree = tree_of(
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
}
