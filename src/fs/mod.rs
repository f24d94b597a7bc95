//! The filesystem core: what every kernel request gets, as plain values.
//!
//! `crate::fuse` turns kernel requests into calls here and the results
//! into replies; nothing here knows FUSE, so every rule the kernel sees
//! (which TTLs, which mtimes, when a directory is revalidated, how streams
//! resume, which errors) is tested in process over the memory store with
//! a paused clock (`tests.rs`). Nothing here knows HTTP either: answers
//! come from the [`Tree`]. How long the kernel may keep what it is given,
//! and the mtime that tells it a listing changed, are the policy of
//! [`kernel_cache`].

use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::audit::{Access, AuditLog, Op, Source};
use crate::error::FsError;
use crate::secret::{Secret, SecretFile};
use crate::store::SecretStore;
use crate::tree::{Entry, Held, Listing, Tree};

mod kernel_cache;
mod streams;
#[cfg(test)]
mod tests;

pub use crate::tree::Kind;
use kernel_cache::KernelCache;
use streams::Streams;

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

/// An inode's attributes, and how long the kernel may keep them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Also its atime, ctime and crtime: a directory's changes when and
    /// only when the listing served of it does.
    pub mtime: SystemTime,
    pub ttl: Duration,
}

/// A name looked up: its attributes, how long the kernel may keep the name,
/// and the inode reference the kernel will count, released on drop unless
/// [`Looked::handed_over`] says the reply went out.
pub struct Looked {
    pub attr: Attr,
    pub entry_ttl: Duration,
    held: Held,
}

impl Looked {
    /// The reply carrying the entry was sent: the kernel holds the
    /// reference now (released by [`VaultFs::forget`]).
    pub fn handed_over(self) {
        self.held.hand_over()
    }
}

/// One entry of a directory stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry<'a> {
    /// Where the stream resumes after this entry (see [`Tree::cookie`]).
    pub cookie: u64,
    pub name: &'a str,
    pub ino: u64,
    pub kind: Kind,
    /// With `readdirplus` only: the entry's attributes, their TTL also
    /// the name's.
    pub attr: Option<Attr>,
}

/// Where a directory stream's entries go: a kernel reply buffer, or a test.
pub trait DirReplier {
    /// Take `e`; true when it did not fit (the stream stops before it).
    fn add(&mut self, e: DirEntry<'_>) -> bool;
}

/// Who made a request, as the kernel says: for the read audit.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Bytes a read returns: a range of a file of a secret, shared with the
/// cache rather than copied.
pub struct Data {
    secret: Arc<Secret>,
    file: SecretFile,
    range: Range<usize>,
}

impl Data {
    pub fn as_slice(&self) -> &[u8] {
        self.secret
            .content(&self.file)
            .map_or(&[][..], |c| &c[self.range.clone()])
    }
}

/// The filesystem of one mount: the tree, the kernel-cache policy and the
/// directory streams.
pub struct VaultFs<S> {
    tree: Arc<Tree<S>>,
    opts: FsOptions,
    /// What the kernel may cache, and for how long.
    kernel: KernelCache,
    /// Listings of streams in progress.
    streams: Mutex<Streams>,
    /// The kernel opens files without asking (see [`VaultFs::kernel_opens`]).
    no_open: AtomicBool,
    /// ... and directories.
    no_opendir: AtomicBool,
    /// The read audit: with it, opens are answered (each one reaches us).
    audit: Option<AuditLog>,
}

impl<S: SecretStore> VaultFs<S> {
    pub fn new(tree: Arc<Tree<S>>, opts: FsOptions) -> Self {
        VaultFs {
            tree,
            kernel: KernelCache::new(opts.ttl),
            opts,
            streams: Mutex::default(),
            no_open: AtomicBool::new(false),
            no_opendir: AtomicBool::new(false),
            audit: None,
        }
    }

    /// Record every open in `audit` (`--audit-log`).
    pub fn with_audit(mut self, audit: Option<AuditLog>) -> Self {
        self.audit = audit;
        self
    }

    /// The kernel can open files (`files`) and directories (`dirs`) by
    /// itself once an open fails with ENOSYS. Files are read by inode and
    /// directory streams need no handle, so opens then go unanswered,
    /// except those the read audit must see.
    pub fn kernel_opens(&self, files: bool, dirs: bool) {
        let audit = self.audit.as_ref();
        self.no_open
            .store(files && audit.is_none(), Ordering::Relaxed);
        self.no_opendir.store(
            dirs && !audit.is_some_and(AuditLog::listings),
            Ordering::Relaxed,
        );
    }

