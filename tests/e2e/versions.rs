//! One inode per content version (docs/performance.md): files are kept in
//! the kernel's page cache across opens, a changed value is a new inode, and
//! a handle held across a rotation keeps the version it opened.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::harness::*;
use serde_json::json;

fn bao() -> &'static Bao {
    Bao::shared()
}

fn read_all(f: &mut std::fs::File) -> String {
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    s
}

#[test]
fn held_handle_keeps_its_version_and_new_opens_get_the_new_one() {
    let b = bao();
    // Several pages each, of different lengths, so a stale size or a page
    // of the other version would show.
    let old = "o".repeat(9000);
    let new = "n".repeat(13000);
    b.put("secret", "ver/held", json!({"v": old}));
    let m = Mount::with(b, MountOpts::new(ROOT_TOKEN).arg("--ttl").arg("1s"));
    let f = m.p("secret/ver/held/v");
    assert_eq!(read(&f), old);
    let old_ino = std::fs::metadata(&f).unwrap().ino();

    // Held open, read partly: the rest comes later, after the rotation.
    let mut held = std::fs::File::open(&f).unwrap();
    let mut head = [0u8; 100];
    held.read_exact(&mut head).unwrap();
    assert_eq!(held.metadata().unwrap().ino(), old_ino);

    b.put("secret", "ver/held", json!({"v": new}));
    // Once the TTL has passed, the name shows the new version: new inode,
    // new size, whole value.
    wait_until("the new version", Duration::from_secs(10), || {
        std::fs::metadata(&f).unwrap().ino() != old_ino
    });
    let meta = std::fs::metadata(&f).unwrap();
    assert_eq!(meta.len(), new.len() as u64);
    assert_eq!(read(&f), new);
    let mut fresh = std::fs::File::open(&f).unwrap();
    assert_eq!(read_all(&mut fresh), new);

    // The held handle still sees its own version, whole, at its own size.
    let rest = read_all(&mut held);
    assert_eq!(
        format!("{}{rest}", std::str::from_utf8(&head).unwrap()),
        old
    );
    assert_eq!(held.metadata().unwrap().len(), old.len() as u64);
    assert_eq!(held.metadata().unwrap().ino(), old_ino);

    // A whole second read of the old handle (from its pages) is old too.
    use std::io::Seek;
    held.rewind().unwrap();
    assert_eq!(read_all(&mut held), old);
    // And the new one, read again, is still new.
    assert_eq!(read(&f), new);
}

/// Warm reads are served by the kernel's page cache: with the daemon
/// stopped, a file opened before can still be read whole. Under direct I/O
/// (or without the page cache kept across opens) the read would wait for
/// the stopped daemon.
#[test]
fn warm_reads_never_reach_the_daemon() {
    let b = bao();
    let value = "w".repeat(20000);
    b.put("secret", "ver/warm", json!({"v": value}));
    let m = Mount::new(b, ROOT_TOKEN);
    let f = m.p("secret/ver/warm/v");
    assert_eq!(read(&f), value); // fills the page cache
    let mut again = std::fs::File::open(&f).unwrap(); // kept: FOPEN_KEEP_CACHE

    let got = m.while_stopped(move || {
        let mut s = Vec::new();
        let r = again.read_to_end(&mut s).map(|_| s);
        r.map(|s| String::from_utf8(s).unwrap())
    });
    let got = got.expect("a warm read waited for the stopped daemon");
    assert_eq!(got.unwrap(), value);
}

/// The kernel forgets inodes under memory pressure (here: drop_caches);
/// the daemon then drops them too. Everything must still resolve and read
/// afterwards, including a directory handle held open across it.
#[test]
fn forgotten_inodes_come_back() {
    let b = bao();
    for i in 0..20 {
        b.put(
            "secret",
            &format!("ver/forget/s{i}"),
            json!({"v": format!("value-{i}")}),
        );
    }
    let m = Mount::new(b, ROOT_TOKEN);
    let root = m.p("secret/ver/forget");
    for i in 0..20 {
        assert_eq!(read(root.join(format!("s{i}/v"))), format!("value-{i}"));
    }
    let held_dir = std::fs::read_dir(&root).unwrap();
    for _ in 0..2 {
        std::fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        assert_eq!(names(&root).len(), 20);
        for i in 0..20 {
            assert_eq!(read(root.join(format!("s{i}/v"))), format!("value-{i}"));
            let md = std::fs::metadata(root.join(format!("s{i}/.json"))).unwrap();
            assert!(md.len() > 0);
        }
    }
    assert_eq!(held_dir.count(), 20);
    assert!(is_mounted(m.path()));
}

/// Files are opened without asking the daemon (`FUSE_NO_OPEN_SUPPORT`, reads
/// answered by inode): with the daemon stopped, a *new* open and read of a
/// warm file completes, from the kernel's entry, attribute and page caches.
/// With an open round trip it would wait for the stopped daemon.
#[test]
fn warm_open_never_reaches_the_daemon() {
    let b = bao();
    let value = "o".repeat(5000);
    b.put("secret", "ver/noopen", json!({"v": value, "w": "other"}));
    let m = Mount::new(b, ROOT_TOKEN);
    let f = m.p("secret/ver/noopen/v");
    // The first open of the mount teaches the kernel to stop asking; this
    // one fills the entry, attribute and page caches.
    assert_eq!(read(m.p("secret/ver/noopen/w")), "other");
    assert_eq!(read(&f), value);

    let got = m.while_stopped(move || {
        (0..3)
            .map(|_| std::fs::read(&f))
            .collect::<Result<Vec<_>, _>>()
    });
    let got = got.expect("a warm open waited for the stopped daemon");
    for v in got.unwrap() {
        assert_eq!(String::from_utf8(v).unwrap(), value);
    }
}
