//! Prefetch: after a directory read, its children are fetched in the
//! background, so a walker that visits them next finds each one cached or
//! on its way instead of waiting for one round trip per child.
//!
//! A read prefetches the first [`PREFETCH_MAX`] children in stream order;
//! past that, the prefetch moves ahead as the user visits the children
//! (a read or lookup of a child counts as a visit), like a file system's
//! readahead: a batch of [`PREFETCH_MAX`]` / 2` more whenever what was
//! prefetched but not yet visited falls under half the window. So a walk
//! of a folder of any size keeps a full pipeline, while a plain `ls` of a
//! folder of 100,000 secrets still costs one LIST and 1,000 GETs, and every
//! request past the first 1,000 is matched by a visit of the user's.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;

use super::caches::Caches;
use super::inodes::StreamOrder;
use super::layout::{encoded, is_path_segment, join, split_parent, Key, MAX_PATH};
use crate::cache::Cached;
use crate::slots::{background, Priority, Slots};
use crate::store::{KvMount, SecretStore};

/// At most this many children of a directory are prefetched per read of
/// it, and then at most one more per visit of a child. Without a bound,
/// one `ls` of a folder of 100,000 secrets would make 100,000 requests.
pub(super) const PREFETCH_MAX: usize = 1000;

/// How many directories keep a moving window (the most recently read).
const WINDOWS: usize = 64;

/// Where the prefetch of a big directory stands.
struct Window {
    /// The cookie of the last child queued; the next batch starts after it.
    frontier: u64,
    /// Children queued so far (cached ones included: they needed no fetch).
    queued: usize,
    /// Visits of its children since the read that started the window.
    visits: usize,
}

/// Fetches the children of the directories read into the caches it is
/// given, in request slots no user request waits for.
pub(super) struct Prefetch {
    /// The order a walker visits children in: the streams'.
    order: StreamOrder,
    slots: Arc<Slots>,
    /// The moving windows of the directories read last that have more
    /// children than one read prefetches.
    windows: Mutex<LruCache<Key, Window>>,
}

/// What [`Prefetch::to_prefetch`] found: the children to fetch, in stream
/// order, each with whether it is a folder.
pub(super) struct Batch {
    pub(super) queue: Vec<(Key, bool)>,
    /// How many children the batch covered (fetched or already in hand).
    covered: usize,
    /// The cookie of its last child.
    last: u64,
    /// Whether children remain after it.
    more: bool,
}

impl Prefetch {
    /// Children fetched in `slots`, in `order`.
    pub(super) fn new(order: StreamOrder, slots: Arc<Slots>) -> Self {
        Prefetch {
            order,
            slots,
            windows: Mutex::new(LruCache::new(NonZeroUsize::new(WINDOWS).expect("non-zero"))),
        }
    }

    /// Walks (`find`, `ls -lR`, `grep -r`) visit every child of a directory
    /// they have just read, one at a time. Fetching those children now, in
    /// parallel, turns a serial chain of round trips into a pipeline: the
    /// walker then finds each child cached or already in flight (the cache's
    /// single-flight joins it). Starts the directory's window anew.
    pub(super) fn children<S: SecretStore>(
        &self,
        caches: &Arc<Caches<S>>,
        mount: &KvMount,
        path: &str,
        keys: &[String],
    ) {
        let batch = self.first_batch(caches, mount, path, keys);
        self.start_window(mount, path, &batch);
        self.spawn(caches, batch.queue);
    }

    /// What a read of `path` (named in `keys`) at a stream's start
    /// prefetches: its first batch, handed to [`Prefetch::start_window`].
    pub(super) fn first_batch<S: SecretStore>(
        &self,
        caches: &Caches<S>,
        mount: &KvMount,
        path: &str,
        keys: &[String],
    ) -> Batch {
        self.to_prefetch(caches, mount, path, keys, 0, PREFETCH_MAX)
    }

    /// Start `path`'s window anew after its first batch `batch` (none when
    /// that batch covers all its children), without fetching anything.
    pub(super) fn start_window(&self, mount: &KvMount, path: &str, batch: &Batch) {
        let key = (mount.clone(), path.to_string());
        let mut windows = self.windows.lock().expect("windows lock");
        if batch.more {
            windows.put(
                key,
                Window {
                    frontier: batch.last,
                    queued: batch.covered,
                    visits: 0,
                },
            );
        } else {
            windows.pop(&key);
        }
    }

