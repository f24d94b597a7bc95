//! A short, bounded fuzz pass (proptest) over everything that
//! takes input from Vault or the kernel: file-name encoding, response
//! parsing and rendering. The same properties run unbounded under cargo-fuzz
//! (fuzz/, see docs/reliability.md).

use std::sync::Arc;
use std::time::Duration;

use crate::cache::CachePolicy;
use crate::error::VaultError;
use crate::naming::{decode, encode, own_name, NAME_MAX, OWN_NAMES};
use crate::secret::{Secret, SecretFile};
use crate::store::memory::{MemoryStore, Op};
use crate::store::KvVersion;
use crate::tree::{is_path_segment, listing_children, Tree, ROOT_INO};
use crate::vault::{parse_list, parse_read, request_url};
use proptest::prelude::*;
use reqwest::{StatusCode, Url};
use serde_json::{Map, Value};

fn cfg() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Names as Vault may hold them: any unicode, with the interesting
/// characters over-represented.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[./%\\x00\\n\\t\\x1b a-z]{0,12}",
        Just(".".to_string()),
        Just("..".to_string()),
        prop::sample::select(&OWN_NAMES[..]).prop_map(str::to_string),
        "[%/]{80,120}",
        ".{250,260}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        name().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(name(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Responses shaped like KV answers, with any part replaced by junk.
