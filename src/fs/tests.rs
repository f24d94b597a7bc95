//! The rules the kernel sees (docs/performance.md, "The kernel cache";
//! docs/semantics.md), checked on the core over the
//! memory store with a paused clock: no FUSE, no Vault, no sleeping. Time
//! moves only when a test says so, so every TTL is asserted exactly.

use std::sync::mpsc;

use serde_json::json;
use tokio::time::{advance, Instant};

use super::*;
use crate::cache::CachePolicy;
use crate::slots::Slots;
use crate::store::memory::{Fault, MemoryStore, Op};
use crate::tree::ROOT_INO;

const TTL: Duration = Duration::from_secs(2);
const DEADLINE: Duration = Duration::from_secs(10);
const MS: Duration = Duration::from_millis(1);

type Fs = VaultFs<MemoryStore>;

/// A KV v2 mount `secret` holding `secrets` (put in order: a path twice
/// makes two versions).
fn kv2(secrets: &[(&str, serde_json::Value)]) -> Arc<MemoryStore> {
    let store = MemoryStore::new();
    store.kv2("secret");
    for (path, data) in secrets {
        store.put("secret", path, data.clone());
    }
    Arc::new(store)
}

/// The filesystem as the daemon builds it (prefetch and SCAN on) over
/// `store`, with one TTL for its cache and the kernel.
fn mount(store: &Arc<MemoryStore>) -> Fs {
    let policy = CachePolicy {
        ttl: TTL,
        stale_if_error: Duration::ZERO,
        max_entries: 100_000,
        max_bytes: 1 << 26,
    };
    let tree = Tree::new(store.clone(), policy).with_prefetch(Some(Slots::new(8)));
    VaultFs::new(
        Arc::new(tree),
        FsOptions {
            uid: 1000,
            gid: 1001,
            file_mode: 0o400,
            dir_mode: 0o500,
            ttl: TTL,
            op_timeout: DEADLINE,
        },
    )
}

/// `path` looked up one name at a time from the root, each entry handed
/// to the kernel as a reply would: the last one's attributes and name TTL.
async fn walk(fs: &Fs, path: &str) -> Result<(Attr, Duration), FsError> {
    let mut seen = (fs.getattr(ROOT_INO).await?, TTL);
    for name in path.split('/') {
        let l = fs.lookup(seen.0.ino, name.as_bytes()).await?;
        seen = (l.attr.clone(), l.entry_ttl);
        l.handed_over();
    }
    Ok(seen)
}

async fn ino(fs: &Fs, path: &str) -> u64 {
    walk(fs, path).await.unwrap().0.ino
}

/// A kernel buffer with room for `room` entries.
struct Chunk {
    room: usize,
    got: Vec<(u64, String, u64, Kind, Option<Attr>)>,
}

impl DirReplier for Chunk {
    fn add(&mut self, e: DirEntry<'_>) -> bool {
        if self.got.len() == self.room {
            return true;
        }
        let DirEntry {
            cookie,
            name,
            ino,
            kind,
            attr,
        } = e;
        self.got.push((cookie, name.into(), ino, kind, attr));
        false
    }
}

/// One chunk of the stream of `dir` after `offset`.
async fn chunk(fs: &Fs, dir: u64, offset: u64, room: usize, plus: bool) -> Chunk {
    let mut c = Chunk {
        room,
        got: Vec::new(),
    };
    fs.readdir(dir, offset, plus, &mut c).await.unwrap();
    c
}

/// The names `ls` shows (a whole stream, `.` and `..` left out), sorted.
async fn ls(fs: &Fs, dir: u64) -> Vec<String> {
    let mut names: Vec<String> = chunk(fs, dir, 0, usize::MAX, false)
        .await
        .got
        .into_iter()
        .map(|e| e.1)
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    names
}

fn text(fs: &Fs, ino: u64) -> String {
    let data = fs.read(ino, 0, u32::MAX).unwrap();
    String::from_utf8(data.as_slice().to_vec()).unwrap()
}

