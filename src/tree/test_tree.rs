//! The tree tests' trees: a [`Tree`] over a [`MemoryStore`] holding a set
//! of secret paths (each with no keys), where SCAN may be made to fail.

use std::sync::Arc;

use super::Tree;
use crate::cache::CachePolicy;
use crate::error::VaultError;
use crate::store::memory::{MemoryStore, Op};
use crate::store::{KvMount, KvVersion};

pub(super) fn m(p: &str) -> KvMount {
    KvMount {
        path: p.into(),
        version: KvVersion::V2,
    }
}

/// A tree over KV v2 mount `secret` holding the secrets `keys`, whose SCAN
/// answers `scan` when it is an error, with these cache bounds and a TTL
/// no test outlives.
pub(super) fn tree_of(
    keys: Vec<String>,
    scan: Result<(), VaultError>,
    max_entries: usize,
    max_bytes: usize,
) -> Arc<Tree<MemoryStore>> {
    let store = MemoryStore::new();
    store.kv2("secret");
    for k in &keys {
        store.put("secret", k, serde_json::json!({}));
    }
    if let Err(e) = scan {
        store.fail_below(Op::Scan, "secret", "", e);
    }
    let policy = CachePolicy {
        ttl: std::time::Duration::from_secs(60),
        stale_if_error: std::time::Duration::ZERO,
        max_entries,
        max_bytes,
    };
    Arc::new(Tree::new(Arc::new(store), policy))
}
