//! The tree tests' store: a fake that holds a set of secret paths and
//! answers LIST and SCAN from them (SCAN may be made to fail), counting
//! the calls.

use std::sync::{Arc, Mutex};

use super::scan::scan_listings;
use super::Tree;
use crate::cache::CachePolicy;
use crate::error::VaultError;
use crate::secret::Secret;
use crate::store::{KvMount, KvVersion, SecretStore};

pub(super) fn m(p: &str) -> KvMount {
    KvMount {
        path: p.into(),
        version: KvVersion::V2,
    }
}

/// A store whose SCAN answers `scan` and whose LIST answers from `keys`
/// (every secret path), counting the calls.
pub(super) struct Fake {
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

    pub(super) fn calls(&self, op: &str) -> usize {
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

pub(super) fn fake_with(
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