/// Let the tasks a directory read started in the background run until
/// `done` (bounded: a prefetch that never lands fails the test).
async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{what} never happened");
}

/// A file's name and attributes are kept no longer than the cached answer
/// they came from, not a full TTL from the lookup: a name first looked up
/// late in that answer's life (`b`, 1.5 s into a 2 s TTL) is asked for
/// again when it expires, and then shows a change made just after the fetch.
#[tokio::test(start_paused = true)]
async fn a_late_lookup_of_a_file_expires_with_the_answer_it_came_from() {
    let store = kv2(&[("late", json!({"a": "a1", "b": "old"}))]);
    let fs = mount(&store);
    let (a, _) = walk(&fs, "secret/late/a").await.unwrap();
    assert_eq!(text(&fs, a.ino), "a1");
    store.put("secret", "late", json!({"a": "a1", "b": "new"}));
    advance(Duration::from_millis(1500)).await;
    let (b, entry_ttl) = walk(&fs, "secret/late/b").await.unwrap();
    assert_eq!(text(&fs, b.ino), "old", "still the cached answer");
    assert_eq!(entry_ttl, Duration::from_millis(500));
    assert_eq!(b.ttl, Duration::from_millis(500));
    advance(Duration::from_millis(500)).await;
    let (b, entry_ttl) = walk(&fs, "secret/late/b").await.unwrap();
    assert_eq!(text(&fs, b.ino), "new");
    assert_eq!((entry_ttl, b.ttl), (TTL, TTL));
}

/// Per kind: a file's name and attributes live as long as its answer (a
/// secret's keys and its views alike; the metadata view's as long as the
/// metadata; an old version's the full TTL, always); a directory's name
/// the full TTL, its attributes only as long as the listing the kernel may
/// hold. Modes, owners and link counts as configured.
#[tokio::test(start_paused = true)]
async fn entry_and_attribute_ttls_per_kind() {
    let store = kv2(&[("s", json!({"k": "v1"})), ("s", json!({"k": "v2"}))]);
    let fs = mount(&store);
    let (s, s_name) = walk(&fs, "secret/s").await.unwrap();
    assert_eq!((s.kind, s.perm, s.nlink), (Kind::Dir, 0o500, 2));
    assert_eq!((s.uid, s.gid), (1000, 1001));
    assert_eq!(s_name, TTL);
    let k = walk(&fs, "secret/s/k").await.unwrap();
    assert_eq!(
        (k.0.kind, k.0.perm, k.0.nlink, k.0.size),
        (Kind::File, 0o400, 1, 2)
    );
    advance(Duration::from_millis(500)).await;
    // Half a second later: what was cached then lives 1.5 s more.
    let left = Duration::from_millis(1500);
    for file in ["k", ".json", ".env", ".sh"] {
        let (a, name) = walk(&fs, &format!("secret/s/{file}")).await.unwrap();
        assert_eq!((a.kind, a.ttl, name), (Kind::File, left, left), "{file}");
    }
    // A directory's name keeps the full TTL; its attributes, the answers
    // it would be listed from (here cached since the start).
    let (s, name) = walk(&fs, "secret/s").await.unwrap();
    assert_eq!((name, s.ttl), (TTL, left));
    // Served at 0.5 s from answers cached at 0: those bound them.
    ls(&fs, s.ino).await;
    advance(Duration::from_millis(500)).await;
    assert_eq!(fs.getattr(s.ino).await.unwrap().ttl, Duration::from_secs(1));
    // History, fetched now: the full TTL, then less.
    let (versions, name) = walk(&fs, "secret/s/.versions").await.unwrap();
    assert_eq!((versions.kind, name), (Kind::Dir, TTL));
    let (old, name) = walk(&fs, "secret/s/.versions/1/k").await.unwrap();
    assert_eq!((old.kind, old.ttl, name), (Kind::File, TTL, TTL));
    assert_eq!(text(&fs, old.ino), "v1");
    let (meta, name) = walk(&fs, "secret/s/.metadata.json").await.unwrap();
    assert_eq!((meta.kind, meta.ttl, name), (Kind::File, TTL, TTL));
    assert_eq!(ls(&fs, versions.ino).await, ["1", "2"]);
    advance(Duration::from_millis(300)).await;
    // An old version never changes: its answer outlives the TTL.
    let (old, name) = walk(&fs, "secret/s/.versions/1/k").await.unwrap();
    assert_eq!((old.ttl, name), (TTL, TTL));
    let left = TTL - Duration::from_millis(300);
    let (meta, name) = walk(&fs, "secret/s/.metadata.json").await.unwrap();
    assert_eq!((meta.ttl, name), (left, left));
    assert_eq!(fs.getattr(versions.ino).await.unwrap().ttl, left);
}

