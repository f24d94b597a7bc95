//! The answer cache: what Vault said, per question, and until when. One
//! cache per kind of answer (mounts, listings, SCANs, secrets, old
//! versions, metadata), each read through a typed getter that asks Vault
//! on a miss.

use std::sync::Arc;
use std::time::Instant;

use super::history;
use super::layout::{holds, split_parent};
use super::scan::Scan;
use crate::cache::{Answer, Cache, CachePolicy, Weigh};
use crate::secret::Secret;
use crate::store::{KvMount, Metadata, SecretStore};

/// A folder or secret: its mount and its path inside it.
pub(super) type Key = (KvMount, String);

pub(super) struct Answers<S> {
    pub(super) store: Arc<S>,
    pub(super) mounts: Cache<(), Vec<KvMount>>,
    pub(super) listings: Cache<Key, Vec<String>>,
    /// SCAN answers: every secret below a folder (see
    /// [`Answers::walk_listing`]).
    pub(super) scans: Cache<Key, Vec<String>>,
    /// Where SCAN may be used.
    pub(super) scan: Scan,
    pub(super) secrets: Cache<Key, Secret>,
    /// KV v2 history (history.rs): versions before the current one, kept
    /// longer than `--ttl`, and metadata.
    pub(super) old_versions: Cache<(KvMount, String, u64), Secret>,
    pub(super) metadata: Cache<Key, Metadata>,
}

impl<S: SecretStore> Answers<S> {
    pub(super) fn new(store: Arc<S>, policy: CachePolicy) -> Self {
        Answers {
            store,
            mounts: Cache::new(CachePolicy {
                max_entries: 1,
                ..policy
            }),
            listings: Cache::new(policy),
            scans: Cache::new(policy),
            scan: Scan::new(policy.max_bytes),
            secrets: Cache::new(policy),
            old_versions: Cache::new(CachePolicy {
                ttl: policy.ttl.max(history::OLD_VERSION_TTL),
                ..policy
            }),
            metadata: Cache::new(policy),
        }
    }

    pub(super) async fn mounts(&self) -> Answer<Vec<KvMount>> {
        let store = &self.store;
        self.mounts.get(&(), || store.mounts()).await
    }

    /// A folder's LIST answer, sorted and without duplicates (whatever the
    /// server sent), so a name is found in it by binary search: a lookup
    /// per child of a big folder must not read the whole answer.
    pub(super) async fn listing(&self, mount: &KvMount, path: &str) -> Answer<Vec<String>> {
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

    pub(super) async fn secret(&self, mount: &KvMount, path: &str) -> Answer<Secret> {
        let key = (mount.clone(), path.to_string());
        let store = &self.store;
        self.secrets.get(&key, || store.read(mount, path)).await
    }

    pub(super) async fn old_version(
        &self,
        mount: &KvMount,
        secret: &str,
        n: u64,
    ) -> Answer<Secret> {
        let key = (mount.clone(), secret.to_string(), n);
        let store = &self.store;
        self.old_versions
            .get(&key, || store.read_version(mount, secret, n))
            .await
    }

    pub(super) async fn metadata(&self, mount: &KvMount, secret: &str) -> Answer<Metadata> {
        let key = (mount.clone(), secret.to_string());
        let store = &self.store;
        self.metadata
            .get(&key, || store.metadata(mount, secret))
            .await
    }

    /// What the parent's listing says `path` is: (a secret?, a folder?).
    pub(super) async fn dir_facts(&self, mount: &KvMount, path: &str) -> (Known, Known) {
        if path.is_empty() {
            return (Known::No, Known::Yes);
        }
        let (parent, leaf) = split_parent(path);
        facts(&self.listing(mount, parent).await, leaf)
    }

    /// When the first of the answers a directory's listing was built from
    /// expires (its parent's listing, which says what it is; its own listing;
    /// its secret). An answer the cache no longer holds counts as expired.
    pub(super) fn answers_until(
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
}

/// Whether a name is a child directory, when it can be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Known {
    Yes,
    No,
    /// Vault denied the requests that would tell.
    Denied,
}

/// What a parent's listing says its child `leaf` is: (a secret?, a folder?).
pub(super) fn facts(listing: &Answer<Vec<String>>, leaf: &str) -> (Known, Known) {
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

/// Until when `used`, an answer taken from `cache` under `key`, is served
/// without asking Vault: its expiry while the cache still holds that very
/// answer, else now (it was refreshed or evicted since).
pub(super) fn until_of<K, V>(cache: &Cache<K, V>, key: &K, used: &Answer<V>) -> Instant
where
    K: std::hash::Hash + Eq + Clone + Weigh,
    V: Weigh,
{
    match (cache.peek_expiry(key), used) {
        (Some((Ok(held), until)), Ok(used)) if Arc::ptr_eq(&held, used) => until,
        (Some((Err(_), until)), Err(_)) => until,
        _ => Instant::now(),
    }
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
