//! The tree's caches: what Vault said, per question, and until when. One
//! cache per kind of answer (mounts, listings, SCANs, secrets, old
//! versions, metadata), each read through a typed getter that asks the
//! store on a miss.
//!
//! Also the one rule of what a directory is made of ([`Caches::dir`]):
//! which answers its parent's listing says it needs ([`Facts`]), and until
//! when they hold ([`DirAnswers`]). A directory read that may fetch, one
//! from the cache alone, and the expiry alone all go through it.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::time::Instant;

use super::layout::{holds, split_parent, Key};
use super::scan::Scan;
use crate::cache::{Answer, Cache, CachePolicy, Cached, Weigh};
use crate::error::VaultError;
use crate::secret::Secret;
use crate::store::{KvMount, Metadata, SecretStore};

/// How long an old version is kept. Its data never changes while it exists;
/// only deleting or destroying it ends it, which then shows this late.
const OLD_VERSION_TTL: Duration = Duration::from_secs(600);

/// The store, and a cache in front of it per kind of question.
pub(super) struct Caches<S> {
    pub(super) store: Arc<S>,
    pub(super) mounts: Cache<(), Vec<KvMount>>,
    pub(super) listings: Cache<Key, Vec<String>>,
    /// Where SCAN may be used, and its answers (see
    /// [`Caches::walk_listing`]).
    pub(super) scan: Scan,
    pub(super) secrets: Cache<Key, Secret>,
    /// KV v2 history (history.rs): versions before the current one, kept
    /// longer than `--ttl` ([`OLD_VERSION_TTL`]), and metadata.
    pub(super) old_versions: Cache<(KvMount, String, u64), Secret>,
    pub(super) metadata: Cache<Key, Metadata>,
}

impl<S: SecretStore> Caches<S> {
    pub(super) fn new(store: Arc<S>, policy: CachePolicy) -> Self {
        Caches {
            store,
            mounts: Cache::new(CachePolicy {
                max_entries: 1,
                ..policy
            }),
            listings: Cache::new(policy),
            scan: Scan::new(policy),
            secrets: Cache::new(policy),
            old_versions: Cache::new(CachePolicy {
                ttl: policy.ttl.max(OLD_VERSION_TTL),
                ..policy
            }),
            metadata: Cache::new(policy),
        }
    }

    /// Drop every answer `gone` picks from every cache (the mount table's
    /// included), and SCAN's refusals with them.
    pub(super) fn forget(&self, gone: impl Fn(Option<&VaultError>) -> bool) {
        fn err<V>(a: &Answer<V>) -> Option<&VaultError> {
            a.as_ref().err()
        }
        self.mounts.forget(|a| gone(err(a)));
        self.listings.forget(|a| gone(err(a)));
        self.secrets.forget(|a| gone(err(a)));
        self.old_versions.forget(|a| gone(err(a)));
        self.metadata.forget(|a| gone(err(a)));
        self.scan.forget(gone);
    }

    pub(super) async fn mounts(&self) -> Cached<Vec<KvMount>> {
        let store = &self.store;
        self.mounts.get(&(), || store.mounts()).await
    }