/// A directory's mtime is how the kernel learns that the listing it keeps
/// changed: it moves when a listing served differs from the last one (a
/// name added or removed, or a file's content changed), and only then.
#[tokio::test(start_paused = true)]
async fn a_directorys_mtime_changes_when_and_only_when_its_listing_does() {
    let store = kv2(&[("d/x", json!({"k": "1"})), ("d", json!({"own": "a"}))]);
    let fs = mount(&store);
    let d = ino(&fs, "secret/d").await;
    assert_eq!(ls(&fs, d).await, [".env", ".json", ".sh", "own", "x"]);
    let first = fs.getattr(d).await.unwrap().mtime;
    let mtime = async || fs.getattr(d).await.unwrap().mtime;
    // Expired but unchanged: revalidated on getattr, same mtime, and the
    // kernel may keep it another TTL.
    advance(TTL).await;
    assert_eq!(mtime().await, first);
    assert_eq!(fs.getattr(d).await.unwrap().ttl, TTL);
    // A child's own content is not this listing's: no change.
    store.put("secret", "d/x", json!({"k": "2"}));
    advance(TTL).await;
    assert_eq!(mtime().await, first);
    // A name added: a later mtime, once; then it stays.
    store.put("secret", "d/y", json!({"k": "1"}));
    assert_eq!(mtime().await, first, "within the TTL: the cached answer");
    advance(TTL).await;
    let added = mtime().await;
    assert!(added > first);
    assert_eq!(ls(&fs, d).await, [".env", ".json", ".sh", "own", "x", "y"]);
    advance(TTL).await;
    assert_eq!(mtime().await, added);
    // A file's content changed under the same name and size.
    store.put("secret", "d", json!({"own": "b"}));
    advance(TTL).await;
    let changed = mtime().await;
    assert!(changed > added);
    // A failed revalidation changes nothing, and the kernel gets no TTL.
    store.put("secret", "d/z", json!({"k": "1"}));
    store.fail_everything(Fault::status(503));
    advance(TTL).await;
    let a = fs.getattr(d).await.unwrap();
    assert_eq!((a.mtime, a.ttl), (changed, Duration::ZERO));
    store.heal();
    assert!(mtime().await > changed);
}

