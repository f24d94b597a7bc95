//! An in-memory [`SecretStore`] for tests: any tree of KV mounts, secrets
//! and versions, any answer (403, 404, 5xx, sealed, a delay, a hang) for
//! any operation and path, and a log of every call it received.
//!
//! ```ignore
//! let store = Arc::new(MemoryStore::new());
//! store
//!     .kv2("secret")
//!     .put("secret", "app/db", json!({"password": "hunter2"}))
//!     .fail(Op::List, "secret", "app", VaultError::Forbidden);
//! let tree = Tree::new(store.clone(), policy);
//! // ... walk the tree ...
//! assert_eq!(store.count(Op::Read), 1);
//! store.fail_everything(Fault::status(503)); // Vault goes away
//! ```
//!
//! - **Data.** `kv1`/`kv2` add a mount; `put` writes a secret (a new
//!   version on KV v2, the value on KV v1); folders are implied by the
//!   secrets' paths. `delete_version`/`destroy_version` end a KV v2 version
//!   (a deleted current version is still listed, as Vault lists it);
//!   `list_entry` adds a name that exists only in its folder's LIST (and
//!   SCAN) answer.
//! - **Answers.** LIST answers `name` for a secret and `name/` for a folder,
//!   sorted, and 404 for a folder with nothing in it; SCAN answers every
//!   secret below a folder (`a/b/c`), or, with [`MemoryStore::with_scan`] off,
//!   HTTP 405 as a server without SCAN does. A KV v2 read carries its
//!   version's creation time; metadata holds Vault's document, built from
//!   the versions held.
//! - **Faults.** `fail` (one path), `fail_below` (a folder and everything
//!   below it; `""` for a whole mount) and `fail_everything` program a
//!   [`Fault`] for an [`Op`]; the last matching rule wins, and `heal`
//!   clears them all. Every method takes `&self`, so a test changes Vault's
//!   behaviour while the tree holds the store.
//! - **Log.** Every call is logged before its fault applies: `calls`,
//!   `count`, `count_at`, `clear_calls`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::{KvMount, KvVersion, Metadata, SecretStore};
use crate::error::VaultError;
use crate::secret::Secret;

/// The operations of [`SecretStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Mounts,
    List,
    Scan,
    Read,
    ReadVersion,
    Metadata,
}

/// How a call is answered instead of (or before) its normal answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer this error.
    Fail(VaultError),
    /// Answer normally, after this long.
    Delay(Duration),
    /// Never answer.
    Hang,
}

impl Fault {
    /// An HTTP error status (`Fault::status(503)`).
    pub fn status(status: u16) -> Fault {
        Fault::Fail(VaultError::Http {
            status,
            message: "memory store fault".into(),
        })
    }
}

impl From<VaultError> for Fault {
    fn from(e: VaultError) -> Fault {
        Fault::Fail(e)
    }
}

/// One call the store received. `mount` and `path` are `""` for
/// [`Op::Mounts`]; `version` is set for [`Op::ReadVersion`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: Op,
    pub mount: String,
    pub path: String,
    pub version: Option<u64>,
}

#[derive(Debug, Clone)]
struct Rule {
    /// `None`: every operation.
    op: Option<Op>,
    /// `None`: every mount (and [`Op::Mounts`]).
    mount: Option<String>,
    path: String,
    /// `path` and everything below it (`""`: everything).
    below: bool,
    fault: Fault,
}

impl Rule {
    fn matches(&self, call: &Call) -> bool {
        let path_matches = match self.below {
            false => call.path == self.path,
            true => {
                self.path.is_empty()
                    || call.path == self.path
                    || call
                        .path
                        .strip_prefix(&self.path)
                        .is_some_and(|r| r.starts_with('/'))
            }
        };
        self.op.is_none_or(|op| op == call.op)
            && self.mount.as_ref().is_none_or(|m| *m == call.mount)
            && path_matches
    }
}

/// One KV version. KV v1 secrets have exactly one, rewritten in place.
#[derive(Debug, Clone)]
struct StoredVersion {
    data: Map<String, Value>,
    created: SystemTime,
    deleted: bool,
    destroyed: bool,
}

impl StoredVersion {
    fn live(&self) -> bool {
        !self.deleted && !self.destroyed
    }
}

#[derive(Default)]
struct State {
    mounts: BTreeMap<String, KvVersion>,
    /// (mount, path) → versions, oldest first.
    secrets: BTreeMap<(String, String), Vec<StoredVersion>>,
    /// (mount, path) of names that exist only as LIST entries.
    listed: BTreeSet<(String, String)>,
    rules: Vec<Rule>,
    calls: Vec<Call>,
    no_scan: bool,
}