    /// The user visited `child` (a read or lookup of it): if its parent
    /// has a window whose unvisited part fell under half of
    /// [`PREFETCH_MAX`], queue the next batch after it. With `!can_spawn`
    /// (outside the runtime) a visit that would queue is not counted and
    /// `false` is returned: the caller goes through the runtime instead.
    pub(super) fn visited<S: SecretStore>(
        &self,
        caches: &Arc<Caches<S>>,
        mount: &KvMount,
        child: &str,
        can_spawn: bool,
    ) -> bool {
        if child.is_empty() {
            return true;
        }
        let (path, _) = split_parent(child);
        let key = (mount.clone(), path.to_string());
        let frontier = {
            let mut windows = self.windows.lock().expect("windows lock");
            let Some(w) = windows.get_mut(&key) else {
                return true;
            };
            if w.visits + 1 + PREFETCH_MAX / 2 < w.queued {
                w.visits += 1;
                return true;
            }
            if !can_spawn {
                return false;
            }
            w.visits += 1;
            w.frontier
        };
        // Only from a fresh listing: an expired one ends the window (the
        // next read of the directory starts one).
        let Some(Cached {
            answer: Ok(keys), ..
        }) = caches.listings.peek(&key)
        else {
            self.windows.lock().expect("windows lock").pop(&key);
            return true;
        };
        let batch = self.to_prefetch(caches, mount, path, &keys, frontier, PREFETCH_MAX / 2);
        let mut windows = self.windows.lock().expect("windows lock");
        match windows.get_mut(&key) {
            // Another visit moved it meanwhile: that one queued.
            Some(w) if w.frontier != frontier => return true,
            Some(w) if batch.more => {
                w.frontier = batch.last;
                w.queued += batch.covered;
            }
            Some(_) => {
                windows.pop(&key);
            }
            None => return true,
        }
        drop(windows);
        self.spawn(caches, batch.queue);
        true
    }

    /// One task works through `queue`, a request slot at a time, so a big
    /// folder costs no task per child. Each fetch starts only once it holds
    /// a background slot (its request's): a user request never finds a
    /// prefetch of what it wants queued, only in flight, and takes the
    /// next free slot before any prefetch does.
    fn spawn<S: SecretStore>(&self, caches: &Arc<Caches<S>>, queue: Vec<(Key, bool)>) {
        if queue.is_empty() {
            return;
        }
        let (caches, slots) = (caches.clone(), self.slots.clone());
        tokio::spawn(async move {
            for (key, folder) in queue {
                // Fetched meanwhile (the walker got there first).
                if caches.in_hand(&key, folder) {
                    continue;
                }
                let permit = slots.acquire(Priority::Background).await;
                if caches.in_hand(&key, folder) {
                    continue;
                }
                let caches = caches.clone();
                tokio::spawn(background(permit, async move {
                    let (mount, path) = key;
                    // Errors are cached or retried by whoever asks next.
                    if folder {
                        let _ = caches.listing(&mount, &path).await;
                    } else {
                        let _ = caches.secret(&mount, &path).await;
                    }
                }));
            }
        });
    }