/// A stale directory is revalidated when its attributes are handed out
/// again, by `getattr` or `lookup`, and that costs only the requests of
/// its own expired answers: a lookup passing through a directory is not a
/// read of it (no SCAN, no prefetch of its children).
#[tokio::test(start_paused = true)]
async fn revalidating_a_path_costs_only_its_own_expired_answers() {
    let store = kv2(&[]);
    for i in 0..40 {
        store.put("secret", &format!("rv/s{i}"), json!({"a": format!("{i}")}));
    }
    let fs = mount(&store);
    let rv = ino(&fs, "secret/rv").await;
    assert_eq!(ls(&fs, rv).await.len(), 40);
    until("the prefetch of rv's secrets", || {
        store.count(Op::Read) == 40
    })
    .await;
    let a = ino(&fs, "secret/rv/s7/a").await;
    assert_eq!(text(&fs, a), "7");
    let first = fs.getattr(rv).await.unwrap().mtime;
    for round in 0..2 {
        // A secret added meanwhile shows as a new mtime of `rv`.
        store.put("secret", &format!("rv/new{round}"), json!({"a": "n"}));
        advance(TTL).await;
        store.clear_calls();
        let (rv_attr, _) = walk(&fs, "secret/rv").await.unwrap();
        let a = ino(&fs, "secret/rv/s7/a").await;
        assert_eq!(text(&fs, a), "7");
        let calls = store.calls();
        assert_eq!(store.count(Op::Scan), 0, "round {round}: {calls:?}");
        assert_eq!(store.count(Op::Read), 1, "round {round}: {calls:?}");
        assert_eq!(store.count_at(Op::Read, "secret", "rv/s7"), 1);
        // The mount root's listing and rv's, each expired once.
        assert!(store.count(Op::List) <= 2, "round {round}: {calls:?}");
        assert!(rv_attr.mtime > first, "round {round}");
        assert_eq!(rv_attr.ttl, TTL);
    }
    // And by getattr alone: its own listing, nothing of its children.
    advance(TTL).await;
    store.clear_calls();
    fs.getattr(rv).await.unwrap();
    let calls = store.calls();
    assert_eq!(store.count_at(Op::List, "secret", "rv"), 1, "{calls:?}");
    assert!(calls
        .iter()
        .all(|c| c.op == Op::List && !c.path.starts_with("rv/")));
}

/// A listing the kernel first reads late in the life of the daemon's cached
/// answer (fetched in the background when the parent was listed, looked up
/// 1.4 s into a 2 s TTL) is kept only until that answer expires, not a
/// full TTL from the lookup: a secret added just after the fetch shows
/// once the TTL has passed since then.
#[tokio::test(start_paused = true)]
async fn a_late_listing_expires_with_the_answers_it_came_from() {
    let store = kv2(&[("late/f/one", json!({"k": "1"}))]);
    let fs = mount(&store);
    let late = ino(&fs, "secret/late").await;
    // Lists `f`, and fetches f's own listing in the background.
    assert_eq!(ls(&fs, late).await, ["f"]);
    let f = ino(&fs, "secret/late/f").await;
    until("the prefetch of f", || fs.tree.dir_valid_until(f).is_some()).await;
    fs.forget(f, 1);
    advance(Duration::from_millis(300)).await;
    store.put("secret", "late/f/two", json!({"k": "2"}));
    advance(Duration::from_millis(1100)).await;
    // The kernel forgot `f`; its next lookup is a late one.
    let (f, _) = walk(&fs, "secret/late/f").await.unwrap();
    assert_eq!(f.ttl, Duration::from_millis(600));
    assert_eq!(ls(&fs, f.ino).await, ["one"], "still the cached answer");
    assert_eq!(
        fs.getattr(f.ino).await.unwrap().ttl,
        Duration::from_millis(600)
    );
    advance(Duration::from_millis(600)).await;
    let now = fs.getattr(f.ino).await.unwrap();
    assert!(now.mtime > f.mtime, "the kernel would keep its old listing");
    assert_eq!(ls(&fs, f.ino).await, ["one", "two"]);
}

