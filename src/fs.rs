//! The FUSE adapter: turns kernel requests into [`Tree`] calls.
//!
//! Every request that may need Vault is answered from a tokio task (fuser's
//! reply objects are `Send`), so the FUSE loop never waits on the network
//! and cold reads overlap. Nothing here knows HTTP. How long the kernel
//! may keep what it is given, and the mtime that tells it a listing
//! changed, are the policy of `crate::kernel_cache`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle as Runtime;

use crate::audit::{Access, AuditLog, Op, Source};
use crate::error::{FsError, VaultError};
use crate::kernel_cache::KernelCache;
use crate::store::SecretStore;
use crate::tree::{Entry, Held, Kind, Listing, Tree};

/// How files look to `stat`.
#[derive(Debug, Clone)]
pub struct FsOptions {
    pub uid: u32,
    pub gid: u32,
    pub file_mode: u16,
    pub dir_mode: u16,
    /// How long the kernel may keep entries and attributes.
    pub ttl: Duration,
    /// Longest any operation may take before it fails with EIO: a backstop
    /// for chains of Vault requests (see docs/reliability.md).
    pub op_timeout: Duration,
}

pub struct VaultFs<S> {
    shared: Arc<Shared<S>>,
    rt: Runtime,
    /// The kernel opens files without asking (`FUSE_NO_OPEN_SUPPORT`).
    no_open: bool,
    /// ... and directories (`FUSE_NO_OPENDIR_SUPPORT`).
    no_opendir: bool,
    /// The read audit: with it, opens are answered (each one reaches us).
    audit: Option<AuditLog>,
}

/// What replies built on the FUSE thread and in tasks both need.
struct Shared<S> {
    tree: Arc<Tree<S>>,
    opts: FsOptions,
    /// What the kernel may cache, and for how long.
    kernel: KernelCache,
    /// Listings of streams in progress (see [`Streams`]).
    streams: Mutex<Streams>,
}

/// The last listings served, by directory inode, so each later chunk of a
/// stream is a binary search in one (until its answers expire) instead of
/// a rebuild of the whole listing: reading a directory of N entries takes
/// time linear in N, not quadratic. Bounded: [`Streams::MAX_DIRS`]
/// listings and, the newest one aside, [`Streams::MAX_ENTRIES`] entries
/// (each holds its inode and, for a secret's files, the secret).
#[derive(Default)]
struct Streams {
    /// Least recently used first.
    held: Vec<(u64, Arc<Listing>)>,
}

impl Streams {
    const MAX_DIRS: usize = 64;
    const MAX_ENTRIES: usize = 200_000;

    /// The listing served last for `ino`, while its answers are fresh.
    fn get(&mut self, ino: u64) -> Option<Arc<Listing>> {
        let i = self.held.iter().position(|(i, _)| *i == ino)?;
        let (_, l) = self.held.remove(i);
        if l.valid_until <= Instant::now() {
            return None;
        }
        self.held.push((ino, l.clone()));
        Some(l)
    }

    fn put(&mut self, ino: u64, listing: Arc<Listing>) {
        let now = Instant::now();
        self.held.retain(|(i, l)| *i != ino && l.valid_until > now);
        self.held.push((ino, listing));
        while self.held.len() > 1
            && (self.held.len() > Self::MAX_DIRS
                || self.held[..self.held.len() - 1]
                    .iter()
                    .map(|(_, l)| l.len())
                    .sum::<usize>()
                    > Self::MAX_ENTRIES)
        {
            self.held.remove(0);
        }
    }

    fn forget(&mut self, ino: u64) {
        self.held.retain(|(i, _)| *i != ino);
    }
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

impl<S: SecretStore> VaultFs<S> {
    pub fn new(tree: Arc<Tree<S>>, rt: Runtime, opts: FsOptions) -> Self {
        VaultFs {
            shared: Arc::new(Shared {
                tree,
                kernel: KernelCache::new(opts.ttl),
                opts,
                streams: Mutex::default(),
            }),
            rt,
            no_open: false,
            no_opendir: false,
            audit: None,
        }
    }

    /// Record every open in `audit` (`--audit-log`).
    pub fn with_audit(mut self, audit: Option<AuditLog>) -> Self {
        self.audit = audit;
        self
    }