/// See the module documentation.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("memory store lock")
    }

    /// Add a KV v1 mount.
    pub fn kv1(&self, mount: &str) -> &Self {
        self.state().mounts.insert(mount.into(), KvVersion::V1);
        self
    }

    /// Add a KV v2 mount.
    pub fn kv2(&self, mount: &str) -> &Self {
        self.state().mounts.insert(mount.into(), KvVersion::V2);
        self
    }

    /// Write a secret: a new version on KV v2, the value on KV v1. `data`
    /// must be a JSON object; the mount must exist.
    pub fn put(&self, mount: &str, path: &str, data: Value) -> &Self {
        let Value::Object(data) = data else {
            panic!("a secret's data is a JSON object, not {data}");
        };
        let mut st = self.state();
        let version = *st.mounts.get(mount).expect("put into a known mount");
        // Whole seconds, as Vault's RFC 3339 times round-trip here.
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let stored = StoredVersion {
            data,
            created: UNIX_EPOCH + Duration::from_secs(secs.as_secs()),
            deleted: false,
            destroyed: false,
        };
        let versions = st.secrets.entry((mount.into(), path.into())).or_default();
        if version == KvVersion::V1 {
            versions.clear();
        }
        versions.push(stored);
        self
    }

    /// Soft-delete version `n` (from 1) of a KV v2 secret.
    pub fn delete_version(&self, mount: &str, path: &str, n: u64) -> &Self {
        self.stored_version(mount, path, n, |v| v.deleted = true)
    }

    /// Destroy version `n` (from 1) of a KV v2 secret.
    pub fn destroy_version(&self, mount: &str, path: &str, n: u64) -> &Self {
        self.stored_version(mount, path, n, |v| v.destroyed = true)
    }

    fn stored_version(
        &self,
        mount: &str,
        path: &str,
        n: u64,
        f: impl FnOnce(&mut StoredVersion),
    ) -> &Self {
        let mut st = self.state();
        let versions = st.secrets.get_mut(&(mount.into(), path.into()));
        let index = usize::try_from(n).ok().and_then(|n| n.checked_sub(1));
        f(versions
            .and_then(|v| v.get_mut(index?))
            .expect("a version that was written"));
        self
    }

    /// A name that exists only in its folder's LIST answer (and in SCAN,
    /// unless it ends with `/`): reading it answers 404. `path` is the
    /// folder's path and the raw key, e.g. `app/x`, `app/sub/` or `app/..`.
    pub fn list_entry(&self, mount: &str, path: &str) -> &Self {
        self.state().listed.insert((mount.into(), path.into()));
        self
    }

    /// Whether SCAN is supported (on by default); off, SCAN answers 405.
    pub fn with_scan(&self, on: bool) -> &Self {
        self.state().no_scan = !on;
        self
    }

    /// Answer `op` on exactly `path` of `mount` with `fault`.
    pub fn fail(&self, op: Op, mount: &str, path: &str, fault: impl Into<Fault>) -> &Self {
        self.rule(Some(op), Some(mount), path, false, fault.into())
    }

    /// Answer `op` on `prefix` and every path below it (`""`: the whole
    /// mount) with `fault`.
    pub fn fail_below(&self, op: Op, mount: &str, prefix: &str, fault: impl Into<Fault>) -> &Self {
        self.rule(Some(op), Some(mount), prefix, true, fault.into())
    }

    /// Answer every call, [`Op::Mounts`] included, with `fault`.
    pub fn fail_everything(&self, fault: impl Into<Fault>) -> &Self {
        self.rule(None, None, "", true, fault.into())
    }

    fn rule(
        &self,
        op: Option<Op>,
        mount: Option<&str>,
        path: &str,
        below: bool,
        fault: Fault,
    ) -> &Self {
        self.state().rules.push(Rule {
            op,
            mount: mount.map(str::to_string),
            path: path.into(),
            below,
            fault,
        });
        self
    }

    /// Drop every programmed fault: Vault answers normally again.
    pub fn heal(&self) -> &Self {
        self.state().rules.clear();
        self
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// How many `op` calls were received.
    pub fn count(&self, op: Op) -> usize {
        self.state().calls.iter().filter(|c| c.op == op).count()
    }

    /// How many `op` calls for exactly `path` of `mount` were received.
    pub fn count_at(&self, op: Op, mount: &str, path: &str) -> usize {
        let st = self.state();
        let at = |c: &&Call| c.op == op && c.mount == mount && c.path == path;
        st.calls.iter().filter(at).count()
    }

    /// Forget the calls received so far.
    pub fn clear_calls(&self) -> &Self {
        self.state().calls.clear();
        self
    }

    /// Log the call, then apply the last matching fault: an error is
    /// returned, a delay is waited out, a hang never ends.
    async fn receive(
        &self,
        op: Op,
        mount: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<(), VaultError> {
        let call = Call {
            op,
            mount: mount.into(),
            path: path.into(),
            version,
        };
        let fault = {
            let mut st = self.state();
            let fault = st
                .rules
                .iter()
                .rev()
                .find(|r| r.matches(&call))
                .map(|r| r.fault.clone());
            st.calls.push(call);
            fault
        };
        match fault {
            None => Ok(()),
            Some(Fault::Fail(e)) => Err(e),
            Some(Fault::Delay(d)) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Some(Fault::Hang) => std::future::pending().await,
        }
    }

    /// The raw keys below `path` of `mount`, relative to it: secrets and
    /// LIST-only names.
    fn keys_below(st: &State, mount: &str, path: &str) -> Vec<String> {
        let prefix = match path.is_empty() {
            true => String::new(),
            false => format!("{path}/"),
        };
        let secrets = st.secrets.keys();
        secrets
            .chain(st.listed.iter())
            .filter(|(m, _)| m == mount)
            .filter_map(|(_, p)| p.strip_prefix(&prefix))
            .filter(|rest| !rest.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn version_of(
        st: &State,
        mount: &KvMount,
        path: &str,
        n: Option<u64>,
    ) -> Option<(u64, StoredVersion)> {
        let versions = st
            .secrets
            .get(&(mount.path.to_string(), path.to_string()))?;
        let n = n.unwrap_or(versions.len() as u64);
        let v = versions.get(usize::try_from(n).ok()?.checked_sub(1)?)?;
        Some((n, v.clone()))
    }

    fn secret((n, v): (u64, StoredVersion), mount: &KvMount) -> Secret {
        let v2 = mount.version == KvVersion::V2;
        let mtime = v2.then_some(v.created);
        let s = match v.live() {
            true => Secret::from_data(v.data, mtime),
            false => Secret::deleted(mtime),
        };
        s.with_version(v2.then_some(n))
    }
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339(t).to_string()
}

impl SecretStore for MemoryStore {
    async fn mounts(&self) -> Result<Vec<KvMount>, VaultError> {
        self.receive(Op::Mounts, "", "", None).await?;
        let st = self.state();
        let mounts = st.mounts.iter().map(|(path, &version)| KvMount {
            path: path.as_str().into(),
            version,
        });
        Ok(mounts.collect())
    }

    async fn list(&self, mount: &KvMount, path: &str) -> Result<Vec<String>, VaultError> {
        self.receive(Op::List, &mount.path, path, None).await?;
        let st = self.state();
        let keys: BTreeSet<String> = Self::keys_below(&st, &mount.path, path)
            .into_iter()
            .map(|rest| match rest.split_once('/') {
                Some((seg, _)) => format!("{seg}/"),
                None => rest,
            })
            .collect();
        match keys.is_empty() {
            true => Err(VaultError::NotFound),
            false => Ok(keys.into_iter().collect()),
        }
    }

    async fn scan(&self, mount: &KvMount, path: &str) -> Result<Vec<String>, VaultError> {
        self.receive(Op::Scan, &mount.path, path, None).await?;
        let st = self.state();
        if st.no_scan {
            return Err(VaultError::Http {
                status: 405,
                message: "unsupported operation".into(),
            });
        }
        let mut keys = Self::keys_below(&st, &mount.path, path);
        keys.retain(|k| !k.ends_with('/'));
        keys.sort();
        keys.dedup();
        match keys.is_empty() {
            true => Err(VaultError::NotFound),
            false => Ok(keys),
        }
    }

    async fn read(&self, mount: &KvMount, path: &str) -> Result<Secret, VaultError> {
        self.receive(Op::Read, &mount.path, path, None).await?;
        let v = Self::version_of(&self.state(), mount, path, None).ok_or(VaultError::NotFound)?;
        Ok(Self::secret(v, mount))
    }

    async fn read_version(
        &self,
        mount: &KvMount,
        path: &str,
        version: u64,
    ) -> Result<Secret, VaultError> {
        self.receive(Op::ReadVersion, &mount.path, path, Some(version))
            .await?;
        if mount.version != KvVersion::V2 {
            return Err(VaultError::NotFound);
        }
        let v = Self::version_of(&self.state(), mount, path, Some(version));
        Ok(Self::secret(v.ok_or(VaultError::NotFound)?, mount))
    }

    async fn metadata(&self, mount: &KvMount, path: &str) -> Result<Metadata, VaultError> {
        self.receive(Op::Metadata, &mount.path, path, None).await?;
        let st = self.state();
        let key = (mount.path.to_string(), path.to_string());
        let versions = match (mount.version, st.secrets.get(&key)) {
            (KvVersion::V2, Some(v)) if !v.is_empty() => v,
            _ => return Err(VaultError::NotFound),
        };
        let each: Map<String, Value> = versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let deleted = match v.deleted {
                    true => rfc3339(v.created),
                    false => String::new(),
                };
                let meta = json!({
                    "created_time": rfc3339(v.created),
                    "deletion_time": deleted,
                    "destroyed": v.destroyed,
                });
                ((i + 1).to_string(), meta)
            })
            .collect();
        let (first, last) = (&versions[0], &versions[versions.len() - 1]);
        // As Vault shows it: what `.metadata.json` holds.
        let data = json!({
            "versions": each,
            "current_version": versions.len(),
            "oldest_version": 1,
            "created_time": rfc3339(first.created),
            "updated_time": rfc3339(last.created),
            "custom_metadata": null,
            "max_versions": 0,
            "cas_required": false,
            "delete_version_after": "0s",
        });
        let Value::Object(data) = data else {
            unreachable!("a JSON object literal")
        };
        let live = (1..)
            .zip(versions)
            .filter(|(_, v)| v.live())
            .map(|(n, _)| n);
        Ok(Metadata::new(&data, live.collect(), Some(last.created)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2() -> KvMount {
        KvMount {
            path: "secret".into(),
            version: KvVersion::V2,
        }
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn store() -> MemoryStore {
        let s = MemoryStore::new();
        s.kv2("secret")
            .kv1("team/kv")
            .put("secret", "app", json!({"user": "u"}))
            .put("secret", "app/db", json!({"password": "p"}))
            .put("secret", "app/deep/x", json!({}))
            .put("secret", "top", json!({}));
        s
    }

    #[tokio::test]
    async fn list_answers_secrets_as_names_and_folders_with_a_slash() {
        let s = store();
        assert_eq!(
            s.list(&v2(), "").await.unwrap(),
            strings(&["app", "app/", "top"])
        );
        assert_eq!(
            s.list(&v2(), "app").await.unwrap(),
            strings(&["db", "deep/"])
        );
        assert_eq!(s.list(&v2(), "top").await, Err(VaultError::NotFound));
        assert_eq!(s.list(&v2(), "ap").await, Err(VaultError::NotFound));
        s.list_entry("secret", "app/..")
            .list_entry("secret", "app/sub/");
        assert_eq!(
            s.list(&v2(), "app").await.unwrap(),
            strings(&["..", "db", "deep/", "sub/"])
        );
        assert_eq!(
            s.read(&v2(), "app/..").await.err(),
            Some(VaultError::NotFound)
        );
    }

    #[tokio::test]
    async fn scan_answers_every_secret_below_or_405_without_scan() {
        let s = store();
        let all = strings(&["app", "app/db", "app/deep/x", "top"]);
        assert_eq!(s.scan(&v2(), "").await.unwrap(), all);
        assert_eq!(
            s.scan(&v2(), "app").await.unwrap(),
            strings(&["db", "deep/x"])
        );
        s.with_scan(false);
        let err = s.scan(&v2(), "").await.unwrap_err();
        assert!(matches!(err, VaultError::Http { status: 405, .. }), "{err}");
    }

    #[tokio::test]
    async fn mounts_are_sorted_with_their_versions() {
        let ms = store().mounts().await.unwrap();
        let got: Vec<_> = ms.iter().map(|m| (&*m.path, m.version)).collect();
        assert_eq!(got, [("secret", KvVersion::V2), ("team/kv", KvVersion::V1)]);
    }

    #[tokio::test]
    async fn kv2_keeps_versions_and_their_metadata() {
        let s = store();
        s.put("secret", "app/db", json!({"password": "p2"}))
            .put("secret", "app/db", json!({"password": "p3"}))
            .delete_version("secret", "app/db", 1);
        let value = |x: &Secret| x.value("password").map(|b| b.to_vec());
        assert_eq!(
            value(&s.read(&v2(), "app/db").await.unwrap()),
            Some(b"p3".to_vec())
        );
        let v2nd = s.read_version(&v2(), "app/db", 2).await.unwrap();
        assert_eq!(value(&v2nd), Some(b"p2".to_vec()));
        assert!(v2nd.mtime.is_some());
        assert!(s.read_version(&v2(), "app/db", 1).await.unwrap().deleted);
        assert!(s.read_version(&v2(), "app/db", 4).await.is_err());
        let meta = s.metadata(&v2(), "app/db").await.unwrap();
        assert_eq!(meta.live, [2, 3]);
        let doc: Value = serde_json::from_slice(
            meta.document
                .content(&crate::secret::SecretFile::Json)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(doc["current_version"], 3);
        // The current version deleted: still listed, read as deleted.
        s.delete_version("secret", "app/db", 3);
        assert!(s.read(&v2(), "app/db").await.unwrap().deleted);
        assert!(s
            .list(&v2(), "app")
            .await
            .unwrap()
            .contains(&"db".to_string()));
    }

    #[tokio::test]
    async fn kv1_overwrites_and_has_no_history() {
        let s = store();
        let kv1 = KvMount {
            path: "team/kv".into(),
            version: KvVersion::V1,
        };
        s.put("team/kv", "a", json!({"k": "1"}))
            .put("team/kv", "a", json!({"k": "2"}));
        let a = s.read(&kv1, "a").await.unwrap();
        assert_eq!(a.value("k").map(|b| b.to_vec()), Some(b"2".to_vec()));
        assert_eq!(a.mtime, None);
        assert!(s.read_version(&kv1, "a", 1).await.is_err());
        assert!(s.metadata(&kv1, "a").await.is_err());
    }

    #[tokio::test]
    async fn faults_match_by_operation_and_path_and_the_last_rule_wins() {
        let s = store();
        s.fail(Op::List, "secret", "app", VaultError::Forbidden)
            .fail_below(Op::Read, "secret", "app", Fault::status(503));
        assert_eq!(s.list(&v2(), "app").await, Err(VaultError::Forbidden));
        assert!(s.list(&v2(), "app/deep").await.is_ok(), "exact path only");
        assert!(s.read(&v2(), "app").await.is_err());
        assert!(s.read(&v2(), "app/deep/x").await.is_err());
        assert!(s.read(&v2(), "apple").await.is_err(), "no such secret");
        assert!(s.read(&v2(), "top").await.is_ok(), "outside the prefix");
        s.fail(Op::Read, "secret", "app", VaultError::NotFound);
        assert_eq!(s.read(&v2(), "app").await.err(), Some(VaultError::NotFound));
        s.fail_everything(VaultError::Sealed);
        assert_eq!(s.mounts().await, Err(VaultError::Sealed));
        assert_eq!(s.read(&v2(), "top").await.err(), Some(VaultError::Sealed));
        s.heal();
        assert!(s.mounts().await.is_ok() && s.list(&v2(), "app").await.is_ok());
    }

    #[tokio::test]
    async fn a_delay_answers_late_and_a_hang_never() {
        let s = store();
        let d = Duration::from_millis(30);
        s.fail(Op::Read, "secret", "top", Fault::Delay(d));
        let started = std::time::Instant::now();
        assert!(s.read(&v2(), "top").await.is_ok());
        assert!(started.elapsed() >= d);
        s.fail(Op::Read, "secret", "top", Fault::Hang);
        let hung = tokio::time::timeout(Duration::from_millis(50), s.read(&v2(), "top")).await;
        assert!(hung.is_err(), "no answer");
    }

    #[tokio::test]
    async fn every_call_is_logged_faulted_or_not() {
        let s = store();
        s.fail(Op::Read, "secret", "top", VaultError::Forbidden);
        let _ = s.read(&v2(), "top").await;
        let _ = s.read_version(&v2(), "app", 1).await;
        let _ = s.mounts().await;
        let call = |op, mount: &str, path: &str, version| Call {
            op,
            mount: mount.into(),
            path: path.into(),
            version,
        };
        assert_eq!(
            s.calls(),
            [
                call(Op::Read, "secret", "top", None),
                call(Op::ReadVersion, "secret", "app", Some(1)),
                call(Op::Mounts, "", "", None),
            ]
        );
        assert_eq!(s.count(Op::Read), 1);
        assert_eq!(s.count_at(Op::ReadVersion, "secret", "app"), 1);
        s.clear_calls();
        assert!(s.calls().is_empty());
    }
}