    /// `f`, failing with [`FsError::Timeout`] past the operation deadline.
    async fn deadline<T>(&self, f: impl Future<Output = Result<T, FsError>>) -> Result<T, FsError> {
        let limit = self.opts.op_timeout;
        tokio::time::timeout(limit, f).await.unwrap_or_else(|_| {
            tracing::warn!(
                limit_ms = limit.as_millis() as u64,
                "filesystem operation timed out"
            );
            Err(FsError::Timeout(limit))
        })
    }

    /// `name` in directory `parent`. A directory's listing that the kernel
    /// may hold and that has outlived its answers is checked first, so its
    /// attributes come with the mtime of the current listing.
    pub async fn lookup(&self, parent: u64, name: &[u8]) -> Result<Looked, FsError> {
        // The reference the kernel will count is guarded from the start, so
        // an operation cut by its deadline after the tree took it (the
        // revalidation may wait on Vault) does not leak it.
        let held = self
            .deadline(async {
                let e = self.tree.held(self.tree.lookup(parent, name).await?);
                if e.kind == Kind::Dir {
                    self.revalidate(e.ino).await;
                }
                Ok(e)
            })
            .await?;
        Ok(Looked {
            attr: self.attr(&held),
            entry_ttl: self.kernel.entry_ttl(&held),
            held,
        })
    }

    /// An inode's attributes. A file inode is one content version: its
    /// attributes never change and need no request. A directory's need one
    /// only when the listing the kernel may hold has outlived its answers;
    /// if that check fails, the attributes go out with no TTL.
    pub async fn getattr(&self, ino: u64) -> Result<Attr, FsError> {
        let e = self.tree.getattr(ino)?;
        if self.stale_dir(&e) {
            let checked = self.deadline(async {
                self.revalidate(ino).await;
                Ok(())
            });
            // On a timeout the record stays stale: attr_ttl 0.
            let _ = checked.await;
        }
        Ok(self.attr(&e))
    }

    /// [`VaultFs::getattr`] when it needs no revalidation, which may wait
    /// on Vault; `None` otherwise.
    pub fn getattr_now(&self, ino: u64) -> Option<Result<Attr, FsError>> {
        match self.tree.getattr(ino) {
            Ok(e) if self.stale_dir(&e) => None,
            r => Some(r.map(|e| self.attr(&e))),
        }
    }

    /// `e` is a directory whose listing the kernel may hold has outlived
    /// its answers: its attributes go out only after a revalidation.
    fn stale_dir(&self, e: &Entry) -> bool {
        e.kind == Kind::Dir && self.kernel.stale(e.ino)
    }

    /// The stream of directory `ino` after `offset` (0: its start), into
    /// `reply` until it is full. With `plus`, each entry comes with its
    /// attributes and counts as a lookup (`.` and `..` aside).
    pub async fn readdir(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        reply: &mut impl DirReplier,
    ) -> Result<(), FsError> {
        if let Some(r) = self.readdir_now(ino, offset, plus, reply) {
            return r;
        }
        let listing = self.listing(ino, offset).await?;
        self.fill(ino, offset, plus, &listing, reply)
    }

    /// [`VaultFs::readdir`] when its listing needs no wait (see
    /// [`VaultFs::listing_now`]); `None`, with `reply` untouched, otherwise.
    pub fn readdir_now(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        reply: &mut impl DirReplier,
    ) -> Option<Result<(), FsError>> {
        let listing = self.listing_now(ino, offset)?;
        Some(listing.and_then(|l| self.fill(ino, offset, plus, &l, reply)))
    }

    /// Directory `ino`'s stream after `offset` from `listing`, into
    /// `reply` until it is full.
    fn fill(
        &self,
        ino: u64,
        offset: u64,
        plus: bool,
        listing: &Listing,
        reply: &mut impl DirReplier,
    ) -> Result<(), FsError> {
        let me = self.tree.getattr(ino)?;
        let dots = [(1, "."), (2, "..")]
            .into_iter()
            .filter(|(c, _)| *c > offset);
        let dots = dots.map(|(c, n)| (c, n, &me));
        for (cookie, name, e) in dots.chain(listing.after(offset)) {
            let entry = DirEntry {
                cookie,
                name,
                ino: e.ino,
                kind: e.kind,
                attr: plus.then(|| self.attr(e)),
            };
            if reply.add(entry) {
                break;
            }
            if plus && cookie > 2 {
                self.tree.hand_out(e.ino);
            }
        }
        Ok(())
    }

    /// A directory's listing for a stream at `offset` when it needs no
    /// wait: the one the stream's earlier chunks came from while its
    /// answers are fresh, or one built from cached answers
    /// ([`Tree::readdir_cached`]); `None` otherwise. The start of a stream
    /// is always built anew and also fetches the children a walker visits
    /// next.
    fn listing_now(&self, ino: u64, offset: u64) -> Option<Result<Arc<Listing>, FsError>> {
        let prefetch = offset == 0;
        if !prefetch {
            if let Some(l) = self.streams.lock().expect("streams").get(ino) {
                return Some(Ok(l));
            }
        }
        let r = self.tree.readdir_cached(ino, prefetch)?;
        Some(r.map(|l| self.served(ino, l)))
    }

