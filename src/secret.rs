//! A secret as the filesystem shows it: one file per key plus the `.json`
//! and `.env` views, rendered once when the secret is fetched and wiped from
//! memory when the last reference goes away.

use std::time::SystemTime;

use serde_json::{Map, Value};
use zeroize::{Zeroize, Zeroizing};

/// Name of the view holding the whole secret as one JSON object.
pub const JSON_VIEW: &str = ".json";
/// Name of the view holding `KEY='value'` lines for `set -a; . .env`.
pub const ENV_VIEW: &str = ".env";

pub type Bytes = Zeroizing<Vec<u8>>;

#[derive(Default)]
pub struct Secret {
    /// (key, rendered value), sorted by key.
    entries: Vec<(String, Bytes)>,
    json: Bytes,
    env: Bytes,
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
        for v in data.values_mut() {
            wipe(v);
        }
        Secret {
            entries,
            json,
            env,
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

    /// The files this secret shows, in directory order: keys, then the views.
    /// A deleted secret shows none.
    pub fn files(&self) -> Vec<SecretFile> {
        if self.deleted {
            return Vec::new();
        }
        let mut files: Vec<SecretFile> = self.keys().map(|k| SecretFile::Key(k.into())).collect();
        // A key with the view's name wins over the view.
        for (name, view) in [(JSON_VIEW, SecretFile::Json), (ENV_VIEW, SecretFile::Env)] {
            if !self.has_key(name) {
                files.push(view);
            }
        }
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
        }
    }

