//! The SCAN fallback: one OpenBao SCAN answers the listing of a folder and
//! every folder below it, so a walk makes no LIST per folder. Where SCAN
//! is refused, unknown or too slow, folders are LISTed one at a time; this
//! holds which mounts that is, and turns a SCAN answer into LIST answers
//! within a memory budget, offered to the listings cache.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use super::layout::{join, Key, MAX_PATH};
use crate::cache::{Cache, CachePolicy, Weigh};
use crate::error::VaultError;
use crate::store::{KvMount, SecretStore};

/// How long a mount LISTs after a SCAN ran out of its deadline before SCAN
/// is tried again: long enough that a huge tree costs one slow read in that
/// time, short enough that a Vault that hung for a while gets SCAN back.
const SCAN_RETRY: Duration = Duration::from_secs(600);

/// Where SCAN may be used, and what it answered.
pub(super) struct Scan {
    /// SCAN may be used at all (off with `--no-scan`).
    pub(super) enabled: bool,
    /// Mounts where SCAN was refused (for good: `None`) or ran out of its
    /// deadline (until then): LIST only there.
    no_scan: Mutex<HashMap<String, Option<Instant>>>,
    /// The listings cache's byte budget (see [`Scan::budget`]).
    listing_bytes: usize,
    /// SCAN answers: every secret below a folder.
    pub(super) scans: Cache<Key, Vec<String>>,
}

impl Scan {
    /// SCAN answers kept as `policy` says; the listings they fill are kept
    /// under the same `policy` (see [`Scan::budget`]).
    pub(super) fn new(policy: CachePolicy) -> Self {
        Scan {
            enabled: true,
            no_scan: Mutex::default(),
            listing_bytes: policy.max_bytes,
            scans: Cache::new(policy),
        }
    }

    /// Whether SCAN may be tried in this mount now.
    pub(super) fn allowed(&self, mount: &str) -> bool {
        if !self.enabled {
            return false;
        }
        match self.no_scan.lock().expect("no_scan").get(mount) {
            None => true,
            Some(until) => until.is_some_and(|t| Instant::now() >= t),
        }
    }

