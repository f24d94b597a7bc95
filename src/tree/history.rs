//! KV v2 history: `.versions/<n>/`, one directory per version that still
//! holds data, laid out like the secret, and `.metadata.json`, the secret's
//! metadata. Neither is listed in its secret's directory, so a walk (`find`,
//! `grep -r`, `ls -lR`) asks Vault for no history; both are
//! reached by name (docs/semantics.md).

use std::sync::Arc;
use tokio::time::Instant;

use super::layout::{file_name, file_named, Name};
use super::{Entry, Listing, Node, Tree};
use crate::error::FsError;
use crate::naming::{METADATA_VIEW, VERSIONS_DIR};
use crate::secret::SecretFile;
use crate::store::{KvMount, KvVersion, SecretStore};

/// The version a `.versions` entry names: canonical decimal, from 1, so one
/// version has one name, and at most `i64::MAX`: Vault reads a version as
/// a signed 64-bit number and refuses a larger one as a bad request, which
/// would read as an I/O error where the answer is "no such version".
fn version_number(seg: &str) -> Option<u64> {
    let n: u64 = seg.parse().ok()?;
    (n > 0 && n <= i64::MAX as u64 && n.to_string() == seg).then_some(n)
}

impl<S: SecretStore> Tree<S> {
    /// `.versions` or `.metadata.json` inside secret `path`, when that is
    /// the own name `own`. A key or a child of the same name has another
    /// file name (`naming::encode`).
    pub(super) async fn history_entry(
        &self,
        mount: &KvMount,
        path: &str,
        own: &str,
    ) -> Result<Option<Entry>, FsError> {
        if mount.version != KvVersion::V2 {
            return Ok(None);
        }
        match own {
            // No request: the versions are asked for when it is read.
            VERSIONS_DIR => Ok(Some(self.dir_entry(Node::Versions {
                mount: mount.clone(),
                secret: path.to_string(),
            }))),
            METADATA_VIEW => {
                let cached = self.caches.metadata(mount, path).await;
                let document = cached.answer?.document.clone();
                let path = path.into();
                Ok(self.file_entry(mount, &path, &document, SecretFile::Json, cached.until))
            }
            _ => Ok(None),
        }
    }

    /// `.versions/<seg>`: a version read by number, which needs no metadata
    /// permission (a token that may read data but not metadata can still
    /// `cat .versions/3/password`). Deleted and destroyed versions are absent.
    pub(super) async fn lookup_version(
        &self,
        mount: &KvMount,
        secret: &str,
        seg: &str,
    ) -> Result<Entry, FsError> {
        let n = version_number(seg).ok_or(FsError::NoEntry)?;
        if self
            .caches
            .old_version(mount, secret, n)
            .await
            .answer?
            .deleted
        {
            return Err(FsError::NoEntry);
        }
        Ok(self.dir_entry(Node::AtVersion {
            mount: mount.clone(),
            secret: secret.to_string(),
            n,
        }))
    }

    pub(super) async fn lookup_in_version(
        &self,
        mount: &KvMount,
        secret: &str,
        n: u64,
        name: &Name,
    ) -> Result<Entry, FsError> {
        let cached = self.caches.old_version(mount, secret, n).await;
        let s = cached.answer?;
        let file = file_named(&s, name).ok_or(FsError::NoEntry)?;
        self.file_entry(mount, &secret.into(), &s, file, cached.until)
            .ok_or(FsError::NoEntry)
    }

    /// The versions that still hold data (needs metadata read permission).
    pub(super) async fn readdir_versions(
        &self,
        mount: &KvMount,
        secret: &str,
    ) -> Result<Listing, FsError> {
        let cached = self.caches.metadata(mount, secret).await;
        let entries = cached
            .answer?
            .live
            .iter()
            .map(|&n| {
                let node = Node::AtVersion {
                    mount: mount.clone(),
                    secret: secret.to_string(),
                    n,
                };
                (n.to_string(), self.dir_entry(node))
            })
            .collect();
        Ok(self.listing_of(entries, cached.until))
    }

    pub(super) async fn readdir_version(
        &self,
        mount: &KvMount,
        secret: &str,
        n: u64,
    ) -> Result<Listing, FsError> {
        let cached = self.caches.old_version(mount, secret, n).await;
        let (s, until) = (cached.answer?, cached.until);
        let shared: Arc<str> = secret.into();
        let entries = s
            .files()
            .into_iter()
            .filter_map(|f| {
                let name = file_name(mount, secret, &f)?;
                Some((name, self.file_entry(mount, &shared, &s, f, until)?))
            })
            .collect();
        Ok(self.listing_of(entries, until))
    }

    /// When the answer a history directory's listing is built from expires.
    pub(super) fn history_valid_until(&self, node: &Node) -> Option<Instant> {
        match node {
            Node::Versions { mount, secret } => self
                .caches
                .metadata
                .peek(&(mount.clone(), secret.clone()))
                .map(|c| c.until),
            Node::AtVersion { mount, secret, n } => self
                .caches
                .old_versions
                .peek(&(mount.clone(), secret.clone(), *n))
                .map(|c| c.until),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::version_number;

    #[test]
    fn one_name_per_version() {
        assert_eq!(version_number("1"), Some(1));
        assert_eq!(version_number("42"), Some(42));
        assert_eq!(version_number("9223372036854775807"), Some(i64::MAX as u64));
        for bad in [
            "0",
            "01",
            "+1",
            "-1",
            " 1",
            "1.0",
            "",
            "x",
            "99999999999999999999",
            "9223372036854775808",
            "18446744073709551615",
        ] {
            assert_eq!(version_number(bad), None, "{bad:?}");
        }
    }
}