/// A directory stream read a chunk at a time resumes from each entry's
/// cookie: every entry comes once, in cookie order, each chunk from the
/// listing the stream started with (no rebuild per chunk, so reading N
/// entries takes time linear in N). Across a change and an expiry in
/// mid-stream, the entries that stayed are neither repeated nor skipped;
/// the next stream is the new listing, whole.
#[tokio::test(start_paused = true)]
async fn a_stream_read_in_chunks_neither_repeats_nor_skips() {
    let n = 700;
    let store = kv2(&[]);
    for i in 0..n {
        store.put("secret", &format!("big/s{i:04}"), json!({"k": "v"}));
    }
    let fs = mount(&store);
    let big = ino(&fs, "secret/big").await;
    for plus in [false, true] {
        let mut seen = Vec::new();
        let mut offset = 0;
        let mut first_listing = None;
        for calls in 0.. {
            assert!(calls <= n / 17 + 2, "the stream does not end");
            let c = chunk(&fs, big, offset, 17, plus).await;
            let Some(last) = c.got.last() else { break };
            offset = last.0;
            assert!(c.got.iter().all(|e| e.4.is_some() == plus));
            seen.extend(c.got.into_iter().map(|e| (e.0, e.1)));
            let now = fs.streams.lock().unwrap().get(big).unwrap();
            let first = first_listing.get_or_insert_with(|| now.clone());
            assert!(Arc::ptr_eq(first, &now), "a chunk rebuilt the listing");
        }
        assert_eq!(seen.len(), n + 2, "plus: {plus}");
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "cookie order");
        assert_eq!((seen[0].1.as_str(), seen[1].1.as_str()), (".", ".."));
    }
    // Part of a stream, then a change the daemon sees in mid-stream.
    let c = chunk(&fs, big, 0, 22, false).await;
    let mut seen: Vec<String> = c.got.iter().map(|e| e.1.clone()).collect();
    let mut offset = c.got.last().unwrap().0;
    store.put("secret", "big/added", json!({"k": "v"}));
    store.put("secret", "big/s0000", json!({"k": "changed"}));
    advance(TTL).await;
    for calls in 0.. {
        assert!(calls <= n / 50 + 2, "the stream does not end");
        let c = chunk(&fs, big, offset, 50, false).await;
        let Some(last) = c.got.last() else { break };
        offset = last.0;
        seen.extend(c.got.into_iter().map(|e| e.1));
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "an entry came twice");
    for i in 0..n {
        assert!(seen.contains(&format!("s{i:04}")), "s{i:04} skipped");
    }
    let now = ls(&fs, big).await;
    assert_eq!(now.len(), n + 1);
    assert_eq!(now.last().map(String::as_str), Some("s0699"));
    assert!(now.contains(&"added".to_string()));
}

/// A read returns the bytes of its range, fewer at the end, none past it,
/// whatever the offset and size; a directory or an unknown inode is an error.
#[tokio::test(start_paused = true)]
async fn reads_at_offsets_and_sizes_past_the_end() {
    let big = "x".repeat(1 << 20) + "end";
    let store = kv2(&[("r", json!({"v": "hello world", "big": big}))]);
    let fs = mount(&store);
    let v = ino(&fs, "secret/r/v").await;
    let read = |ino, offset, size| {
        let d = fs.read(ino, offset, size).unwrap();
        String::from_utf8(d.as_slice().to_vec()).unwrap()
    };
    assert_eq!(read(v, 0, 5), "hello");
    assert_eq!(read(v, 6, 100), "world");
    assert_eq!(read(v, 11, 10), "");
    assert_eq!(read(v, 1000, 10), "");
    assert_eq!(read(v, u64::MAX, u32::MAX), "");
    assert_eq!(read(v, 3, 0), "");
    let b = ino(&fs, "secret/r/big").await;
    assert_eq!(read(b, 1 << 20, 4096), "end");
    assert_eq!(read(b, (1 << 20) - 1, 2), "xe");
    let dir = ino(&fs, "secret/r").await;
    let errno = |ino| fs.read(ino, 0, 1).err().map(|e| e.errno());
    assert_eq!(errno(dir), Some(libc::EISDIR));
    assert_eq!(errno(1 << 40), Some(libc::EBADF));
}