    /// Drop the SCAN answers `gone` picks, and every refusal and deadline:
    /// after SIGHUP or a new token, SCAN is tried again.
    pub(super) fn forget(&self, gone: impl Fn(Option<&VaultError>) -> bool) {
        self.scans.forget(|a| gone(a.as_ref().err()));
        self.no_scan.lock().expect("no_scan").clear();
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
    fn budget(&self, answer: &Vec<String>) -> usize {
        answer
            .weight()
            .saturating_mul(4)
            .saturating_add(1 << 20)
            .min(self.listing_bytes / 4)
    }

    /// One SCAN of folder `path` fills `listings` with the LIST answers of
    /// it and of every folder below it, kept as long as the SCAN answer, so
    /// a walk of the folder then makes no LIST at all, however deep (with
    /// LIST, each level waits for the one above). Whenever SCAN fails,
    /// nothing is filled (the caller LISTs), and a SCAN that is refused or
    /// too slow is not tried again in this mount for a while or for good.
    pub(super) async fn fill<S: SecretStore>(
        &self,
        store: &S,
        listings: &Cache<Key, Vec<String>>,
        mount: &KvMount,
        path: &str,
    ) {
        let key = (mount.clone(), path.to_string());
        let started = Instant::now();
        let scanned = self.scans.get(&key, || store.scan(mount, path)).await;
        match scanned.answer {
            Ok(keys) => match scan_listings(path, &keys, self.budget(&keys)) {
                // Kept as long as the SCAN answer (not at all if that was
                // not kept).
                Some(folders) => {
                    for (folder, entries) in folders {
                        let folder_key = (mount.clone(), join(path, &folder));
                        listings.offer(&folder_key, entries, scanned.until);
                    }
                }
                // Describes far more than it weighs: LIST, as for an answer
                // too large to take at once.
                None => {
                    tracing::info!(mount = %mount.path, path = %path, "SCAN answer expands past its budget: listing folders one at a time")
                }
            },
            // Not found, unreachable, or too big to take at once: LIST.
            Err(VaultError::NotFound | VaultError::TooLarge(_)) => {}
            // Slower than its share of the deadline: it would be again (the
            // tree only grows), and each try costs a user's read that
            // share. Only a SCAN that ran for that share: a timeout that
            // comes sooner is the breaker's (another request found Vault
            // down), and says nothing about SCAN.
            // A hung Vault looks the same, so it is tried again later.
            Err(e @ VaultError::Timeout(d)) if !d.is_zero() && started.elapsed() >= d => {
                tracing::info!(mount = %mount.path, error = %e, retry_s = SCAN_RETRY.as_secs(), "SCAN too slow: listing folders one at a time");
                self.no_scan_until(&mount.path, Some(Instant::now() + SCAN_RETRY));
            }
            Err(e) if e.is_transient() => {}
            // Refused (no `scan` capability) or not understood (a server
            // without SCAN): LIST in this mount from now on, rather than a
            // refused SCAN before every LIST.
            Err(e) => {
                tracing::info!(mount = %mount.path, error = %e, "SCAN not available: listing folders one at a time");
                self.no_scan_until(&mount.path, None);
            }
        }
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
pub(super) fn scan_listings(
    base: &str,
    keys: &[String],
    budget: usize,
) -> Option<Vec<(String, Vec<String>)>> {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::store::memory::{MemoryStore, Op};
    use crate::tree::test_tree::tree_of;
    use crate::tree::{Kind, Tree, ROOT_INO};

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

    /// Read every directory below the mount root, as a walk does; returns
    /// the names seen.
    async fn walk(tree: &Arc<Tree<MemoryStore>>) -> Vec<String> {
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

    fn fake(scan: Result<(), VaultError>) -> Arc<Tree<MemoryStore>> {
        let keys = ["a/b/c", "a/d", "e"].map(String::from).to_vec();
        tree_of(keys, scan, 100, 1 << 20)
    }

    #[test]
    fn a_slow_scan_is_tried_again_later_a_refused_one_never() {
        let scan = Scan::new(CachePolicy {
            ttl: Duration::from_secs(60),
            stale_if_error: Duration::ZERO,
            max_entries: 100,
            max_bytes: 1 << 20,
        });
        let (now, s) = (Instant::now(), Duration::from_secs(1));
        assert!(scan.allowed("a"));
        scan.no_scan_until("a", Some(now + 10 * s));
        assert!(!scan.allowed("a"));
        scan.no_scan_until("a", Some(now - s));
        assert!(scan.allowed("a"), "the wait is over");
        scan.no_scan_until("b", None);
        scan.no_scan_until("b", Some(now - s));
        assert!(!scan.allowed("b"), "a refusal is for good");
    }

    /// (bytes the cached listings hold at the least: their keys' strings and
    /// their entries; bytes the listings cache accounts for).
    fn listings_held(tree: &Tree<MemoryStore>) -> (usize, usize) {
        let held = tree.caches.listings.weigh_all(|(m, p), v| {
            m.path.len() + p.len() + v.iter().map(String::len).sum::<usize>()
        });
        (held, tree.caches.listings.usage().1)
    }

    /// Read the mount root as `ls` does: its listing comes from a SCAN.
    async fn read_mount_root(tree: &Arc<Tree<MemoryStore>>) {
        let root = tree.lookup(ROOT_INO, b"secret").await.unwrap().ino;
        let _ = tree.readdir(root, true).await;
    }

    /// One key of `a/` × 5,000 makes 5,000 folders, each with its whole
    /// path as key (quadratic in the key's length): the cache must count
    /// those keys' bytes against its budget.
    #[tokio::test]
    async fn a_deep_scan_answer_stays_within_the_listing_budget() {
        let budget = 1 << 20;
        let tree = tree_of(vec!["a/".repeat(5_000)], Ok(()), 100_000, budget);
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
                let tree = tree_of(keys, Ok(()), 100_000, budget);
                read_mount_root(&tree).await;
                listings_held(&tree)
            });
            proptest::prop_assert!(held <= budget, "{} bytes held, budget {}", held, budget);
            proptest::prop_assert!(held <= counted, "{} bytes held, {} counted", held, counted);
        }
    }

    #[tokio::test]
    async fn a_walk_lists_with_one_scan_where_scan_works() {
        let tree = fake(Ok(()));
        let seen = walk(&tree).await;
        assert!(seen.contains(&"/a/b/c".to_string()), "{seen:?}");
        assert_eq!(tree.caches.store.count(Op::Scan), 1);
        assert_eq!(tree.caches.store.count(Op::List), 0);
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
            assert_eq!(
                tree.caches.store.count(Op::Scan),
                1,
                "asked once, then not again"
            );
            // The root, `a` and `a/b`: one LIST per folder.
            assert_eq!(tree.caches.store.count(Op::List), 3);
            assert_eq!(via_list, walk(&fake(Ok(()))).await, "same tree either way");
        }
    }
}