    /// A folder's LIST answer, sorted and without duplicates (whatever the
    /// server sent), so a name is found in it by binary search: a lookup
    /// per child of a big folder must not read the whole answer.
    pub(super) async fn listing(&self, mount: &KvMount, path: &str) -> Cached<Vec<String>> {
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

    /// A folder's listing for the start of a directory read. When it is not
    /// at hand and the server has SCAN, one SCAN answers it and every folder
    /// below it ([`Scan::fill`]). Otherwise, and whenever SCAN fails, LIST
    /// as ever.
    pub(super) async fn walk_listing(&self, mount: &KvMount, path: &str) -> Cached<Vec<String>> {
        let key = (mount.clone(), path.to_string());
        if self.scan.allowed(&mount.path) && !self.listings.in_hand(&key) {
            self.scan
                .fill(&*self.store, &self.listings, mount, path)
                .await;
        }
        self.listing(mount, path).await
    }

    pub(super) async fn secret(&self, mount: &KvMount, path: &str) -> Cached<Secret> {
        let key = (mount.clone(), path.to_string());
        let store = &self.store;
        self.secrets.get(&key, || store.read(mount, path)).await
    }

    pub(super) async fn old_version(
        &self,
        mount: &KvMount,
        secret: &str,
        n: u64,
    ) -> Cached<Secret> {
        let key = (mount.clone(), secret.to_string(), n);
        let store = &self.store;
        self.old_versions
            .get(&key, || store.read_version(mount, secret, n))
            .await
    }

    pub(super) async fn metadata(&self, mount: &KvMount, secret: &str) -> Cached<Metadata> {
        let key = (mount.clone(), secret.to_string());
        let store = &self.store;
        self.metadata
            .get(&key, || store.metadata(mount, secret))
            .await
    }

    /// Whether the answer for `key`, a folder's listing or else a secret,
    /// is cached or on its way: nobody asking for it would start a request.
    pub(super) fn in_hand(&self, key: &Key, folder: bool) -> bool {
        match folder {
            true => self.listings.in_hand(key),
            false => self.secrets.in_hand(key),
        }
    }

    /// What the parent's listing says directory `path` is (asking Vault for
    /// that listing if need be).
    pub(super) async fn facts(&self, mount: &KvMount, path: &str) -> Facts {
        let parent = match parent_key(mount, path) {
            Some((mount, parent)) => Some(self.listing(&mount, &parent).await.answer),
            None => None,
        };
        Facts::of(path, parent.as_ref())
    }

    /// What Vault said about directory `path`, from the cache or else from
    /// Vault. `walk`: the directory is read from the start, so its own
    /// listing may come from a SCAN ([`Caches::walk_listing`]).
    pub(super) async fn fetch_dir(&self, mount: &KvMount, path: &str, walk: bool) -> DirAnswers {
        let answers = self.dir(mount, path, Ask::Fetch { walk }).await;
        answers.expect("a fetch has every answer")
    }

    /// What Vault said about directory `path`, when the cache holds every
    /// answer it is made of (fresh); `None` otherwise. Makes no request.
    pub(super) fn peek_dir(&self, mount: &KvMount, path: &str) -> Option<DirAnswers> {
        at_once(self.dir(mount, path, Ask::Peek))
    }

    /// When the first of the cached answers directory `path` is made of
    /// expires (without its parent's listing at hand, nothing is ruled
    /// out); `None` when none is cached. Makes no request.
    pub(super) fn dir_until(&self, mount: &KvMount, path: &str) -> Option<Instant> {
        at_once(self.dir(mount, path, Ask::Expiry))?.valid_until
    }

    /// The one rule of what a directory is made of, whichever way its
    /// answers are obtained: its parent's listing says whether it is a
    /// folder and whether it is a secret ([`Facts`]); it is made of the
    /// answers that are not ruled out, and holds until the first of them,
    /// or of the parent's listing, expires. `None` when `ask` is
    /// [`Ask::Peek`] and an answer is not cached.
    async fn dir(&self, mount: &KvMount, path: &str, ask: Ask) -> Option<DirAnswers> {
        let key = (mount.clone(), path.to_string());
        let parent = match parent_key(mount, path) {
            Some(k) => ask.keep(self.obtain_listing(&k, ask.for_parent()).await)?,
            None => None,
        };
        let facts = Facts::of(path, parent.as_ref().map(|p| &p.answer));
        let listing = async {
            match facts.folder {
                Known::No => Some(None),
                _ => ask.keep(self.obtain_listing(&key, ask).await),
            }
        };
        let secret = async {
            match facts.secret {
                Known::No => Some(None),
                _ => ask.keep(self.obtain_secret(&key, ask).await),
            }
        };
        let (listing, secret) = match ask {
            Ask::Fetch { .. } => tokio::join!(listing, secret),
            // From the cache: one after the other, so nothing here can wait
            // on a runtime's scheduling (a join may yield when a task's
            // budget is spent), which `at_once` relies on.
            Ask::Peek | Ask::Expiry => (listing.await, secret.await),
        };
        let (listing, secret) = (listing?, secret?);
        let valid_until = [
            parent.map(|p| p.until),
            listing.as_ref().map(|l| l.until),
            secret.as_ref().map(|s| s.until),
        ]
        .into_iter()
        .flatten()
        .min();
        Some(DirAnswers {
            listing,
            secret,
            valid_until,
        })
    }

    async fn obtain_listing(&self, key: &Key, ask: Ask) -> Option<Cached<Vec<String>>> {
        let (mount, path) = key;
        match ask {
            Ask::Fetch { walk: true } => Some(self.walk_listing(mount, path).await),
            Ask::Fetch { walk: false } => Some(self.listing(mount, path).await),
            Ask::Peek | Ask::Expiry => self.listings.peek(key),
        }
    }

    async fn obtain_secret(&self, key: &Key, ask: Ask) -> Option<Cached<Secret>> {
        let (mount, path) = key;
        match ask {
            Ask::Fetch { .. } => Some(self.secret(mount, path).await),
            Ask::Peek | Ask::Expiry => self.secrets.peek(key),
        }
    }
}

/// What Vault said about one directory (a folder, a secret, or both): the
/// answers its entries are built from, and until when they all hold.
pub(super) struct DirAnswers {
    /// Its own LIST answer; `None` when its parent's listing says it is no
    /// folder.
    pub(super) listing: Option<Cached<Vec<String>>>,
    /// Its secret; `None` when its parent's listing says it is no secret.
    pub(super) secret: Option<Cached<Secret>>,
    /// When the first of these answers, or of its parent's listing (which
    /// says what it is), expires; an answer the cache no longer holds counts
    /// as expired. `None` when there is none ([`Ask::Expiry`] only).
    pub(super) valid_until: Option<Instant>,
}

impl DirAnswers {
    /// Its own LIST answer, if its parent's listing says it is a folder.
    pub(super) fn listing(&self) -> Option<&Answer<Vec<String>>> {
        self.listing.as_ref().map(|l| &l.answer)
    }
}

/// How [`Caches::dir`] obtains an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    /// From the cache, else from Vault. `walk`: the directory's own
    /// listing may come from a SCAN.
    Fetch { walk: bool },
    /// From the cache only: a directory with an answer missing is not built.
    Peek,
    /// From the cache only, leaving out what is missing: for the expiry of
    /// what is cached.
    Expiry,
}