    /// Bytes of memory held, for the cache's budget.
    pub fn mem_size(&self) -> usize {
        let entries: usize = self
            .entries
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum();
        entries + self.json.len() + self.env.len() + 96
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

fn is_shell_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// How one value is written in `.env` so that every common reader gets its
/// exact bytes: POSIX shells (`set -a; . .env`), python-dotenv and Node's
/// `dotenv` (docs/semantics.md has the table, tests/dotenv.rs runs them).
#[derive(Debug, PartialEq, Eq)]
enum EnvQuote {
    /// `K=v`: also what `docker run --env-file` reads literally.
    Bare,
    /// `K='v'`: literal everywhere but for python-dotenv's `\\`, `\'` and
    /// `${…}`, and a backslash just before the closing quote (both dotenv
    /// readers take it for an escaped quote).
    Single,
    /// `K="v"`: for values with `'`; no reader agrees on `$`, backquote or
    /// backslash inside.
    Double,
    /// No form reads back the same everywhere.
    None,
}

fn env_quote(v: &[u8]) -> EnvQuote {
    let has = |n: &[u8]| v.windows(n.len()).any(|w| w == n);
    // NUL: no shell variable holds it. CR: Node turns CR LF into LF before
    // parsing, and python-dotenv drops it. `${…}`: python-dotenv expands
    // it in any quotes.
    let interpolated = v
        .windows(2)
        .position(|w| w == b"${")
        .is_some_and(|i| v[i..].contains(&b'}'));
    if v.contains(&0) || v.contains(&b'\r') || interpolated {
        return EnvQuote::None;
    }
    let bare = |b: &u8| b.is_ascii_alphanumeric() || b"_-./:@%+,=".contains(b);
    if v.iter().all(bare) {
        EnvQuote::Bare
    } else if !v.contains(&b'\'') && !has(b"\\\\") && v.last() != Some(&b'\\') {
        EnvQuote::Single
    } else if !v.iter().any(|b| b"\"$`\\".contains(b)) {
        EnvQuote::Double
    } else {
        EnvQuote::None
    }
}

/// `KEY=value` lines, each value quoted as [`env_quote`] chooses. Keys that
/// are not shell names, and values no quoting serves every reader, are left
/// out and named in a comment, JSON-quoted so a hostile key cannot break out
/// of the comment line.
fn render_env(entries: &[(String, Bytes)]) -> Bytes {
    let mut skipped = Vec::new();
    let mut lines = Vec::new();
    for (k, v) in entries {
        match env_quote(v) {
            q if q != EnvQuote::None && is_shell_name(k) => lines.push((k, v, q)),
            _ => skipped.push(serde_json::to_string(k).unwrap_or_default()),
        }
    }
    let mut out = SecretBuf::default();
    if !skipped.is_empty() {
        out.extend(
            format!(
                "# vaultfs: left out (not a variable name, or a value that .env readers cannot agree on; see .json): {}\n",
                skipped.join(", ")
            )
            .as_bytes(),
        );
    }
    for (k, v, q) in lines {
        let quote: &[u8] = match q {
            EnvQuote::Single => b"'",
            EnvQuote::Double => b"\"",
            _ => b"",
        };
        out.extend(k.as_bytes());
        out.extend(b"=");
        out.extend(quote);
        out.extend(v);
        out.extend(quote);
        out.extend(b"\n");
    }
    out.0
}

/// A growing buffer for secret bytes. `Vec` frees its old block unwiped
/// when it grows; this moves the bytes into a fresh zeroizing allocation
/// instead, so the old block is wiped on drop. Used for everything rendered
/// from a value and for response bodies.
#[derive(Default)]
pub struct SecretBuf(pub Bytes);

impl SecretBuf {
    pub fn with_capacity(n: usize) -> SecretBuf {
        SecretBuf(Zeroizing::new(Vec::with_capacity(n)))
    }

    pub fn extend(&mut self, data: &[u8]) {
        let need = self.0.len() + data.len();
        if need > self.0.capacity() {
            let mut grown = Vec::with_capacity(need.max(self.0.capacity() * 2).max(64));
            grown.extend_from_slice(&self.0);
            // The old buffer is dropped here, wiped.
            self.0 = Zeroizing::new(grown);
        }
        self.0.extend_from_slice(data);
    }
}

impl std::io::Write for SecretBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.extend(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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

/// Overwrite every string inside a parsed JSON value.
pub fn wipe(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe),
        Value::Object(o) => o.values_mut().for_each(wipe),
        _ => {}
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
    fn env_quotes_and_skips() {
        let s = secret(json!({
            "A": "$HOME `x`\nline2", "Q": "it's \"so\"\n", "bad-name": "x", "_ok1": 7,
            "1x": "y", "N": "a\u{0}b", "MIX": "it's $HOME", "P": "a.b:c/d@e", "E": "",
        }));
        let env = String::from_utf8(s.content(&SecretFile::Env).unwrap().to_vec()).unwrap();
        assert!(env.starts_with("# vaultfs: left out"), "{env}");
        let comment = env.lines().next().unwrap();
        for gone in ["\"bad-name\"", "\"1x\"", "\"N\"", "\"MIX\"", "\"Q\""] {
            assert!(comment.contains(gone), "{gone}: {env}");
        }
        assert!(env.contains("\nA='$HOME `x`\nline2'\n"), "{env}");
        assert!(env.contains("\n_ok1=7\n"), "{env}");
        assert!(env.contains("\nP=a.b:c/d@e\n"), "{env}");
        assert!(env.contains("\nE=\n"), "{env}");
    }

    #[test]
    fn env_quote_per_value() {
        use EnvQuote::*;
        for (v, want) in [
            ("plain-1.2:3/x@y%z+,=", Bare),
            ("", Bare),
            ("with space", Single),
            ("$HOME and `cmd` \"q\" # not a comment", Single),
            ("trailing\\", None),
            ("a\\b", Single),
            ("multi\nline", Single),
            ("ünï ☃", Single),
            ("it's", Double),
            ("it's\nmulti", Double),
            ("it's $HOME", None),
            ("it's \"q\"", None),
            ("it's a\\b", None),
            ("two\\\\slashes", None),
            ("${PATH}", None),
            ("a${X}b", None),
            ("cr\r\nlf", None),
            ("nul\0", None),
        ] {
            assert_eq!(env_quote(v.as_bytes()), want, "{v:?}");
        }
        // `${` alone is no interpolation.
        assert_eq!(env_quote(b"a${b"), Single);
    }

    #[test]
    fn hostile_key_cannot_escape_comment() {
        let s = secret(json!({"x\nEVIL=1": "v"}));
        let env = String::from_utf8(s.content(&SecretFile::Env).unwrap().to_vec()).unwrap();
        assert_eq!(env.lines().count(), 1, "{env}");
    }

    #[test]
    fn key_named_like_view_wins() {
        let s = secret(json!({".json": "mine", "k": "v"}));
        let files = s.files();
        assert!(files.contains(&SecretFile::Key(".json".into())));
        assert!(!files.contains(&SecretFile::Json));
        assert!(files.contains(&SecretFile::Env));
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

    #[test]
    fn secret_buf_grows_without_losing_bytes() {
        let mut b = SecretBuf::with_capacity(1);
        let mut want = Vec::new();
        for i in 0..2000u32 {
            let chunk = i.to_le_bytes();
            b.extend(&chunk);
            want.extend_from_slice(&chunk);
        }
        assert_eq!(b.0.as_slice(), &want[..]);
    }

    #[test]
    fn wipe_clears_strings() {
        let mut v = json!({"a": ["secret", {"b": "secret"}]});
        wipe(&mut v);
        assert_eq!(v, json!({"a": ["", {"b": ""}]}));
    }
}