    /// Record an open of `ino` by `req` (`errno`: refused with it); the
    /// audit calls `release` (the reply) once it has read who the caller is.
    fn audit(
        &self,
        req: &Request,
        op: Op,
        ino: INodeNo,
        errno: Option<i32>,
        release: impl FnOnce() + Send + 'static,
    ) {
        let Some(audit) = &self.audit else {
            return release();
        };
        let (path, secret) = self
            .shared
            .tree
            .shown(ino.0)
            .unwrap_or_else(|| (format!("<inode {}>", ino.0), None));
        let served = errno.is_none();
        audit.record(
            Access {
                op,
                pid: req.pid(),
                uid: req.uid(),
                gid: req.gid(),
                path,
                version: secret.as_ref().and_then(|s| s.version),
                source: secret.filter(|_| served).map(|s| match s.first_open() {
                    true => Source::Vault,
                    false => Source::Cache,
                }),
                errno,
            },
            Some(Box::new(release)),
        );
    }

    /// Run `f` on the runtime and hand its result to `done`.
    fn spawn<T, F, D>(&self, f: F, done: D)
    where
        F: std::future::Future<Output = Result<T, FsError>> + Send + 'static,
        D: FnOnce(Result<T, FsError>) + Send + 'static,
        T: Send + 'static,
    {
        let limit = self.shared.opts.op_timeout;
        self.rt.spawn(async move {
            let r = tokio::time::timeout(limit, f).await.unwrap_or_else(|_| {
                tracing::warn!(
                    limit_ms = limit.as_millis() as u64,
                    "filesystem operation timed out"
                );
                Err(VaultError::Timeout(limit).into())
            });
            done(r)
        });
    }

    /// Answer a `readdir`/`readdirplus` at `offset`: `fill` gets the rest
    /// of the stream, once the listing it comes from is recorded as served.
    fn serve_dir<R, F>(&self, ino: INodeNo, offset: u64, reply: R, fill: F)
    where
        R: DirReply,
        F: for<'a> FnOnce(&Shared<S>, R, Stream<'a>) + Send + 'static,
    {
        let s = self.shared.clone();
        self.with_listing(ino, offset, move |r| match r {
            Ok(listing) => fill(&s, reply, stream(ino, &listing, offset)),
            Err(e) => reply.fail(errno(&e)),
        });
    }

    /// A directory's listing for a stream at `offset`: the one the stream's
    /// earlier chunks came from while its answers are fresh; else built
    /// right here when everything it shows is cached (no task, no thread
    /// hop), or in a task. The start of a stream is always built anew and
    /// also fetches the children a walker visits next.
    fn with_listing<D>(&self, ino: INodeNo, offset: u64, done: D)
    where
        D: FnOnce(Result<Arc<Listing>, FsError>) + Send + 'static,
    {
        let prefetch = offset == 0;
        let s = &self.shared;
        if !prefetch {
            if let Some(l) = s.streams.lock().expect("streams").get(ino.0) {
                return done(Ok(l));
            }
        }
        let keep = {
            let s = s.clone();
            move |r: Result<Listing, FsError>| {
                done(r.map(|l| {
                    let l = Arc::new(l);
                    s.note_served(ino.0, &l);
                    s.streams.lock().expect("streams").put(ino.0, l.clone());
                    l
                }))
            }
        };
        match s.tree.readdir_cached(ino.0, prefetch) {
            Some(r) => keep(r),
            None => {
                let tree = s.tree.clone();
                self.spawn(async move { tree.readdir(ino.0, prefetch).await }, keep)
            }
        }
    }
}

/// The two directory replies, as far as [`VaultFs::serve_dir`] needs.
trait DirReply: Send + 'static {
    fn fail(self, e: Errno);
}

impl DirReply for ReplyDirectory {
    fn fail(self, e: Errno) {
        self.error(e)
    }
}

impl DirReply for ReplyDirectoryPlus {
    fn fail(self, e: Errno) {
        self.error(e)
    }
}

