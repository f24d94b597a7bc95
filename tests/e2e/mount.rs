//! The tree, names, values and views, modes, errnos and permissions, against
//! a real OpenBao and a real FUSE mount.

use std::os::unix::fs::MetadataExt;
use std::sync::OnceLock;
use std::time::UNIX_EPOCH;

use crate::harness::*;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
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
        [".env", ".json", ".sh", "password", "user"]
    );
    assert_eq!(read(m.p("kv1/legacy/creds/token")), "v1-value");
    assert_eq!(read(m.p("team/kv/svc/k")), "nested-mount");

    let f = std::fs::metadata(m.p("secret/app/db/password")).unwrap();
    assert_eq!(f.mode() & 0o7777, 0o400);
    assert_eq!(f.len(), 6);
    // SAFETY: getuid cannot fail.
    assert_eq!(f.uid(), nix::unistd::getuid().as_raw());
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
    assert_eq!(
        names(m.p("secret/app")),
        [".env", ".json", ".sh", "db", "region"]
    );
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

#[test]
fn awkward_names_round_trip() {
    let b = bao();
    let data = json!({
        "a/b": "slash", ".": "dot", "..": "dotdot", "%": "percent", "ünï ☃": "unicode",
        "with space": "space", "%2F": "literal-escape", "tab\tkey": "tab"
    });
    b.put("secret", "odd names/ünï/100%", data.clone());
    let m = Mount::new(b, ROOT_TOKEN);
    let dir = m.p("secret/odd names/ünï/100%25");
    let mut want: Vec<String> = [
        "a%2Fb",
        "%2E",
        "%2E%2E",
        "%25",
        "ünï ☃",
        "with space",
        "%252F",
        "tab\tkey",
        ".env",
        ".json",
        ".sh",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    want.sort();
    assert_eq!(names(&dir), want);
    for (file, value) in [
        ("a%2Fb", "slash"),
        ("%2E", "dot"),
        ("%2E%2E", "dotdot"),
        ("%25", "percent"),
        ("ünï ☃", "unicode"),
        ("with space", "space"),
        ("%252F", "literal-escape"),
        ("tab\tkey", "tab"),
    ] {
        assert_eq!(read(dir.join(file)), value, "{file}");
    }
    // Names no Vault name encodes to do not exist.
    assert!(!dir.join("%41").exists());
    assert!(!m.p("secret/odd names/ünï/100%").exists());
}

#[test]
fn non_string_values_are_compact_json() {
    let b = bao();
    b.put(
        "secret",
        "types",
        json!({"n": 42, "f": 1.5, "t": true, "z": null, "o": {"a": [1, "x", {"b": null}]}, "arr": [], "e": ""}),
    );
    let m = Mount::new(b, ROOT_TOKEN);
    let d = m.p("secret/types");
    assert_eq!(read(d.join("n")), "42");
    assert_eq!(read(d.join("f")), "1.5");
    assert_eq!(read(d.join("t")), "true");
    assert_eq!(read(d.join("z")), "null");
    assert_eq!(read(d.join("o")), r#"{"a":[1,"x",{"b":null}]}"#);
    assert_eq!(read(d.join("arr")), "[]");
    assert_eq!(read(d.join("e")), "");
    assert_eq!(std::fs::metadata(d.join("e")).unwrap().len(), 0);
    let j: serde_json::Value = serde_json::from_str(&read(d.join(".json"))).unwrap();
    assert_eq!(j["o"]["a"][2], json!({"b": null}));
    assert_eq!(j["n"], 42);
}

#[test]
fn one_mib_value_exact_bytes_and_deep_paths() {
    let b = bao();
    // Not valid UTF-8-unfriendly: every byte value JSON can carry, plus newlines.
    let big: String = (0..(1 << 20))
        .map(|i| char::from(b'!' + (i % 90) as u8))
        .collect();
    b.put("secret", "big", json!({ "blob": big }));
    let deep = "l1/l2/l3/l4/l5/l6/l7/l8/l9/leaf";
    b.put("secret", deep, json!({"k": "deep"}));
    let m = Mount::new(b, ROOT_TOKEN);
    let got = std::fs::read(m.p("secret/big/blob")).unwrap();
    assert_eq!(got.len(), 1 << 20);
    assert!(got == big.as_bytes());
    assert_eq!(
        std::fs::metadata(m.p("secret/big/blob")).unwrap().len(),
        1 << 20
    );
    assert_eq!(read(m.p(&format!("secret/{deep}/k"))), "deep");
    assert_eq!(names(m.p("secret/l1/l2/l3")), ["l4"]);
}

#[test]
fn every_write_fails_with_erofs() {
    let m = Mount::new(bao(), ROOT_TOKEN);
    let dir = m.p("secret/app/db");
    let file = dir.join("password");
    let erofs = libc::EROFS;
    let opts = |w: bool, a: bool, t: bool, c: bool| {
        let mut o = std::fs::OpenOptions::new();
        o.read(true).write(w).append(a).truncate(t).create(c);
        o
    };
    assert_eq!(
        errno_of(std::fs::write(dir.join("new"), "x")),
        erofs,
        "create"
    );
    assert_eq!(
        errno_of(opts(true, false, false, false).open(&file)),
        erofs,
        "open for write"
    );
    assert_eq!(
        errno_of(opts(false, true, false, false).open(&file)),
        erofs,
        "append"
    );
    assert_eq!(
        errno_of(opts(true, false, true, false).open(&file)),
        erofs,
        "truncate"
    );
    assert_eq!(errno_of(std::fs::create_dir(dir.join("d"))), erofs, "mkdir");
    assert_eq!(errno_of(std::fs::remove_file(&file)), erofs, "unlink");
    assert_eq!(
        errno_of(std::fs::remove_dir(m.p("secret/l1"))),
        erofs,
        "rmdir"
    );
    assert_eq!(
        errno_of(std::fs::rename(&file, dir.join("x"))),
        erofs,
        "rename"
    );
    assert_eq!(
        errno_of(std::os::unix::fs::symlink("x", dir.join("l"))),
        erofs,
        "symlink"
    );
    assert_eq!(
        errno_of(std::fs::hard_link(&file, dir.join("h"))),
        erofs,
        "link"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        errno_of(std::fs::set_permissions(
            &file,
            std::fs::Permissions::from_mode(0o600)
        )),
        erofs,
        "chmod"
    );
    let nix_errno = |r: nix::Result<()>| errno_of(r.map_err(std::io::Error::from));
    assert_eq!(nix_errno(nix::unistd::truncate(&file, 0)), erofs, "truncate(2)");
    let root = (Some(Uid::from_raw(0)), Some(Gid::from_raw(0)));
    assert_eq!(nix_errno(nix::unistd::chown(&file, root.0, root.1)), erofs, "chown");
    assert_eq!(
        errno_of(
            rustix::fs::setxattr(&file, "user.x", b"v", rustix::fs::XattrFlags::empty())
                .map_err(std::io::Error::from)
        ),
        erofs,
        "setxattr"
    );
    assert_eq!(
        nix_errno(nix::unistd::mkfifo(&dir.join("fifo"), Mode::from_bits_truncate(0o600))),
        erofs,
        "mknod"
    );
    // Nothing changed in Vault.
    assert_eq!(read(&file), "s3cr3t");
}

#[test]
fn thirty_two_parallel_cold_readers() {
    let b = bao();
    for i in 0..32 {
        b.put(
            "secret",
            &format!("par/s{i}"),
            json!({"v": format!("value-{i}")}),
        );
    }
    let m = Mount::new(b, ROOT_TOKEN);
    let root = m.path().to_path_buf();
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let root = root.clone();
            std::thread::spawn(move || {
                // Each reader opens its own cold secret, and a shared one.
                let own = std::fs::read_to_string(root.join(format!("secret/par/s{i}/v"))).unwrap();
                let shared = std::fs::read_to_string(root.join("secret/par/s0/v")).unwrap();
                (i, own, shared)
            })
        })
        .collect();
    for t in threads {
        let (i, own, shared) = t.join().unwrap();
        assert_eq!(own, format!("value-{i}"));
        assert_eq!(shared, "value-0");
    }
}