    /// The listing for a stream at `offset` built through the tree, which
    /// may ask Vault.
    async fn listing(&self, ino: u64, offset: u64) -> Result<Arc<Listing>, FsError> {
        let listing = self.deadline(self.tree.readdir(ino, offset == 0)).await?;
        Ok(self.served(ino, listing))
    }

    /// Record `listing` as served of `ino`, and keep it for the stream's
    /// later chunks.
    fn served(&self, ino: u64, listing: Listing) -> Arc<Listing> {
        let listing = Arc::new(listing);
        self.note_served(ino, &listing);
        let mut streams = self.streams.lock().expect("streams");
        streams.put(ino, listing.clone());
        listing
    }

    /// `size` bytes of file inode `ino` from `offset` (fewer at its end).
    /// An inode is one content version: its bytes answer every read of it,
    /// from any handle, at any time, with no request.
    pub fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Data, FsError> {
        let (secret, file) = self.tree.content(ino)?;
        let len = secret.content(&file).map_or(0, |c| c.len());
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(len);
        let end = start.saturating_add(size as usize).min(len);
        Ok(Data {
            secret,
            file,
            range: start..end,
        })
    }

    /// Open file `ino` with open(2) `flags`; `done` gets the answer once
    /// the read audit, if any, has identified the caller.
    pub fn open(
        &self,
        ino: u64,
        flags: i32,
        caller: Caller,
        done: impl FnOnce(Result<(), FsError>) + Send + 'static,
    ) {
        // The mount is read-only, so the kernel refuses writing opens
        // before they get here; this is a second line of defence.
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            let e = FsError::ReadOnly;
            return self.audit(caller, Op::Open, ino, Some(e.errno()), || done(Err(e)));
        }
        if self.no_open.load(Ordering::Relaxed) {
            return done(Err(FsError::NotImplemented));
        }
        self.audit(caller, Op::Open, ino, None, || done(Ok(())))
    }

    /// Open directory `ino`, as [`VaultFs::open`]: recorded only when the
    /// audit records listings.
    pub fn opendir(
        &self,
        ino: u64,
        flags: i32,
        caller: Caller,
        done: impl FnOnce(Result<(), FsError>) + Send + 'static,
    ) {
        if flags & libc::O_ACCMODE != libc::O_RDONLY {
            return done(Err(FsError::ReadOnly));
        }
        if self.no_opendir.load(Ordering::Relaxed) {
            return done(Err(FsError::NotImplemented));
        }
        match self.audit.as_ref().is_some_and(AuditLog::listings) {
            true => self.audit(caller, Op::List, ino, None, || done(Ok(()))),
            false => done(Ok(())),
        }
    }

    /// Whether an access(2) check passes: permission bits are checked by the
    /// kernel (default_permissions); here only writes are refused.
    pub fn access(&self, write: bool) -> Result<(), FsError> {
        match write {
            true => Err(FsError::ReadOnly),
            false => Ok(()),
        }
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        if self.tree.forget(ino, n) {
            self.kernel.forget(ino);
            self.streams.lock().expect("streams").forget(ino);
        }
    }

    /// Record an open of `ino` by `caller` (`errno`: refused with it); the
    /// audit calls `release` (the reply) once it has read who the caller is.
    fn audit(
        &self,
        caller: Caller,
        op: Op,
        ino: u64,
        errno: Option<i32>,
        release: impl FnOnce() + Send + 'static,
    ) {
        let Some(audit) = &self.audit else {
            return release();
        };
        let (path, secret) = self
            .tree
            .shown(ino)
            .unwrap_or_else(|| (format!("<inode {ino}>"), None));
        let served = errno.is_none();
        audit.record(
            Access {
                op,
                pid: caller.pid,
                uid: caller.uid,
                gid: caller.gid,
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

    fn attr(&self, e: &Entry) -> Attr {
        let (perm, nlink) = match e.kind {
            Kind::Dir => (self.opts.dir_mode, 2),
            Kind::File => (self.opts.file_mode, 1),
        };
        Attr {
            ino: e.ino,
            kind: e.kind,
            size: e.size,
            perm,
            nlink,
            uid: self.opts.uid,
            gid: self.opts.gid,
            mtime: self.kernel.mtime(e),
            ttl: self
                .kernel
                .attr_ttl(e, |ino| self.tree.dir_valid_until(ino)),
        }
    }

    /// Record a listing of `ino` the kernel may now hold.
    fn note_served(&self, ino: u64, listing: &Listing) {
        self.kernel
            .note_served(ino, listing, listing.valid_until, |ino| {
                self.tree.node(ino).is_some()
            });
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