    /// The children of `path` (named in `keys`, its LIST answer) that come
    /// after the cookie `after` in stream order (0: from the first), at
    /// most `limit` of them, in the order the walker will visit them: one
    /// level deep only, so `ls` of a big tree's root does not fetch the
    /// whole tree; and none that is cached or on its way (those count as
    /// covered).
    fn to_prefetch<S: SecretStore>(
        &self,
        caches: &Caches<S>,
        mount: &KvMount,
        path: &str,
        keys: &[String],
        after: u64,
        limit: usize,
    ) -> Batch {
        let mut batch = Batch {
            queue: Vec::new(),
            covered: 0,
            last: after,
            more: false,
        };
        let mut queue: Vec<(u64, &str, bool)> = keys
            .iter()
            .filter_map(|k| {
                let (seg, folder) = match k.strip_suffix('/') {
                    Some(f) => (f, true),
                    None => (k.as_str(), false),
                };
                if !is_path_segment(seg) || path.len() + seg.len() >= MAX_PATH {
                    return None;
                }
                let cookie = self.order.cookie(&encoded(seg)?);
                (cookie > after).then_some((cookie, seg, folder))
            })
            .collect();
        if queue.len() > limit {
            queue.select_nth_unstable_by_key(limit, |q| q.0);
            queue.truncate(limit);
            batch.more = true;
        }
        queue.sort_unstable_by_key(|q| q.0);
        batch.covered = queue.len();
        batch.last = queue.last().map_or(after, |q| q.0);
        // Cached, or already on its way (an earlier read of this
        // directory): a fetch would only hold a slot to wait.
        batch.queue = queue
            .into_iter()
            .map(|(_, seg, folder)| ((mount.clone(), join(path, seg)), folder))
            .filter(|(key, folder)| !caches.in_hand(key, *folder))
            .collect();
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_tree::{m, tree_of};
    use super::super::{Node, Tree, ROOT_INO};
    use super::*;
    use crate::slots::Slots;
    use crate::store::memory::{MemoryStore, Op};

    const N: usize = 3 * PREFETCH_MAX;

    /// Lets the prefetch tasks run until they make no more requests.
    async fn settle(store: &MemoryStore) {
        loop {
            let before = store.count(Op::Read);
            for _ in 0..200 {
                tokio::task::yield_now().await;
            }
            if store.count(Op::Read) == before {
                return;
            }
        }
    }

    /// A tree with prefetch whose folder `big` holds [`N`] secrets, the
    /// folder's inode looked up and no request counted yet.
    async fn big_folder() -> (Arc<Tree<MemoryStore>>, Arc<MemoryStore>, u64) {
        let tree = tree_of(
            (0..N).map(|i| format!("big/s{i:05}")).collect(),
            Ok(()),
            100_000,
            1 << 30,
        );
        let tree = Arc::new(
            Arc::into_inner(tree)
                .expect("one reference")
                .with_prefetch(Some(Slots::new(32))),
        );
        let store = tree.caches.store.clone();
        let root = tree.lookup(ROOT_INO, b"secret").await.unwrap().ino;
        let big = tree.lookup(root, b"big").await.unwrap().ino;
        store.clear_calls();
        (tree, store, big)
    }

    /// A walk of a folder three times the window, in stream order, finds
    /// every child fetched before it gets there, while the requests made
    /// never run more than a window ahead of the children visited.
    #[tokio::test]
    async fn a_walk_of_a_big_folder_finds_every_child_prefetched() {
        let (tree, store, big) = big_folder().await;
        let listing = tree.readdir(big, true).await.unwrap();
        let children: Vec<u64> = listing.after(0).map(|(_, _, e)| e.ino).collect();
        assert_eq!(children.len(), N);
        settle(&store).await;
        assert_eq!(store.count(Op::Read), PREFETCH_MAX, "one read's prefetch");
        for (visits, ino) in children.into_iter().enumerate() {
            let node = tree.node(ino).unwrap();
            let Node::Dir { path, .. } = &*node else {
                panic!("a secret is a directory")
            };
            let key = (m("secret"), path.clone());
            assert!(
                tree.caches.secrets.in_hand(&key),
                "child {visits} ({path}) not prefetched"
            );
            match tree.readdir_cached(ino, true) {
                Some(l) => drop(l.unwrap()),
                None => drop(tree.readdir(ino, true).await.unwrap()),
            }
            settle(&store).await;
            let reads = store.count(Op::Read);
            assert!(
                reads <= visits + 1 + PREFETCH_MAX,
                "{reads} reads after {} visits",
                visits + 1
            );
        }
        assert_eq!(store.count(Op::Read), N, "each child fetched once");
    }

    /// A read of a big folder is never answered from the cache on the
    /// FUSE thread, even with its first batch in hand: building a listing
    /// of thousands of children there would stall every other operation
    /// of the mount. The read through the runtime serves it from the cache.
    #[tokio::test]
    async fn a_big_folder_read_is_left_to_a_task() {
        let (tree, store, big) = big_folder().await;
        let listing = tree.readdir(big, true).await.unwrap();
        settle(&store).await;
        let requests = store.calls().len();
        assert!(tree.readdir_cached(big, true).is_none(), "built in place");
        assert_eq!(tree.readdir(big, true).await.unwrap().len(), listing.len());
        assert_eq!(store.calls().len(), requests, "no request");
    }

    /// Children visited out of stream order (`ls -R` goes by name, and a
    /// `cat` by path) move the window too, one prefetch per visit at most:
    /// a user who visits few children of a huge folder costs few requests.
    #[tokio::test]
    async fn visits_bound_the_prefetch_of_a_huge_folder() {
        let (tree, store, big) = big_folder().await;
        drop(tree.readdir(big, true).await.unwrap());
        settle(&store).await;
        // Name order: scattered over the stream.
        for i in (0..N).step_by(N / 100) {
            let e = tree
                .lookup(big, format!("s{i:05}").as_bytes())
                .await
                .unwrap();
            drop(tree.readdir(e.ino, true).await.unwrap());
            settle(&store).await;
        }
        let reads = store.count(Op::Read);
        assert!(
            reads <= PREFETCH_MAX + 2 * 100,
            "{reads} reads for 100 visits"
        );
    }
}
