//! A secret as the filesystem shows it: one file per key plus the `.json`,
//! `.env` and `.sh` views, rendered once when the secret is fetched and wiped
//! from memory when the last reference goes away.

use std::time::SystemTime;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::views::{render_env, render_shell};
pub use crate::wiped::{wipe, Bytes, SecretBuf};

#[derive(Default)]
pub struct Secret {
    /// (key, rendered value), sorted by key.
    entries: Vec<(String, Bytes)>,
    json: Bytes,
    env: Bytes,
    shell: Bytes,
    /// Creation time of the current version (KV v2 only).
    pub mtime: Option<SystemTime>,
    /// KV v2 version whose current version is deleted or destroyed: it exists
    /// (LIST still names it) but has no data to show.
    pub deleted: bool,
    /// The KV v2 version number Vault answered with (none for KV v1).
    pub version: Option<u64>,
    /// A KV v2 metadata document (`.metadata.json`), not a version's data.
    pub metadata: bool,
    /// Set by the first open served from this answer (the read audit's
    /// "vault" versus "cache").
    opened: std::sync::atomic::AtomicBool,
}

/// One file of a secret's directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SecretFile {
    Key(String),
    Json,
    Env,
    Shell,
}

impl Secret {
    /// Render a KV data object. Takes the map by value and wipes every string
    /// in it afterwards, so the parsed copy does not linger in freed memory.
    pub fn from_data(mut data: Map<String, Value>, mtime: Option<SystemTime>) -> Secret {
        let mut entries: Vec<(String, Bytes)> = data
            .iter()
            .map(|(k, v)| (k.clone(), render_value(v)))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut json = SecretBuf::default();
        let _ = serde_json::to_writer(&mut json, &data);
        json.extend(b"\n");
        let json = json.0;
        let env = render_env(&entries);
        let shell = render_shell(&entries);
        for v in data.values_mut() {
            wipe(v);
        }
        Secret {
            entries,
            json,
            env,
            shell,
            mtime,
            ..Secret::default()
        }
    }

    /// A holder of one rendered document, shown as its `.json` view (KV v2
    /// metadata): no keys, so no other file.
    pub fn document(json: Bytes, mtime: Option<SystemTime>) -> Secret {
        Secret {
            json,
            mtime,
            metadata: true,
            ..Secret::default()
        }
    }

    pub fn deleted(mtime: Option<SystemTime>) -> Secret {
        Secret {
            mtime,
            deleted: true,
            ..Secret::default()
        }
    }

    /// With the KV v2 version number Vault answered with.
    pub fn with_version(mut self, version: Option<u64>) -> Secret {
        self.version = version;
        self
    }

    /// Whether this is the first open served from this answer: it then
    /// came from Vault for it; later opens are served from the cache.
    pub fn first_open(&self) -> bool {
        !self.opened.swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    pub fn has_key(&self, key: &str) -> bool {
        self.value(key).is_some()
    }

    pub fn value(&self, key: &str) -> Option<&Bytes> {
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// The files this secret shows, in directory order: keys, then the
    /// views. A deleted secret shows none. A key named like a view does not
    /// replace it: its file name is another (`naming::encode`).
    pub fn files(&self) -> Vec<SecretFile> {
        if self.deleted {
            return Vec::new();
        }
        let mut files: Vec<SecretFile> = self.keys().map(|k| SecretFile::Key(k.into())).collect();
        files.extend([SecretFile::Json, SecretFile::Env, SecretFile::Shell]);
        files
    }

    /// The content of one file, `None` when the secret has no such file.
    pub fn content(&self, file: &SecretFile) -> Option<&Bytes> {
        if self.deleted {
            return None;
        }
        match file {
            SecretFile::Key(k) => self.value(k),
            SecretFile::Json => Some(&self.json),
            SecretFile::Env => Some(&self.env),
            SecretFile::Shell => Some(&self.shell),
        }
    }

    /// Bytes of memory held, for the cache's budget.
    pub fn mem_size(&self) -> usize {
        let entries: usize = self
            .entries
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum();
        entries + self.json.len() + self.env.len() + self.shell.len() + 96
    }
}

/// Strings as their exact bytes; everything else as compact JSON.
fn render_value(v: &Value) -> Bytes {
    match v {
        Value::String(s) => Zeroizing::new(s.as_bytes().to_vec()),
        other => {
            let mut b = SecretBuf::default();
            let _ = serde_json::to_writer(&mut b, other);
            b.0
        }
    }
}

impl std::fmt::Debug for Secret {
    /// Names and sizes only: a stray `{:?}` must not log a value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field(
                "keys",
                &self
                    .entries
                    .iter()
                    .map(|(k, v)| format!("{k:?} ({} bytes)", v.len()))
                    .collect::<Vec<_>>(),
            )
            .field("mtime", &self.mtime)
            .field("deleted", &self.deleted)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret(v: Value) -> Secret {
        match v {
            Value::Object(m) => Secret::from_data(m, None),
            _ => unreachable!(),
        }
    }

    #[test]
    fn renders_values() {
        let s = secret(json!({"s": "a\nb", "n": 42, "f": 1.5, "b": true, "z": null,
                              "o": {"x": [1, "y"]}, "e": ""}));
        let get = |k: &str| s.value(k).unwrap().as_slice().to_vec();
        assert_eq!(get("s"), b"a\nb");
        assert_eq!(get("n"), b"42");
        assert_eq!(get("f"), b"1.5");
        assert_eq!(get("b"), b"true");
        assert_eq!(get("z"), b"null");
        assert_eq!(get("o"), br#"{"x":[1,"y"]}"#);
        assert_eq!(get("e"), b"");
        let json: Value = serde_json::from_slice(s.content(&SecretFile::Json).unwrap()).unwrap();
        assert_eq!(json["o"]["x"][1], "y");
        assert_eq!(json["s"], "a\nb");
    }

    #[test]
    fn every_view_is_shown_whatever_the_keys() {
        let s = secret(json!({".json": "mine", ".env": "touch /tmp/x", ".sh": "x", "k": "v"}));
        let files = s.files();
        for view in [SecretFile::Json, SecretFile::Env, SecretFile::Shell] {
            assert!(files.contains(&view), "{view:?}");
        }
        assert!(files.contains(&SecretFile::Key(".env".into())));
        let env = s.content(&SecretFile::Env).unwrap();
        assert!(env.ends_with(b"\nk=v\n"), "{env:?}");
        assert_eq!(s.value(".env").unwrap().as_slice(), b"touch /tmp/x");
    }

    #[test]
    fn deleted_has_no_files() {
        let s = Secret::deleted(None);
        assert!(s.files().is_empty());
        assert!(s.content(&SecretFile::Json).is_none());
    }

    #[test]
    fn debug_shows_no_value() {
        let s = secret(json!({"password": "hunter2-DEBUG"}));
        let d = format!("{s:?}");
        assert!(d.contains("password") && !d.contains("hunter2"), "{d}");
    }
}