/// A changed value is a new inode, with its own size, read whole once the
/// TTL has passed; the old inode (an open handle's) keeps its own bytes and
/// size. An unchanged value keeps its inode across refreshes, and a
/// listing hands out the new inodes too.
#[tokio::test(start_paused = true)]
async fn a_rotated_value_is_a_new_inode_and_the_old_one_keeps_its_bytes() {
    let short = "o".repeat(9000);
    let store = kv2(&[("rot", json!({"v": short, "w": "steady"}))]);
    let fs = mount(&store);
    let old = ino(&fs, "secret/rot/v").await;
    let w = ino(&fs, "secret/rot/w").await;
    let head = fs.read(old, 0, 100).unwrap().as_slice().to_vec();
    advance(TTL).await;
    assert_eq!(ino(&fs, "secret/rot/v").await, old, "refreshed, unchanged");
    assert_eq!(ino(&fs, "secret/rot/w").await, w);
    let long = "n".repeat(13000);
    store.put("secret", "rot", json!({"v": long, "w": "steady"}));
    assert_eq!(ino(&fs, "secret/rot/v").await, old, "within the TTL");
    advance(TTL).await;
    let (new, _) = walk(&fs, "secret/rot/v").await.unwrap();
    assert_ne!(new.ino, old, "a changed value must be a new inode");
    assert_eq!(new.size, long.len() as u64);
    assert_eq!(text(&fs, new.ino), long);
    // The old inode: its own version, whole, at its own size.
    let rest = fs.read(old, 100, u32::MAX).unwrap().as_slice().to_vec();
    assert_eq!([head, rest].concat(), short.as_bytes());
    assert_eq!(fs.getattr(old).await.unwrap().size, short.len() as u64);
    // A listing (readdirplus) hands out the new version, and an empty one.
    store.put("secret", "rot", json!({"v": "", "w": "steady"}));
    advance(TTL).await;
    let rot = ino(&fs, "secret/rot").await;
    let c = chunk(&fs, rot, 0, usize::MAX, true).await;
    let v = c.got.iter().find(|e| e.1 == "v").unwrap();
    let attr = v.4.as_ref().unwrap();
    assert_ne!(attr.ino, new.ino);
    assert_eq!(attr.size, 0);
    assert_eq!(text(&fs, attr.ino), "");
}

fn answer(call: impl FnOnce(mpsc::Sender<Result<(), FsError>>)) -> Option<i32> {
    let (tx, rx) = mpsc::channel();
    call(tx);
    rx.try_recv()
        .expect("answered at once")
        .err()
        .map(|e| e.errno())
}

/// Everything that would write is refused with EROFS; reading opens are
/// answered, or left to the kernel (ENOSYS) once it can open by itself.
#[tokio::test(start_paused = true)]
async fn writes_are_refused_and_opens_left_to_the_kernel() {
    let store = kv2(&[("s", json!({"k": "v"}))]);
    let fs = mount(&store);
    let k = ino(&fs, "secret/s/k").await;
    let s = ino(&fs, "secret/s").await;
    let me = Caller {
        pid: 1,
        uid: 0,
        gid: 0,
    };
    let open = |flags| answer(|tx| fs.open(k, flags, me, move |r| tx.send(r).unwrap()));
    let opendir = |flags| answer(|tx| fs.opendir(s, flags, me, move |r| tx.send(r).unwrap()));
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_TRUNC,
        libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND,
    ] {
        assert_eq!(open(flags), Some(libc::EROFS), "{flags:#o}");
    }
    assert_eq!(opendir(libc::O_WRONLY), Some(libc::EROFS));
    assert_eq!(fs.access(true).map_err(|e| e.errno()), Err(libc::EROFS));
    assert_eq!(fs.access(false), Ok(()));
    assert_eq!(open(libc::O_RDONLY), None);
    assert_eq!(opendir(libc::O_RDONLY | libc::O_DIRECTORY), None);
    fs.kernel_opens(true, true);
    assert_eq!(open(libc::O_RDONLY), Some(libc::ENOSYS));
    assert_eq!(opendir(libc::O_RDONLY), Some(libc::ENOSYS));
    assert_eq!(open(libc::O_RDWR), Some(libc::EROFS), "still refused first");
    assert_eq!(text(&fs, k), "v");
}

