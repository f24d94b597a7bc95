//! Directory listings are opened and kept by the kernel without asking the
//! daemon (`FUSE_NO_OPENDIR_SUPPORT`, `FOPEN_CACHE_DIR`); a changed listing
//! shows through the directory's mtime, and the kernel keeps it no longer
//! than the answers it came from (docs/performance.md, "Directories").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

fn sleep_until(t: Instant) {
    std::thread::sleep(t.saturating_duration_since(Instant::now()));
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
    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(names(&dir), ["keep", "new"]);
    assert_eq!(read(dir.join("new/k")), "3");
}

/// A listing the kernel first reads late in the life of the daemon's cached
/// answer (here fetched in the background when the parent was listed, and
/// looked up anew 1.4 s into a 2 s TTL) is kept only until that answer
/// expires, not a full TTL from the lookup: a secret added just after the
/// fetch shows once the TTL has passed since it was added.
#[test]
fn late_listing_expires_with_the_cached_answer() {
    let b = bao();
    b.put("secret", "dirs/late/f/one", json!({"k": "1"}));
    let m = Mount::with(b, MountOpts::new(ROOT_TOKEN).arg("--ttl").arg("2s"));
    let listed = Instant::now();
    // Lists `f`, and fetches f's own listing in the background.
    assert_eq!(names(m.p("secret/dirs/late")), ["f"]);
    std::thread::sleep(Duration::from_millis(300));
    b.put("secret", "dirs/late/f/two", json!({"k": "2"}));
    let added = Instant::now();
    sleep_until(listed + Duration::from_millis(1400));
    // Make the kernel forget `f`, so its next lookup is a late one.
    std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
    let f = m.p("secret/dirs/late/f");
    assert_eq!(names(&f), ["one"], "still the cached answer");
    sleep_until(added + Duration::from_millis(2400));
    assert_eq!(names(&f), ["one", "two"]);
}

/// A directory stream read in small pieces stays whole and unrepeated while
/// the listing changes under it (offsets name entries, not positions).
#[test]
fn listing_read_in_pieces_across_a_change_neither_repeats_nor_skips() {
    let b = bao();
    for i in 0..200 {
        b.put("secret", &format!("dirs/big/s{i:03}"), json!({"k": "v"}));
    }
    let m = Mount::with(b, MountOpts::new(ROOT_TOKEN).arg("--ttl").arg("1s"));
    let dir = m.p("secret/dirs/big");
    // The first stream of the mount: the kernel reads it from the daemon a
    // chunk per getdents. Read part of it, change the folder, let the TTL
    // pass so the daemon sees the change, then read the rest.
    let mut stream = std::fs::read_dir(&dir).unwrap();
    let mut seen: Vec<String> = (&mut stream)
        .take(20)
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    b.put("secret", "dirs/big/added", json!({"k": "v"}));
    std::thread::sleep(Duration::from_millis(1300));
    seen.extend(stream.map(|e| e.unwrap().file_name().into_string().unwrap()));
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "an entry came twice");
    for i in 0..200 {
        assert!(seen.contains(&format!("s{i:03}")), "s{i:03} skipped");
    }
    // And the next listing is the new one, whole.
    assert_eq!(names(&dir).len(), 201);
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