impl Ask {
    /// The parent's listing is asked for like any other, never by SCAN:
    /// the parent is not being read.
    fn for_parent(self) -> Ask {
        match self {
            Ask::Fetch { .. } => Ask::Fetch { walk: false },
            ask => ask,
        }
    }

    /// An answer as obtained: `Some` of it, or of its absence when that is
    /// allowed; `None` when the directory cannot be built without it.
    fn keep<V>(self, got: Option<Cached<V>>) -> Option<Option<Cached<V>>> {
        match (got, self) {
            (None, Ask::Peek) => None,
            (got, _) => Some(got),
        }
    }
}

/// The result of a future that never waits (one that only reads the
/// cache), without a runtime: the adapter asks from its own threads.
fn at_once<T>(f: impl Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(t) => t,
        Poll::Pending => unreachable!("reading the cache never waits"),
    }
}

/// The key of `path`'s parent folder; `None` for a mount root, which has
/// none.
fn parent_key(mount: &KvMount, path: &str) -> Option<Key> {
    (!path.is_empty()).then(|| (mount.clone(), split_parent(path).0.to_string()))
}

/// Whether a name is a folder, or a secret, as far as Vault told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Known {
    Yes,
    No,
    /// Vault did not tell: it refused (or failed) the request that would,
    /// or that request's answer is not at hand.
    Untold,
}

/// What a directory is, as its parent's listing says: a secret (the
/// listing holds `name`), a folder (it holds `name/`), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Facts {
    pub(super) secret: Known,
    pub(super) folder: Known,
}