fn kv_answer() -> impl Strategy<Value = Value> {
    (
        json_value(),
        json_value(),
        prop::collection::btree_map(name(), json_value(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(junk, meta, data, shaped)| {
            if !shaped {
                return junk;
            }
            let data: Map<String, Value> = data.into_iter().collect();
            serde_json::json!({"data": {"data": data, "metadata": meta, "keys": junk}})
        })
}

/// A reader of the three line forms .env writes: `K=bare`, `K='single'`
/// and `K="double"`, each value taken literally.
fn parse_env(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        if rest.starts_with('#') {
            rest = rest.split_once('\n').map_or("", |x| x.1);
            continue;
        }
        let (name, after) = rest.split_once('=').expect("NAME=");
        let (val, tail) = match after.chars().next() {
            Some(q @ ('\'' | '"')) => {
                let (v, t) = after[1..].split_once(q).expect("closing quote");
                (v, t.strip_prefix('\n').expect("newline after the quote"))
            }
            _ => after.split_once('\n').expect("newline"),
        };
        out.push((name.to_string(), val.to_string()));
        rest = tail;
    }
    out
}

proptest! {
    #![proptest_config(cfg())]

    #[test]
    fn names_encode_to_safe_file_names_and_back(n in name()) {
        if let Some(e) = encode(&n) {
            prop_assert!(!e.is_empty() && e.len() <= NAME_MAX);
            prop_assert!(!e.contains('/') && !e.contains('\0'));
            prop_assert!(e != "." && e != "..");
            // No Vault name is shown under one of vaultfs's own names.
            prop_assert!(own_name(e.as_bytes()).is_none(), "{}", e);
            prop_assert_eq!(decode(e.as_bytes()), Some(n));
        } else {
            prop_assert!(n.is_empty() || n.len() > NAME_MAX / 3);
        }
    }

    #[test]
    fn any_file_name_decodes_to_nothing_or_its_one_preimage(b in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Some(n) = decode(&b) {
            prop_assert_eq!(encode(&n).map(String::into_bytes), Some(b));
        }
    }

    #[test]
    fn any_bytes_as_a_response_never_panic(b in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(v) = serde_json::from_slice::<Value>(&b) {
            let _ = parse_list(&v);
            let _ = parse_read(KvVersion::V1, StatusCode::OK, v.clone());
            let _ = parse_read(KvVersion::V2, StatusCode::OK, v);
        }
    }

    #[test]
    fn any_json_response_parses_or_fails_cleanly(v in kv_answer(), status in prop::sample::select(vec![200u16, 204, 404])) {
        let status = StatusCode::from_u16(status).unwrap();
        if let Ok(keys) = parse_list(&v) {
            for c in listing_children(&keys) {
                prop_assert!(is_path_segment(&c));
            }
        }
        for version in [KvVersion::V1, KvVersion::V2] {
            if let Ok(s) = parse_read(version, status, v.clone()) {
                for f in s.files() {
                    prop_assert!(s.content(&f).is_some());
                }
            }
        }
    }

    #[test]
    fn rendered_views_are_faithful(data in prop::collection::btree_map(name(), json_value(), 0..8)) {
        let data: Map<String, Value> = data.into_iter().collect();
        let s = Secret::from_data(data.clone(), None);
        // .json is the data, exactly: valid JSON, the same keys, and the
        // same text serde writes (compared as text: parsing floats back
        // without serde_json's float_roundtrip is lossy).
        let json = s.content(&SecretFile::Json).unwrap();
        let j: Value = serde_json::from_slice(json).unwrap();
        prop_assert_eq!(j.as_object().unwrap().len(), data.len());
        let mut want = serde_json::to_vec(&Value::Object(data.clone())).unwrap();
        want.push(b'\n');
        prop_assert_eq!(json.as_slice(), &want[..]);
        // Each key file holds the string itself, or compact JSON.
        for (k, v) in &data {
            let want = match v {
                Value::String(x) => x.as_bytes().to_vec(),
                other => serde_json::to_vec(other).unwrap(),
            };
            prop_assert_eq!(s.value(k).unwrap().as_slice(), &want[..]);
        }
        // .env reads back, via sh quoting rules, to the values it kept.
        let env = String::from_utf8(s.content(&SecretFile::Env).unwrap().to_vec()).unwrap();
        for (k, v) in parse_env(&env) {
            let want = String::from_utf8(s.value(&k).unwrap().to_vec()).unwrap();
            prop_assert_eq!(v, want);
        }
    }
}

/// File names a user (or another user, with `--allow-other`) could pass:
/// every escaped form of `.`, `..`, `/`, `?`, `#` and NUL, and anything.
fn file_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::sample::select(vec![
            "%2E%2E",
            "%2E",
            "%2e%2e",
            ".%2E",
            "%2E.",
            "%252E%252E",
            "%2F",
            "%2E%2E%2F%2E%2E",
            "a%2F..%2F..",
            "%00",
            "..%00",
            "%3F",
            "%23",
            "?",
            "#",
            "..",
            ".",
            "%25",
            "auth",
            "token",
            "lookup-self",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        "[.%2EeFf0]{1,8}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 1..12),
    ]
}

proptest! {
    #![proptest_config(cfg())]

    /// Whatever names a walk goes through, every path the tree asks the
    /// store for is made of real segments, and the URL built from it is
    /// exactly that path inside `secret/`.
    #[test]
    fn lookups_never_ask_outside_their_mount(walk in prop::collection::vec(file_name(), 1..6)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // The least-privilege policy: LIST and SCAN refused, so every
        // unknown name is taken for a folder and asked for.
        let store = Arc::new(MemoryStore::new());
        store
            .kv2("secret")
            .fail_below(Op::List, "secret", "", VaultError::Forbidden)
            .fail_below(Op::Scan, "secret", "", VaultError::Forbidden);
        let policy = CachePolicy {
            ttl: Duration::from_secs(60),
            stale_if_error: Duration::ZERO,
            max_entries: 1000,
            max_bytes: 1 << 20,
        };
        let tree = Arc::new(Tree::new(store.clone(), policy));
        rt.block_on(async {
            let mut ino = tree.lookup(ROOT_INO, b"secret").await.unwrap().ino;
            for name in &walk {
                match tree.lookup(ino, name).await {
                    Ok(e) => ino = e.ino,
                    Err(_) => break,
                }
            }
        });
        let base = Url::parse("http://127.0.0.1:8200/").unwrap();
        for call in store.calls().iter().filter(|c| c.op != Op::Mounts) {
            // As the HTTP client would request it.
            let p = &format!("{}/data/{}", call.mount, call.path);
            let inner = p.strip_prefix("secret/data/").unwrap();
            prop_assert!(inner.is_empty() || inner.split('/').all(is_path_segment), "{:?}", p);
            let u = request_url(&base, p);
            prop_assert!(u.is_ok(), "{:?}: {:?}", p, u);
            prop_assert!(u.unwrap().path().starts_with("/v1/secret/data/"));
        }
    }
}