/// An operation waiting on a store that never answers fails with EIO at
/// the operation deadline, not later; a stale directory whose check hangs
/// still gets its attributes then, with no TTL.
#[tokio::test(start_paused = true)]
async fn the_deadline_turns_a_hung_store_into_eio() {
    let store = kv2(&[("d/s", json!({"k": "v"}))]);
    let fs = mount(&store);
    let d = ino(&fs, "secret/d").await;
    ls(&fs, d).await;
    advance(TTL).await;
    store.fail_everything(Fault::Hang);
    let start = Instant::now();
    let e = walk(&fs, "secret/d/s/k").await.unwrap_err();
    assert_eq!(e, FsError::Timeout(DEADLINE));
    assert_eq!(e.errno(), libc::EIO);
    assert_eq!(start.elapsed(), DEADLINE);
    let start = Instant::now();
    let mut c = Chunk {
        room: 10,
        got: Vec::new(),
    };
    let e = fs.readdir(d, 0, true, &mut c).await.unwrap_err();
    assert_eq!((e.errno(), start.elapsed()), (libc::EIO, DEADLINE));
    assert!(c.got.is_empty());
    let start = Instant::now();
    let a = fs.getattr(d).await.unwrap();
    assert_eq!(
        (a.kind, a.ttl, start.elapsed()),
        (Kind::Dir, Duration::ZERO, DEADLINE)
    );
    // Back: answered at once.
    store.heal();
    let start = Instant::now();
    walk(&fs, "secret/d/s/k").await.unwrap();
    assert!(start.elapsed() < MS);
}

/// A lookup whose revalidation waits on Vault past the operation's
/// deadline has already taken the inode reference the kernel would
/// count; the guard must release it, as the kernel, which got no
/// entry, forgets only what it was given.
#[tokio::test(start_paused = true)]
async fn a_lookup_cut_by_its_deadline_leaves_no_reference() {
    let store = kv2(&[("a/s", json!({}))]);
    let fs = mount(&store);
    let root = ino(&fs, "secret").await;
    // The kernel looked `a` up (one reference) and listed it.
    let a = ino(&fs, "secret/a").await;
    ls(&fs, a).await;
    fs.streams.lock().unwrap().forget(a);
    // The listing it holds expires; Vault stops answering for `a`.
    advance(TTL).await;
    store.fail(Op::List, "secret", "a", Fault::Hang);
    let cut = fs.lookup(root, b"a").await.err();
    assert_eq!(cut, Some(FsError::Timeout(DEADLINE)));
    assert!(
        fs.tree.forget(a, 1),
        "a reference leaked: the inode outlived its last FORGET"
    );
}

/// The kernel's references: one per lookup replied to and per
/// `readdirplus` entry it took (not `.` and `..`, nor an entry that did
/// not fit); an inode goes with its last FORGET, and a lookup whose reply
/// never went out holds none.
#[tokio::test(start_paused = true)]
async fn inodes_live_as_long_as_the_kernel_references_them() {
    let store = kv2(&[("d/a", json!({})), ("d/b", json!({}))]);
    let fs = mount(&store);
    let d = ino(&fs, "secret/d").await;
    let gone = async |ino| fs.getattr(ino).await.err().map(|e| e.errno());
    // Twice looked up, once not replied to: two FORGETs to go.
    let a = ino(&fs, "secret/d/a").await;
    ino(&fs, "secret/d/a").await;
    drop(fs.lookup(d, b"a").await.unwrap());
    fs.forget(a, 1);
    assert_eq!(gone(a).await, None);
    fs.forget(a, 1);
    assert_eq!(gone(a).await, Some(libc::EBADF));
    // A readdirplus with room for `.`, `..` and one entry: the kernel
    // holds that one, the stream's listing the other, until it goes.
    let c = chunk(&fs, d, 0, 3, true).await;
    let (took, took_name) = (c.got[2].2, c.got[2].1.clone());
    let left_name = if took_name == "a" { "b" } else { "a" };
    let left = ino(&fs, &format!("secret/d/{left_name}")).await;
    fs.forget(left, 1);
    assert_eq!(gone(left).await, None, "held by the stream");
    fs.streams.lock().unwrap().forget(d);
    assert_eq!(gone(left).await, Some(libc::EBADF), "not handed out");
    assert_eq!(gone(took).await, None, "handed out");
    fs.forget(took, 1);
    assert_eq!(gone(took).await, Some(libc::EBADF));
}