impl Facts {
    /// What directory `path` is, by its parent's listing (`None`: none at
    /// hand). A mount root has no parent: it is a folder and no secret.
    pub(super) fn of(path: &str, parent: Option<&Answer<Vec<String>>>) -> Facts {
        if path.is_empty() {
            return Facts {
                secret: Known::No,
                folder: Known::Yes,
            };
        }
        let leaf = split_parent(path).1;
        match parent {
            Some(Ok(keys)) => {
                let has = |k: &str| match holds(keys, k) {
                    true => Known::Yes,
                    false => Known::No,
                };
                Facts {
                    secret: has(leaf),
                    folder: has(&format!("{leaf}/")),
                }
            }
            Some(Err(_)) | None => Facts {
                secret: Known::Untold,
                folder: Known::Untold,
            },
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::error::VaultError;
    use crate::store::memory::MemoryStore;
    use crate::tree::test_tree::{m, tree_of};
    use crate::tree::{Listing, Node, Tree};

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn names(l: &Listing) -> Vec<&str> {
        let mut names: Vec<&str> = l.iter().map(|(n, _)| n.as_str()).collect();
        names.sort();
        names
    }

    #[test]
    fn the_parent_listing_says_what_a_directory_is() {
        use Known::*;
        let f = |secret, folder| Facts { secret, folder };
        let of = |parent: Option<Answer<Vec<String>>>| Facts::of("a/x", parent.as_ref());
        let keys = |v: &[&str]| Some(Ok(Arc::new(strings(v))));
        assert_eq!(Facts::of("", None), f(No, Yes), "a mount root");
        assert_eq!(of(keys(&["w", "x", "y/"])), f(Yes, No));
        assert_eq!(of(keys(&["x/", "y"])), f(No, Yes));
        assert_eq!(of(keys(&["x", "x/"])), f(Yes, Yes));
        assert_eq!(of(keys(&["xx", "xx/"])), f(No, No));
        assert_eq!(of(Some(Err(VaultError::Forbidden))), f(Untold, Untold));
        assert_eq!(of(None), f(Untold, Untold), "not at hand");
    }

    /// A tree whose cache holds, for folder-and/or-secret `x` of mount
    /// `secret`: the mount root's listing `parent` (until `until[0]`; none
    /// with `None`), `x`'s listing, one child folder (until `until[1]`),
    /// and `x`'s secret, one key (until `until[2]`). With `x`'s inode.
    fn cached(parent: Option<&[&str]>, until: [Instant; 3]) -> (Arc<Tree<MemoryStore>>, u64) {
        let tree = tree_of(Vec::new(), Ok(()), 100, 1 << 20);
        let a = &tree.caches;
        let key = |p: &str| (m("secret"), p.to_string());
        if let Some(parent) = parent {
            a.listings.offer(&key(""), strings(parent), until[0]);
        }
        a.listings.offer(&key("x"), strings(&["child/"]), until[1]);
        let mut data = serde_json::Map::new();
        data.insert("k".into(), "v".into());
        a.secrets
            .offer(&key("x"), Secret::from_data(data, None), until[2]);
        let x = Node::Dir {
            mount: m("secret"),
            path: "x".into(),
        };
        let ino = tree.ino(x, None);
        (tree, ino)
    }

    /// Whichever answer expires first, every way of building the directory
    /// (a read that may fetch, a read from the cache alone, the expiry
    /// alone) says it holds until then, and none asks Vault.
    #[tokio::test]
    async fn a_directory_holds_until_the_first_of_its_answers_expires() {
        let (now, s) = (Instant::now(), Duration::from_secs(1));
        for first in 0..3 {
            let mut until = [now + 100 * s, now + 200 * s, now + 300 * s];
            until[first] = now + 10 * s;
            let (tree, ino) = cached(Some(&["x", "x/"]), until);
            let want = now + 10 * s;
            assert_eq!(tree.dir_valid_until(ino), Some(want), "{first}");
            let peeked = tree.readdir_cached(ino, false).expect("all cached");
            assert_eq!(peeked.unwrap().valid_until, want, "{first}");
            let fetched = tree.readdir(ino, false).await.unwrap();
            assert_eq!(fetched.valid_until, want, "{first}");
            assert_eq!(tree.caches.store.calls().len(), 0, "all from the cache");
        }
    }

    /// What the parent's listing rules out is neither shown nor counted
    /// toward the expiry, though cached. Built from the cache alone, outside
    /// any runtime, as the adapter does.
    #[test]
    fn a_directory_is_made_of_what_its_parent_listing_says_it_is() {
        let (now, s) = (Instant::now(), Duration::from_secs(1));
        // The own listing would expire first, the secret next.
        let until = [now + 300 * s, now + 10 * s, now + 20 * s];
        for (parent, shown, valid_until) in [
            (&["x"][..], &["k"][..], until[2]),
            (&["x/"], &["child"], until[1]),
            (&["x", "x/"], &["child", "k"], until[1]),
        ] {
            let (tree, ino) = cached(Some(parent), until);
            let l = tree
                .readdir_cached(ino, false)
                .expect("all cached")
                .unwrap();
            let keys: Vec<&str> = names(&l)
                .into_iter()
                .filter(|n| !n.starts_with('.'))
                .collect();
            assert_eq!(keys, shown, "{parent:?}");
            assert_eq!(l.valid_until, valid_until, "{parent:?}");
            assert_eq!(tree.dir_valid_until(ino), Some(valid_until), "{parent:?}");
        }
        // Without the parent's listing, nothing is ruled out: the directory
        // is not built from the cache, and its expiry counts all that is.
        let (tree, ino) = cached(None, until);
        assert!(tree.readdir_cached(ino, false).is_none());
        assert_eq!(tree.dir_valid_until(ino), Some(until[1]));
    }
}
