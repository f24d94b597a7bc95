//! The FUSE shim: kernel requests in, calls to the filesystem core
//! ([`crate::fs`]) out, its plain answers turned into replies. Kept this
//! thin so that every rule the kernel sees is tested on the core, without
//! FUSE in the loop.
//!
//! What the core can answer without waiting (a read, a cached listing, a
//! directory's attributes that need no revalidation) is answered right
//! here on the FUSE thread; every other operation runs in a tokio task
//! (fuser's replies are `Send`), never polled here first: work before a
//! future's first wait (reading a token file, building a big listing from
//! cached answers) would hold the one thread every request of the mount
//! goes through. So the FUSE loop never waits on the network, and cold
//! requests overlap.
//! Each operation gets one tracing span.

use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use tokio::runtime::Handle as Runtime;
use tracing::{Instrument, Span};

use crate::error::FsError;
use crate::fs::{Attr, Caller, DirEntry, DirReplier, Kind, VaultFs};
use crate::store::SecretStore;

/// [`VaultFs`] behind the kernel's FUSE protocol.
pub struct FuseFs<S> {
    fs: Arc<VaultFs<S>>,
    rt: Runtime,
}

impl<S: SecretStore> FuseFs<S> {
    pub fn new(fs: VaultFs<S>, rt: Runtime) -> Self {
        FuseFs {
            fs: Arc::new(fs),
            rt,
        }
    }

