//! Prefetch: after a directory read, its children are fetched in the
//! background, so a walker that visits them next finds each one cached or
//! on its way instead of waiting for one round trip per child.

use std::sync::Arc;

use super::answers::Key;
use super::layout::{encoded, is_path_segment, join, MAX_PATH};
use super::Tree;
use crate::store::{KvMount, SecretStore};

/// At most this many children of a directory are prefetched per read of
/// it: the rest are fetched when asked for. Without a bound, one `ls` of a
/// folder of 100,000 secrets would make 100,000 requests.
const PREFETCH_MAX: usize = 1000;

impl<S: SecretStore> Tree<S> {
    /// Walks (`find`, `ls -lR`, `grep -r`) visit every child of a directory
    /// they have just read, one at a time. Fetching those children now, in
    /// parallel, turns a serial chain of round trips into a pipeline: the
    /// walker then finds each child cached or already in flight (the cache's
    /// single-flight joins it). One task works through [`Tree::to_prefetch`],
    /// a request slot at a time, so a big folder costs no task per child.
    pub(super) fn prefetch_children(
        self: &Arc<Self>,
        mount: &KvMount,
        path: &str,
        keys: &[String],
    ) {
        let Some(permits) = &self.prefetch else {
            return;
        };
        let queue = self.to_prefetch(mount, path, keys);
        if queue.is_empty() {
            return;
        }
        let (tree, permits) = (self.clone(), permits.clone());
        tokio::spawn(async move {
            for ((mount, path), folder) in queue {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let tree = tree.clone();
                // At most as many fetches at once as there are permits.
                tokio::spawn(async move {
                    let _permit = permit;
                    // Errors are cached or retried by whoever asks next.
                    if folder {
                        let _ = tree.answers.listing(&mount, &path).await;
                    } else {
                        let _ = tree.answers.secret(&mount, &path).await;
                    }
                });
            }
        });
    }

    /// The children of `path` (named in `keys`, its LIST answer) that a
    /// read of it prefetches, in the order the walker will visit them, each
    /// with whether it is a folder: one level deep only, so `ls` of a big
    /// tree's root does not fetch the whole tree; the first
    /// [`PREFETCH_MAX`] children in stream order only; and none that is
    /// cached or on its way. None when prefetching is off.
    pub(super) fn to_prefetch(
        &self,
        mount: &KvMount,
        path: &str,
        keys: &[String],
    ) -> Vec<(Key, bool)> {
        if self.prefetch.is_none() {
            return Vec::new();
        }
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
        queue
            .into_iter()
            .filter(|(_, key, folder)| match folder {
                true => !self.answers.listings.in_hand(key),
                false => !self.answers.secrets.in_hand(key),
            })
            .map(|(_, key, folder)| (key, folder))
            .collect()
    }
}