/// A directory's `served` record must go with its inode. When the
/// kernel forgets a directory while a listing of its parent (a
/// directory stream) still holds it, FORGET does not drop the inode; the
/// listing's drop does, later, and the record must go then too: else one
/// more stays for good per directory per walk under memory pressure
/// (inode numbers are never reused).
#[tokio::test(start_paused = true)]
async fn served_records_do_not_outlive_their_inodes() {
    let store = kv2(&[("a/s", json!({}))]);
    let fs = mount(&store);
    let tree = fs.tree.clone();
    let root = ino(&fs, "secret").await;
    for _ in 0..5000 {
        // A stream of the mount's root holds `a`; the kernel looks `a`
        // up, lists it, and forgets it.
        let parent = tree.readdir(root, false).await.unwrap();
        let a = tree.lookup(root, b"a").await.unwrap().ino;
        fs.note_served(a, &tree.readdir(a, false).await.unwrap());
        fs.forget(a, 1);
        drop(parent);
        assert!(tree.node(a).is_none());
    }
    let held = fs.kernel.records();
    assert!(held < 2500, "{held} records kept for no live directory");
}

/// Hostile names too: dots, percent signs, `..` as a whole name.
fn names() -> impl proptest::strategy::Strategy<Value = std::collections::BTreeSet<String>> {
    proptest::collection::btree_set("[ab.%]{1,4}", 0..40)
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 48, ..Default::default() })]

    /// Whatever the names, the chunk sizes and where in the stream the
    /// folder gains names and the daemon's answers expire: `.` and `..`
    /// come first and once, no entry comes twice, every entry shown both
    /// before and after the change comes, and nothing else does.
    #[test]
    fn any_stream_in_any_chunks_across_a_change_shows_what_stayed_once(
        before in names(),
        added in names(),
        rooms in proptest::collection::vec(1usize..12, 1..20),
        cut in 0usize..50,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let put = |store: &MemoryStore, names: &std::collections::BTreeSet<String>| {
                for n in names {
                    store.put("secret", &format!("p/{n}/s"), json!({"k": "v"}));
                }
            };
            let store = kv2(&[("p/keep", json!({}))]);
            put(&store, &before);
            let fs = mount(&store);
            let p = ino(&fs, "secret/p").await;
            let old = ls(&fs, p).await;
            let (mut seen, mut offset, mut changed) = (Vec::new(), 0, false);
            for room in rooms.iter().cycle().take(200) {
                if !changed && seen.len() >= cut {
                    put(&store, &added);
                    advance(TTL).await;
                    changed = true;
                }
                let c = chunk(&fs, p, offset, *room, false).await;
                let Some(last) = c.got.last() else { break };
                offset = last.0;
                seen.extend(c.got.into_iter().map(|e| e.1));
            }
            let new = ls(&fs, p).await;
            assert_eq!(&seen[..2], [".", ".."]);
            let seen = &seen[2..];
            let mut unique = seen.to_vec();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), seen.len(), "an entry came twice: {seen:?}");
            for n in old.iter().filter(|n| new.contains(n)) {
                assert!(seen.contains(n), "{n:?} skipped");
            }
            for n in seen {
                assert!(old.contains(n) || new.contains(n), "{n:?} never there");
            }
        });
    }
}
