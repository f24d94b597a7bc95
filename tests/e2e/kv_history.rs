//! KV v2 history on a real OpenBao and a real mount: `.versions/<n>/` and
//! `.metadata.json` (docs/semantics.md, "History").

use crate::harness::*;
use serde_json::{json, Value};

fn seed(b: &Bao, path: &str) {
    for (i, pw) in ["one", "two", "three", "four"].iter().enumerate() {
        b.put("secret", path, json!({"password": pw, "n": i + 1}));
    }
    b.cli(&["kv", "delete", "-mount=secret", "-versions=2", path]);
    b.cli(&["kv", "destroy", "-mount=secret", "-versions=1", path]);
    b.cli(&[
        "kv",
        "metadata",
        "put",
        "-mount=secret",
        "-custom-metadata=owner=team-a",
        "-custom-metadata=rotated-by=ops",
        path,
    ]);
}

#[test]
fn versions_and_metadata_are_readable_and_exact() {
    let b = Bao::shared();
    seed(b, "hist/db");
    let m = Mount::new(b, ROOT_TOKEN);
    let db = m.p("secret/hist/db");
    // Hidden: a walk does not descend into history.
    assert_eq!(names(&db), [".env", ".json", ".sh", "n", "password"]);
    assert_eq!(names(db.join(".versions")), ["3", "4"]);
    assert_eq!(read(db.join(".versions/3/password")), "three");
    assert_eq!(read(db.join(".versions/4/password")), "four");
    assert_eq!(read(db.join(".versions/3/n")), "3");
    assert_eq!(
        names(db.join(".versions/3")),
        [".env", ".json", ".sh", "n", "password"]
    );
    assert_eq!(
        read(db.join(".versions/3/.json")),
        "{\"n\":3,\"password\":\"three\"}\n"
    );
    assert_eq!(read(db.join(".versions/3/.env")), "n=3\npassword=three\n");
    // Deleted (2), destroyed (1), never written (9), numbers no version
    // can have (Vault's versions are signed 64-bit) and non-canonical names.
    for gone in [
        "1",
        "2",
        "9",
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551615",
        "03",
        "0",
        "+3",
        "3.0",
    ] {
        let e = errno_of(std::fs::metadata(db.join(".versions").join(gone)));
        assert_eq!(e, libc::ENOENT, "{gone}");
    }

    let text = read(db.join(".metadata.json"));
    let meta: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(meta["custom_metadata"]["owner"], "team-a");
    assert_eq!(meta["current_version"], 4);
    assert_eq!(meta["oldest_version"], 0);
    assert_eq!(meta["versions"]["1"]["destroyed"], true);
    assert_ne!(meta["versions"]["2"]["deletion_time"], "");
    for k in [
        "max_versions",
        "cas_required",
        "delete_version_after",
        "created_time",
    ] {
        assert!(meta.get(k).is_some(), "{k}: {text}");
    }
    // Keys sorted, at every level, as written.
    let top: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  \"")?.split('"').next())
        .collect();
    let mut sorted = top.clone();
    sorted.sort();
    assert_eq!(top, sorted, "{text}");
    assert_eq!(
        std::fs::metadata(db.join(".metadata.json")).unwrap().len(),
        text.len() as u64
    );
}

/// A token that may read data but not metadata reads a version it knows
/// the number of; listing versions and the metadata are refused.
#[test]
fn a_data_only_token_reads_a_version_by_path() {
    let b = Bao::shared();
    seed(b, "hist/ro");
    let token = b.token_with_policy(
        "history-data-only",
        r#"path "secret/data/*" { capabilities = ["read"] }"#,
        &[],
    );
    let m = Mount::new(b, &token);
    let ro = m.p("secret/hist/ro");
    assert_eq!(read(ro.join(".versions/3/password")), "three");
    assert_eq!(read(ro.join("password")), "four");
    assert_eq!(list_errno(ro.join(".versions")), libc::EACCES);
    assert_eq!(
        errno_of(std::fs::read(ro.join(".metadata.json"))),
        libc::EACCES
    );
    assert_eq!(
        errno_of(std::fs::metadata(ro.join(".versions/2"))),
        libc::ENOENT
    );
}

#[test]
fn kv_v1_has_no_history_and_keys_named_like_it_are_shown_beside_it() {
    let b = Bao::shared();
    b.enable_kv("hist-v1", 1, None);
    b.cli(&["kv", "put", "-mount=hist-v1", "s", "k=v"]);
    b.put(
        "secret",
        "hist/clash",
        json!({".versions": "a key", ".metadata.json": "another key"}),
    );
    let m = Mount::new(b, ROOT_TOKEN);
    assert_eq!(read(m.p("hist-v1/s/k")), "v");
    for name in [".versions", ".metadata.json"] {
        let e = errno_of(std::fs::metadata(m.p("hist-v1/s").join(name)));
        assert_eq!(e, libc::ENOENT, "{name}");
    }
    // Keys named like the history are shown as `%2E…`; the history keeps
    // its names.
    assert_eq!(read(m.p("secret/hist/clash/%2Eversions")), "a key");
    assert_eq!(
        read(m.p("secret/hist/clash/%2Emetadata.json")),
        "another key"
    );
    assert_eq!(names(m.p("secret/hist/clash/.versions")), ["1"]);
    let meta: Value = serde_json::from_str(&read(m.p("secret/hist/clash/.metadata.json"))).unwrap();
    assert_eq!(meta["current_version"], 1);
}