impl<S: SecretStore> Shared<S> {
    fn attr(&self, e: &Entry) -> FileAttr {
        let t = self.kernel.mtime(e);
        let (kind, perm, nlink) = match e.kind {
            Kind::Dir => (FileType::Directory, self.opts.dir_mode, 2),
            Kind::File => (FileType::RegularFile, self.opts.file_mode, 1),
        };
        FileAttr {
            ino: INodeNo(e.ino),
            size: e.size,
            blocks: e.size.div_ceil(512),
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            kind,
            perm,
            nlink,
            uid: self.opts.uid,
            gid: self.opts.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// How long the kernel may keep `e`'s attributes.
    fn attr_ttl(&self, e: &Entry) -> Duration {
        self.kernel
            .attr_ttl(e, |ino| self.tree.dir_valid_until(ino))
    }

    /// How long the kernel may keep `e`'s name.
    fn entry_ttl(&self, e: &Entry) -> Duration {
        self.kernel.entry_ttl(e)
    }

    /// Record a listing of `ino` the kernel may now hold.
    fn note_served(&self, ino: u64, listing: &Listing) {
        self.kernel
            .note_served(ino, listing, listing.valid_until, |ino| {
                self.tree.node(ino).is_some()
            });
    }

    /// The kernel forgot `n` lookups of `ino`.
    fn forget(&self, ino: u64, n: u64) {
        if self.tree.forget(ino, n) {
            self.kernel.forget(ino);
            self.streams.lock().expect("streams").forget(ino);
        }
    }

    /// Before the kernel is given a directory's attributes anew: if the
    /// listing it may hold is stale, compare it with the current one (a
    /// Vault request if that expired too). Without prefetch or SCAN: a
    /// lookup or stat passing through a directory is not a read of it, and
    /// must cost only its own expired answers, not one per child.
    async fn revalidate(&self, ino: u64) {
        if self.kernel.stale(ino) {
            // On an error the kernel gets no TTL (attr_ttl 0) and asks again.
            if let Ok(listing) = self.tree.readdir(ino, false).await {
                self.note_served(ino, &listing);
            }
        }
    }
}

/// The rest of a directory stream: (cookie, name, entry).
type Stream<'a> = Box<dyn Iterator<Item = (u64, &'a str, Entry)> + 'a>;

/// The directory stream from `offset` on, ordered by cookie
/// ([`Tree::cookie`]; `.` and `..` are 1 and 2): found by binary search,
/// entries cloned only as the reply takes them.
fn stream(ino: INodeNo, listing: &Listing, offset: u64) -> Stream<'_> {
    let me = Entry {
        ino: ino.0,
        kind: Kind::Dir,
        size: 0,
        mtime: None,
        fingerprint: 0,
        valid_until: None,
    };
    let dots = [(1, "."), (2, "..")]
        .into_iter()
        .filter(move |(c, _)| *c > offset)
        .map(move |(c, n)| (c, n, me.clone()));
    Box::new(dots.chain(listing.after(offset).map(|(c, n, e)| (c, n, e.clone()))))
}

macro_rules! read_only {
    ($reply:ident) => {{
        $reply.error(Errno::from_i32(FsError::ReadOnly.errno()));
    }};
}