    /// Run `f`, which replies, in a task.
    fn spawn(&self, span: Span, f: impl Future<Output = ()> + Send + 'static) {
        self.rt.spawn(f.instrument(span));
    }
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

fn caller(req: &Request) -> Caller {
    Caller {
        pid: req.pid(),
        uid: req.uid(),
        gid: req.gid(),
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File => FileType::RegularFile,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl DirReplier for ReplyDirectory {
    fn add(&mut self, e: DirEntry<'_>) -> bool {
        ReplyDirectory::add(self, INodeNo(e.ino), e.cookie, file_type(e.kind), e.name)
    }
}

impl DirReplier for ReplyDirectoryPlus {
    fn add(&mut self, e: DirEntry<'_>) -> bool {
        // Every entry of a plus stream comes with its attributes.
        let a = e.attr.expect("readdirplus entry without attributes");
        let at = file_attr(&a);
        ReplyDirectoryPlus::add(self, at.ino, e.cookie, e.name, &a.ttl, &at, Generation(0))
    }
}

/// The two directory replies, as far as a stream needs.
trait DirReply: DirReplier + Send + 'static {
    fn ok(self);
    fn error(self, e: Errno);
}

macro_rules! dir_reply {
    ($($t:ty),*) => {$(
        impl DirReply for $t {
            fn ok(self) {
                <$t>::ok(self)
            }
            fn error(self, e: Errno) {
                <$t>::error(self, e)
            }
        }
    )*};
}
dir_reply!(ReplyDirectory, ReplyDirectoryPlus);

impl<S: SecretStore> FuseFs<S> {
    /// A chunk of a directory stream; `plus`: with attributes.
    fn stream<R: DirReply>(&self, ino: INodeNo, offset: u64, plus: bool, mut reply: R) {
        let fs = self.fs.clone();
        let op = if plus { "readdirplus" } else { "readdir" };
        let span = tracing::debug_span!("fuse", op, ino = ino.0, offset);
        let answer = |reply: R, r: Result<(), FsError>| match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        };
        match span.in_scope(|| fs.readdir_now(ino.0, offset, plus, &mut reply)) {
            Some(r) => answer(reply, r),
            None => self.spawn(span, async move {
                let r = fs.readdir(ino.0, offset, plus, &mut reply).await;
                answer(reply, r)
            }),
        }
    }
}

/// Operations that would write: refused (the mount is read-only, so the
/// kernel refuses them first; this is a second line of defence).
macro_rules! read_only {
    ($($op:ident($($arg:ty),*) -> $reply:ty;)*) => {$(
        fn $op(&self, _: &Request, $(_: $arg,)* reply: $reply) {
            let _span = tracing::debug_span!("fuse", op = stringify!($op)).entered();
            reply.error(errno(&FsError::ReadOnly))
        }
    )*};
}

impl<S: SecretStore> Filesystem for FuseFs<S> {
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
        // The first open answering ENOSYS makes the kernel open every file
        // by itself from then on, with FOPEN_KEEP_CACHE (fs/fuse/file.c,
        // fuse_file_open); likewise directories, keeping listings it read
        // (FOPEN_CACHE_DIR) until the directory's mtime changes.
        let caps = config.capabilities();
        self.fs.kernel_opens(
            caps.contains(InitFlags::FUSE_NO_OPEN_SUPPORT),
            caps.contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT),
        );
        // Room for parallel reads (xargs -P, readahead) in flight at once.
        let _ = config.set_max_background(64);
        let _ = config.set_congestion_threshold(48);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (fs, name) = (self.fs.clone(), name.as_bytes().to_vec());
        let span = tracing::debug_span!("fuse", op = "lookup", parent = parent.0);
        self.spawn(span, async move {
            match fs.lookup(parent.0, &name).await {
                Ok(l) => {
                    let (attr, entry) = (file_attr(&l.attr), l.entry_ttl);
                    reply.entry_with_ttls(&l.attr.ttl, &entry, &attr, Generation(0));
                    l.handed_over();
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let span = tracing::debug_span!("fuse", op = "getattr", ino = ino.0);
        let answer = |reply: ReplyAttr, r: Result<Attr, FsError>| match r {
            Ok(a) => reply.attr(&a.ttl, &file_attr(&a)),
            Err(e) => reply.error(errno(&e)),
        };
        match span.in_scope(|| self.fs.getattr_now(ino.0)) {
            Some(r) => answer(reply, r),
            None => {
                let fs = self.fs.clone();
                self.spawn(span, async move { answer(reply, fs.getattr(ino.0).await) });
            }
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let _span = tracing::debug_span!("fuse", op = "forget", ino = ino.0).entered();
        self.fs.forget(ino.0, nlookup);
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _span = tracing::debug_span!("fuse", op = "open", ino = ino.0).entered();
        // The handle carries nothing, reads go by inode; the kernel keeps
        // the pages it read (an inode's bytes never change).
        self.fs.open(ino.0, flags.0, caller(req), move |r| match r {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(errno(&e)),
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
        let _span = tracing::debug_span!("fuse", op = "read", ino = ino.0, offset, size).entered();
        match self.fs.read(ino.0, offset, size) {
            Ok(data) => reply.data(data.as_slice()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn opendir(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let _span = tracing::debug_span!("fuse", op = "opendir", ino = ino.0).entered();
        // Directory streams need no handle: offsets are cookies, not
        // positions in a snapshot.
        let keep = FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE;
        self.fs
            .opendir(ino.0, flags.0, caller(req), move |r| match r {
                Ok(()) => reply.opened(FileHandle(0), keep),
                Err(e) => reply.error(errno(&e)),
            });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.stream(ino, offset, false, reply);
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        self.stream(ino, offset, true, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let _span = tracing::debug_span!("fuse", op = "statfs").entered();
        reply.statfs(0, 0, 0, 0, 0, 4096, crate::naming::NAME_MAX as u32, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        let _span = tracing::debug_span!("fuse", op = "access").entered();
        match self.fs.access(mask.contains(AccessFlags::W_OK)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    // Told ENOSYS once, the kernel stops asking for the life of the mount.
    fn getxattr(&self, _req: &Request, _ino: INodeNo, _n: &OsStr, _size: u32, reply: ReplyXattr) {
        let _span = tracing::debug_span!("fuse", op = "getxattr").entered();
        reply.error(errno(&FsError::NotImplemented));
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        let _span = tracing::debug_span!("fuse", op = "listxattr").entered();
        reply.error(errno(&FsError::NotImplemented));
    }

    read_only! {
        setattr(
            INodeNo, Option<u32>, Option<u32>, Option<u32>, Option<u64>, Option<TimeOrNow>,
            Option<TimeOrNow>, Option<SystemTime>, Option<FileHandle>, Option<SystemTime>,
            Option<SystemTime>, Option<SystemTime>, Option<fuser::BsdFileFlags>
        ) -> ReplyAttr;
        mknod(INodeNo, &OsStr, u32, u32, u32) -> ReplyEntry;
        mkdir(INodeNo, &OsStr, u32, u32) -> ReplyEntry;
        unlink(INodeNo, &OsStr) -> ReplyEmpty;
        rmdir(INodeNo, &OsStr) -> ReplyEmpty;
        symlink(INodeNo, &OsStr, &std::path::Path) -> ReplyEntry;
        rename(INodeNo, &OsStr, INodeNo, &OsStr, RenameFlags) -> ReplyEmpty;
        link(INodeNo, INodeNo, &OsStr) -> ReplyEntry;
        write(
            INodeNo, FileHandle, u64, &[u8], WriteFlags, OpenFlags, Option<LockOwner>
        ) -> ReplyWrite;
        create(INodeNo, &OsStr, u32, u32, i32) -> ReplyCreate;
        setxattr(INodeNo, &OsStr, &[u8], i32, u32) -> ReplyEmpty;
        removexattr(INodeNo, &OsStr) -> ReplyEmpty;
        fallocate(INodeNo, FileHandle, u64, u64, i32) -> ReplyEmpty;
        copy_file_range(
            INodeNo, FileHandle, u64, INodeNo, FileHandle, u64, u64, CopyFileRangeFlags
        ) -> ReplyWrite;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CachePolicy;
    use crate::fs::FsOptions;
    use crate::store::memory::MemoryStore;
    use crate::tree::Tree;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Work handed to a task never runs on the FUSE thread, even when it
    /// could start at once: what comes before its first wait may block
    /// (reading a token file on a hung filesystem, building a big listing).
    #[test]
    fn spawned_work_never_runs_on_the_fuse_thread() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let policy = CachePolicy {
            ttl: Duration::from_secs(1),
            stale_if_error: Duration::ZERO,
            max_entries: 10,
            max_bytes: 1 << 10,
        };
        let tree = Tree::new(Arc::new(MemoryStore::new()), policy);
        let opts = FsOptions {
            uid: 0,
            gid: 0,
            file_mode: 0o400,
            dir_mode: 0o500,
            ttl: Duration::from_secs(1),
            op_timeout: Duration::from_secs(5),
        };
        let fuse = FuseFs::new(VaultFs::new(Arc::new(tree), opts), rt.handle().clone());
        let (go, wait) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        let here = std::thread::current().id();
        // Blocks before any await: run here, it would hold this thread
        // until the wait below gives up.
        fuse.spawn(Span::none(), async move {
            let _ = wait.recv_timeout(Duration::from_secs(5));
            tx.send(std::thread::current().id()).unwrap()
        });
        go.send(()).unwrap();
        let there = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_ne!(there, here, "the FUSE thread ran a task's work");
    }
}
