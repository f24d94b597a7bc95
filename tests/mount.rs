//! Issue #2: the tree, names, values and views, against a real OpenBao and a
//! real FUSE mount.

mod common;

use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

use common::*;
use serde_json::json;

/// Seed the shared server once per test binary.
fn bao() -> &'static Bao {
    static SEEDED: OnceLock<()> = OnceLock::new();
    let b = Bao::shared();
    SEEDED.get_or_init(|| {
        b.put(
            "secret",
            "app/db",
            json!({"password": "s3cr3t", "user": "admin"}),
        );
        b.put(
            "secret",
            "app",
            json!({"region": "eu", "db": "shadowed-by-folder"}),
        );
        b.enable_kv("kv1", 1, None);
        b.cli(&["kv", "put", "-mount=kv1", "legacy/creds", "token=v1-value"]);
        b.enable_kv("team/kv", 2, None);
        b.put("team/kv", "svc", json!({"k": "nested-mount"}));
    });
    b
}

#[test]
fn layout_values_and_modes() {
    let b = bao();
    let m = Mount::new(b, ROOT_TOKEN);
    let root = names(m.path());
    for want in ["secret", "kv1", "team"] {
        assert!(root.contains(&want.to_string()), "{root:?}");
    }
    assert_eq!(read(m.p("secret/app/db/password")), "s3cr3t");
    assert_eq!(read(m.p("secret/app/db/user")), "admin");
    assert_eq!(
        names(m.p("secret/app/db")),
        [".env", ".json", "password", "user"]
    );
    assert_eq!(read(m.p("kv1/legacy/creds/token")), "v1-value");
    assert_eq!(read(m.p("team/kv/svc/k")), "nested-mount");

    let f = std::fs::metadata(m.p("secret/app/db/password")).unwrap();
    assert_eq!(f.mode() & 0o7777, 0o400);
    assert_eq!(f.len(), 6);
    // SAFETY: getuid cannot fail.
    assert_eq!(f.uid(), unsafe { libc::getuid() });
    let d = std::fs::metadata(m.p("secret/app")).unwrap();
    assert!(d.is_dir());
    assert_eq!(d.mode() & 0o7777, 0o500);

    // mtime is the current version's created_time.
    let meta: serde_json::Value = serde_json::from_str(&b.cli(&[
        "kv",
        "metadata",
        "get",
        "-format=json",
        "-mount=secret",
        "app/db",
    ]))
    .unwrap();
    let v = meta["data"]["current_version"].to_string();
    let created = meta["data"]["versions"][&v]["created_time"]
        .as_str()
        .unwrap();
    let created = humantime::parse_rfc3339_weak(created.trim_end_matches('Z')).unwrap();
    let secs = created.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    assert_eq!(f.mtime(), secs);
}

#[test]
fn secret_that_is_also_a_folder() {
    let m = Mount::new(bao(), ROOT_TOKEN);
    // `app` is a secret (region, db) and a folder (db/): one directory.
    assert_eq!(names(m.p("secret/app")), [".env", ".json", "db", "region"]);
    assert!(
        m.p("secret/app/db").is_dir(),
        "the child folder wins over the key"
    );
    assert_eq!(read(m.p("secret/app/region")), "eu");
    let j: serde_json::Value = serde_json::from_str(&read(m.p("secret/app/.json"))).unwrap();
    assert_eq!(j, json!({"region": "eu", "db": "shadowed-by-folder"}));
}

#[test]
fn kv_filter_shows_only_chosen_mounts() {
    let m = Mount::with(bao(), MountOpts::new(ROOT_TOKEN).arg("--kv").arg("team/kv"));
    assert_eq!(names(m.path()), ["team"]);
    assert_eq!(names(m.p("team")), ["kv"]);
    assert_eq!(read(m.p("team/kv/svc/k")), "nested-mount");
}