impl<S: SecretStore> Filesystem for VaultFs<S> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each is best effort: an older kernel without one still works.
        for cap in [
            // Attributes come with directory entries (they are free here):
            // `ls -l` and walks need no LOOKUP per entry.
            InitFlags::FUSE_DO_READDIRPLUS,
            // Lookups in one directory run in parallel, not one at a time.
            InitFlags::FUSE_PARALLEL_DIROPS,
            // A changed mtime or size drops cached pages. A file inode's
            // attributes never change (one inode per content version), so
            // this is only a second line of defence.
            InitFlags::FUSE_AUTO_INVAL_DATA,
        ] {
            if config.add_capabilities(cap).is_err() {
                tracing::debug!(?cap, "kernel lacks FUSE capability");
            }
        }
        // Files are read by inode, so an open needs no round trip: the first
        // one answers ENOSYS and the kernel opens every file by itself from
        // then on, with FOPEN_KEEP_CACHE (fs/fuse/file.c, fuse_file_open).
        // Not with the read audit: it must see every open.
        let caps = config.capabilities();
        let audit = self.audit.as_ref();
        self.no_open = audit.is_none() && caps.contains(InitFlags::FUSE_NO_OPEN_SUPPORT);
        // Likewise directories (see opendir).
        self.no_opendir = !audit.is_some_and(AuditLog::listings)
            && caps.contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        // Room for parallel reads (xargs -P, readahead) in flight at once.
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (s, name) = (self.shared.clone(), name.as_bytes().to_vec());
        let done = s.clone();
        self.spawn(lookup(s, parent.0, name), move |r| match r {
            Ok(e) => {
                reply.entry_with_ttls(
                    &done.attr_ttl(&e),
                    &done.entry_ttl(&e),
                    &done.attr(&e),
                    Generation(0),
                );
                e.hand_over();
            }
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        // A file inode is one content version: its attributes never change
        // and need no request. A directory's need one only when the listing
        // the kernel may hold has outlived its answers.
        let e = match self.shared.tree.getattr(ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(&e)),
        };
        let s = self.shared.clone();
        if !(e.kind == Kind::Dir && s.kernel.stale(ino.0)) {
            return reply.attr(&s.attr_ttl(&e), &s.attr(&e));
        }
        let done = s.clone();
        self.spawn(
            async move {
                s.revalidate(ino.0).await;
                Ok(())
            },
            move |_: Result<(), FsError>| reply.attr(&done.attr_ttl(&e), &done.attr(&e)),
        );
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.shared.forget(ino.0, nlookup);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // The mount is read-only, so the kernel refuses writing opens
        // before they get here; this is a second line of defence.
        if flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0 {
            let erofs = FsError::ReadOnly.errno();
            return self.audit(req, Op::Open, ino, Some(erofs), move || read_only!(reply));
        }
        if self.no_open {
            return reply.error(Errno::ENOSYS);
        }
        // The handle carries nothing, reads go by inode; the kernel keeps
        // the pages it read (an inode's bytes never change).
        self.audit(req, Op::Open, ino, None, move || {
            reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE)
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // An inode is one content version: its bytes answer every read of
        // it, from any handle, at any time.
        match self.shared.tree.content(ino.0) {
            Ok((s, f)) => {
                let data = s.content(&f).map_or(&[][..], |c| c.as_slice());
                let start = (offset as usize).min(data.len());
                let end = start.saturating_add(size as usize).min(data.len());
                reply.data(&data[start..end]);
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn opendir(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return read_only!(reply);
        }
        // Directory streams need no handle (offsets are cookies, not
        // positions in a snapshot): the first opendir answers ENOSYS and the
        // kernel opens directories by itself from then on, keeping listings
        // it read (FOPEN_CACHE_DIR) until the directory's mtime changes.
        if self.no_opendir {
            return reply.error(Errno::ENOSYS);
        }
        let opened = move || {
            reply.opened(
                FileHandle(0),
                FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
            )
        };
        match self.audit.as_ref().is_some_and(AuditLog::listings) {
            true => self.audit(req, Op::List, ino, None, opened),
            false => opened(),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.serve_dir(ino, offset, reply, |_, mut reply, stream| {
            for (next, name, e) in stream {
                if reply.add(INodeNo(e.ino), next, file_type(e.kind), name) {
                    break;
                }
            }
            reply.ok();
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        self.serve_dir(ino, offset, reply, |s, mut reply, stream| {
            for (next, name, e) in stream {
                // One TTL for name and attributes here: the attributes',
                // never longer than the name's.
                let ttl = s.attr_ttl(&e);
                if reply.add(INodeNo(e.ino), next, name, &ttl, &s.attr(&e), Generation(0)) {
                    break;
                }
                // The kernel counts each entry but `.` and `..` as a lookup.
                if name != "." && name != ".." {
                    s.tree.hand_out(e.ino);
                }
            }
            reply.ok();
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, crate::naming::NAME_MAX as u32, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // Permission bits are checked by the kernel (default_permissions);
        // here only writes are refused.
        if mask.contains(AccessFlags::W_OK) {
            return read_only!(reply);
        }
        reply.ok();
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        // ENOSYS makes the kernel stop asking for the life of the mount.
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn setattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        read_only!(reply)
    }

    fn mknod(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _r: u32,
        reply: ReplyEntry,
    ) {
        read_only!(reply)
    }

    fn mkdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        read_only!(reply)
    }

    fn unlink(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        read_only!(reply)
    }

    fn rmdir(&self, _req: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        read_only!(reply)
    }

    fn symlink(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _t: &std::path::Path,
        reply: ReplyEntry,
    ) {
        read_only!(reply)
    }

    fn rename(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _f: RenameFlags,
        reply: ReplyEmpty,
    ) {
        read_only!(reply)
    }

    fn link(&self, _req: &Request, _i: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        read_only!(reply)
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _wf: WriteFlags,
        _flags: OpenFlags,
        _lo: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        read_only!(reply)
    }

    fn create(
        &self,
        _req: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _f: i32,
        reply: ReplyCreate,
    ) {
        read_only!(reply)
    }

    fn setxattr(
        &self,
        _req: &Request,
        _i: INodeNo,
        _n: &OsStr,
        _v: &[u8],
        _f: i32,
        _p: u32,
        reply: ReplyEmpty,
    ) {
        read_only!(reply)
    }

    fn removexattr(&self, _req: &Request, _i: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        read_only!(reply)
    }

    fn fallocate(
        &self,
        _req: &Request,
        _i: INodeNo,
        _fh: FileHandle,
        _o: u64,
        _l: u64,
        _m: i32,
        reply: ReplyEmpty,
    ) {
        read_only!(reply)
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ii: INodeNo,
        _fi: FileHandle,
        _oi: u64,
        _io: INodeNo,
        _fo: FileHandle,
        _oo: u64,
        _len: u64,
        _f: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        read_only!(reply)
    }
}

/// A `lookup`: the entry, with the reference the kernel will count held
/// by a guard, so an operation cut by its deadline after the tree took
/// the reference (revalidation may wait on Vault) does not leak it.
async fn lookup<S: SecretStore>(
    s: Arc<Shared<S>>,
    parent: u64,
    name: Vec<u8>,
) -> Result<Held, FsError> {
    let e = s.tree.held(s.tree.lookup(parent, &name).await?);
    if e.kind == Kind::Dir {
        s.revalidate(e.ino).await;
    }
    Ok(e)
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CachePolicy;
    use crate::store::memory::{Fault, MemoryStore, Op};
    use crate::tree::ROOT_INO;

    /// One folder `a` (holding a secret `s`) in mount `secret`.
    fn store() -> Arc<MemoryStore> {
        let store = MemoryStore::new();
        store
            .kv2("secret")
            .put("secret", "a/s", serde_json::json!({}));
        Arc::new(store)
    }

    /// The adapter's shared state over `store`, with one TTL for the
    /// daemon and the kernel.
    fn shared(store: Arc<MemoryStore>, ttl: Duration, op_timeout: Duration) -> Shared<MemoryStore> {
        let policy = CachePolicy {
            ttl,
            stale_if_error: Duration::ZERO,
            max_entries: 100,
            max_bytes: 1 << 20,
        };
        Shared {
            tree: Arc::new(Tree::new(store, policy)),
            opts: FsOptions {
                uid: 0,
                gid: 0,
                file_mode: 0o400,
                dir_mode: 0o500,
                ttl,
                op_timeout,
            },
            kernel: KernelCache::new(ttl),
            streams: Mutex::default(),
        }
    }

    /// A lookup whose revalidation waits on Vault past the operation's
    /// deadline has already taken the inode reference the kernel would
    /// count; the guard must release it, as the kernel, which got no
    /// entry, forgets only what it was given.
    #[tokio::test]
    async fn a_lookup_cut_by_its_deadline_leaves_no_reference() {
        let store = store();
        let s = Arc::new(shared(
            store.clone(),
            Duration::from_millis(50),
            Duration::from_millis(200),
        ));
        let tree = s.tree.clone();
        let mount = tree.lookup(ROOT_INO, b"secret").await.unwrap().ino;
        // The kernel looked `a` up (one reference) and listed it.
        let a = tree.lookup(mount, b"a").await.unwrap().ino;
        s.note_served(a, &tree.readdir(a, false).await.unwrap());
        // The listing it holds expires; Vault stops answering for `a`.
        tokio::time::sleep(Duration::from_millis(100)).await;
        store.fail(Op::List, "secret", "a", Fault::Hang);
        let cut = tokio::time::timeout(
            Duration::from_millis(200),
            lookup(s.clone(), mount, b"a".to_vec()),
        )
        .await;
        assert!(cut.is_err(), "the revalidation should have hung");
        assert!(
            tree.forget(a, 1),
            "a reference leaked: the inode outlived its last FORGET"
        );
    }

    /// A directory's `served` record must go with its inode. When the
    /// kernel forgets a directory while a listing of its parent (a
    /// directory stream, `Streams`) still holds it, FORGET does not drop
    /// the inode; the listing's drop does, later, and the record must go
    /// then too: else one more stays for good per directory per walk under
    /// memory pressure (inode numbers are never reused).
    #[tokio::test]
    async fn served_records_do_not_outlive_their_inodes() {
        let s = shared(store(), Duration::from_secs(60), Duration::from_secs(5));
        let tree = s.tree.clone();
        let mount = tree.lookup(ROOT_INO, b"secret").await.unwrap().ino;
        for _ in 0..5000 {
            // A stream of the mount's root holds `a`; the kernel looks
            // `a` up, lists it, and forgets it.
            let parent = tree.readdir(mount, false).await.unwrap();
            let a = tree.lookup(mount, b"a").await.unwrap().ino;
            s.note_served(a, &tree.readdir(a, false).await.unwrap());
            s.forget(a, 1);
            drop(parent);
            assert!(tree.node(a).is_none());
        }
        let held = s.kernel.records();
        assert!(held < 2500, "{held} records kept for no live directory");
    }
}
