//! The boundary between the filesystem and where secrets come from: the
//! [`SecretStore`] trait and the types it speaks. The HTTP client
//! (`vault`) implements it for a real server.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::error::VaultError;
use crate::secret::{Secret, SecretBuf};

#[cfg(test)]
pub mod memory;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvVersion {
    V1,
    V2,
}

/// A KV secrets engine mount. `path` has no trailing slash (`secret`, `team/kv`).
/// Shared, not copied: every inode and cache key of the mount holds one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KvMount {
    pub path: std::sync::Arc<str>,
    pub version: KvVersion,
}

/// What the filesystem needs from Vault. Paths inside a mount have no
/// leading or trailing slash; `""` is the mount's root.
pub trait SecretStore: Send + Sync + 'static {
    /// The KV mounts to show.
    fn mounts(&self) -> impl Future<Output = Result<Vec<KvMount>, VaultError>> + Send;
    /// The raw LIST keys of a folder (`name` for secrets, `name/` for folders).
    fn list(
        &self,
        mount: &KvMount,
        path: &str,
    ) -> impl Future<Output = Result<Vec<String>, VaultError>> + Send;
    /// Every secret below a folder, recursively (OpenBao's SCAN): keys like
    /// `a/b/c`, secrets only. Servers without SCAN answer an error.
    fn scan(
        &self,
        mount: &KvMount,
        path: &str,
    ) -> impl Future<Output = Result<Vec<String>, VaultError>> + Send;
    /// The current version of a secret.
    fn read(
        &self,
        mount: &KvMount,
        path: &str,
    ) -> impl Future<Output = Result<Secret, VaultError>> + Send;
    /// Version `version` of a KV v2 secret; `NotFound` on a KV v1 mount,
    /// which keeps no history.
    fn read_version(
        &self,
        mount: &KvMount,
        path: &str,
        version: u64,
    ) -> impl Future<Output = Result<Secret, VaultError>> + Send;
    /// A KV v2 secret's metadata; `NotFound` on a KV v1 mount.
    fn metadata(
        &self,
        mount: &KvMount,
        path: &str,
    ) -> impl Future<Output = Result<Metadata, VaultError>> + Send;
    /// A number that changes whenever the credentials do, after checking
    /// their source anew (a token file): answers refused under another
    /// number may be given now. Cheap (a `stat`); called after a refusal.
    fn credentials(&self) -> u64 {
        0
    }
}

/// A KV v2 secret's metadata (`GET <mount>/metadata/<path>`).
pub struct Metadata {
    /// Vault's `data` object with its keys sorted, as the one view of a
    /// secret-shaped holder, so a `.metadata.json` inode holds it like any file.
    pub document: Arc<Secret>,
    /// The versions that still hold data (neither deleted nor destroyed),
    /// ascending.
    pub live: Vec<u64>,
}

impl Metadata {
    /// The metadata of a secret whose metadata object is `data` (what
    /// `.metadata.json` shows), last written at `mtime`, with the versions
    /// `live` that still hold data. Whoever reads the metadata (the Vault
    /// client from its answer, the memory store from what it holds) says
    /// which versions live; the document is rendered here, the one way.
    pub fn new(data: &Map<String, Value>, mut live: Vec<u64>, mtime: Option<SystemTime>) -> Self {
        live.sort_unstable();
        let mut doc = SecretBuf::default();
        // serde_json's map is ordered by key: the keys come out sorted.
        let _ = serde_json::to_writer_pretty(&mut doc, data);
        doc.extend(b"\n");
        Metadata {
            document: Arc::new(Secret::document(doc.0, mtime)),
            live,
        }
    }
}