#[test]
fn deleted_v2_secret_shows_no_files() {
    let b = bao();
    b.put("secret", "gone/x", json!({"k": "v"}));
    b.put("secret", "gone/y", json!({"k": "v"}));
    b.cli(&["kv", "delete", "-mount=secret", "gone/x"]);
    b.cli(&["kv", "metadata", "put", "-mount=secret", "gone/z"]);
    let m = Mount::new(b, ROOT_TOKEN);
    let listed = names(m.p("secret/gone"));
    assert!(
        listed.contains(&"x".to_string()),
        "still listed like `vault kv list`: {listed:?}"
    );
    assert!(names(m.p("secret/gone/x")).is_empty());
    assert!(!m.p("secret/gone/x/k").exists());
    assert_eq!(read(m.p("secret/gone/y/k")), "v");
}

#[test]
fn least_privilege_token_reads_by_name_but_cannot_list() {
    let b = bao();
    b.enable_kv("secrets", 2, None);
    b.put("secrets", "coder", json!({"GITHUB_TOKEN": "ghp_example"}));
    b.put("secrets", "team/app", json!({"API_KEY": "nested-by-name"}));
    // The policy from the Coder vault-token module's README: read only.
    let token = b.token_with_policy(
        "read-coder-secrets",
        "path \"secrets/data/*\" { capabilities = [\"read\"] }\n\
         path \"secrets/metadata/*\" { capabilities = [\"read\"] }\n",
        &[],
    );
    let m = Mount::with(b, MountOpts::new(&token).arg("--kv").arg("secrets"));
    assert_eq!(read(m.p("secrets/coder/GITHUB_TOKEN")), "ghp_example");
    assert_eq!(list_errno(m.p("secrets")), libc::EACCES);
    // A readable secret still lists its own keys.
    assert_eq!(
        names(m.p("secrets/coder")),
        [".env", ".json", ".sh", "GITHUB_TOKEN"]
    );
    assert_eq!(
        errno_of(std::fs::read(m.p("secrets/coder/NOKEY"))),
        libc::ENOENT
    );
    // Secrets inside folders are reachable by path without LIST.
    assert_eq!(read(m.p("secrets/team/app/API_KEY")), "nested-by-name");
    assert_eq!(list_errno(m.p("secrets/team")), libc::EACCES);
}

