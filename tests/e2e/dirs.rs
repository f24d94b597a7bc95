//! Directory listings are opened and kept by the kernel without asking the
//! daemon (`FUSE_NO_OPENDIR_SUPPORT`, `FOPEN_CACHE_DIR`); a changed listing
//! shows through the directory's mtime, and the kernel keeps it no longer
//! than the answers it came from (docs/performance.md, "Directories").

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;
use serde_json::json;

fn bao() -> &'static Bao {
    Bao::shared()
}

/// Every path below `root` (relative to it) with what a walker sees of it:
/// file sizes and contents, directory names.
fn walk(root: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if e.file_type().unwrap().is_dir() {
                todo.push(p);
                out.push((rel, "dir".into()));
            } else {
                let md = std::fs::metadata(&p).unwrap();
                out.push((rel, format!("{} {}", md.len(), read(&p))));
            }
        }
    }
    out.sort();
    out
}

/// A warm walk (`find`, `ls -lR`, `grep -r`) is served by the kernel alone:
/// with the daemon stopped it still lists every directory, stats every
/// entry and reads every file. With an opendir round trip per directory it
/// would wait for the stopped daemon.
#[test]
fn warm_walk_never_reaches_the_daemon() {
    let b = bao();
    for (i, s) in ["a", "b", "c/d", "c/e/f"].iter().enumerate() {
        b.put(
            "secret",
            &format!("dirs/warm/{s}"),
            json!({"k": format!("v{i}")}),
        );
    }
    let m = Mount::new(b, ROOT_TOKEN);
    let root = m.p("secret/dirs/warm");
    let cold = walk(&root);
    assert_eq!(cold.len(), 4 * 4 + 6, "{cold:?}"); // 4 files per secret + dirs

    let warm = m.while_stopped(move || walk(&root));
    assert_eq!(
        warm.expect("a warm walk waited for the stopped daemon"),
        cold
    );
}

/// The kernel's copy of a folder listing goes when the TTL has passed:
/// secrets added and removed in Vault show up in the next `ls`.
#[test]
fn folder_listing_shows_added_and_removed_secrets_after_ttl() {
    let b = bao();
    b.put("secret", "dirs/churn/keep", json!({"k": "1"}));
    b.put("secret", "dirs/churn/gone", json!({"k": "2"}));
    let m = Mount::with(b, MountOpts::new(ROOT_TOKEN).arg("--ttl").arg("1s"));
    let dir = m.p("secret/dirs/churn");
    assert_eq!(names(&dir), ["gone", "keep"]);
    assert_eq!(names(&dir), ["gone", "keep"]); // now from the kernel's copy
    b.cli(&[
        "kv",
        "metadata",
        "delete",
        "-mount=secret",
        "dirs/churn/gone",
    ]);
    b.put("secret", "dirs/churn/new", json!({"k": "3"}));
    // Once the TTL has passed, the changed listing has a new mtime, and
    // the kernel drops the copy it kept.
    wait_until("the new listing", Duration::from_secs(10), || {
        names(&dir) == ["keep", "new"]
    });
    assert_eq!(read(dir.join("new/k")), "3");
}

/// Folders read through one SCAN (the default on OpenBao) look exactly as
/// when every folder is LISTed (`--no-scan`): deep paths, a secret that is
/// also a folder, a folder holding only folders, awkward names.
#[test]
fn scan_and_list_show_the_same_tree() {
    let b = bao();
    for (i, s) in [
        "d1/d2/d3/d4/d5/leaf",
        "d1/d2/mid",
        "d1/d2",
        "d1/only/folders/here/x",
        "d1/sp ace/per%cent",
        "d1/d2/d3/other",
    ]
    .iter()
    .enumerate()
    {
        b.put(
            "secret",
            &format!("dirs/same/{s}"),
            json!({"k": format!("v{i}")}),
        );
    }
    let scan = Mount::new(b, ROOT_TOKEN);
    let list = Mount::with(b, MountOpts::new(ROOT_TOKEN).arg("--no-scan"));
    let via_scan = walk(&scan.p("secret/dirs/same"));
    let via_list = walk(&list.p("secret/dirs/same"));
    assert!(via_scan.len() > 20, "{via_scan:?}");
    assert_eq!(via_scan, via_list);
}