#[test]
fn overlong_names_are_left_out_and_logged_without_value() {
    let b = bao();
    let long_key = "k".repeat(300);
    b.put(
        "secret",
        "longnames",
        json!({ long_key.clone(): "LONGVALUE-7f3a", "short": "ok" }),
    );
    let m = Mount::new(b, ROOT_TOKEN);
    assert_eq!(
        names(m.p("secret/longnames")),
        [".env", ".json", ".sh", "short"]
    );
    let j: serde_json::Value = serde_json::from_str(&read(m.p("secret/longnames/.json"))).unwrap();
    assert_eq!(j[&long_key], "LONGVALUE-7f3a", ".json keeps every key");
    let log = m.log_text();
    assert!(log.contains("too long"), "{log}");
    assert!(!log.contains("LONGVALUE-7f3a"));
}

#[test]
fn a_key_named_like_a_view_is_shown_beside_it() {
    let b = bao();
    b.put("secret", "viewclash", json!({".json": "mine", "k": "v"}));
    let m = Mount::new(b, ROOT_TOKEN);
    assert_eq!(read(m.p("secret/viewclash/%2Ejson")), "mine");
    let json: serde_json::Value =
        serde_json::from_str(&read(m.p("secret/viewclash/.json"))).unwrap();
    assert_eq!(json, json!({".json": "mine", "k": "v"}));
    assert!(read(m.p("secret/viewclash/.env")).ends_with("\nk=v\n"));
    assert!(read(m.p("secret/viewclash/.sh")).ends_with("\nexport k='v'\n"));
}

#[test]
fn vault_errors_map_to_errno() {
    let b = bao();
    let m = Mount::new(b, ROOT_TOKEN);
    assert_eq!(
        errno_of(std::fs::metadata(m.p("secret/does-not-exist"))),
        libc::ENOENT
    );
    assert_eq!(
        errno_of(std::fs::metadata(m.p("nosuchmount"))),
        libc::ENOENT
    );
    assert_eq!(
        errno_of(std::fs::read(m.p("secret/app/db/nokey"))),
        libc::ENOENT
    );
    assert_eq!(list_errno(m.p("secret/app/db/password")), libc::ENOTDIR);
}

#[test]
fn unreadable_secret_in_listable_folder_is_eacces() {
    let b = bao();
    b.put("secret", "lp/open", json!({"k": "visible"}));
    b.put("secret", "lp/hidden", json!({"k": "invisible"}));
    let token = b.token_with_policy(
        "list-all-read-some",
        "path \"secret/metadata/*\" { capabilities = [\"list\"] }\n\
         path \"secret/data/lp/open\" { capabilities = [\"read\"] }\n",
        &[],
    );
    let m = Mount::with(b, MountOpts::new(&token).arg("--kv").arg("secret"));
    assert_eq!(names(m.p("secret/lp")), ["hidden", "open"]);
    assert_eq!(read(m.p("secret/lp/open/k")), "visible");
    assert_eq!(
        errno_of(std::fs::read(m.p("secret/lp/hidden/k"))),
        libc::EACCES
    );
    assert_eq!(
        errno_of(std::fs::read(m.p("secret/lp/open/nokey"))),
        libc::ENOENT
    );
}
