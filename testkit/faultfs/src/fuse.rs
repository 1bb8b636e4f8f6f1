//! The fuser adapter: each FUSE request takes the model lock, makes one [`Model`] call,
//! and answers with its result or errno. Nothing here decides what is durable.
//!
//! Kernel caching, and why it stays out of the way:
//! - Attributes and entries are given a time-to-live of zero, so the kernel asks again
//!   on every path walk and `stat`; after a cut it sees the new image at once.
//! - Files are opened without `FOPEN_KEEP_CACHE` (the kernel drops its page cache on
//!   each open) and without `direct_io` (so `mmap`, which SQLite uses for its `-shm`
//!   file, works through the page cache). Without the writeback cache (fuser does not
//!   ask for it) every `write(2)` reaches the model before it returns, so the model's
//!   volatile view is what a reader sees; dirty `mmap` pages reach it on `msync`,
//!   `munmap` or the process's exit.
//! - POSIX (`fcntl`) and `flock` locks are not asked for (`FUSE_POSIX_LOCKS` is not in
//!   fuser's INIT flags), so the kernel keeps them locally: enough for processes on this
//!   one machine, which is all SQLite needs here.
//! - After a cut, [`crate::FaultFs::cut`] also tells the kernel to drop its cached pages
//!   and attributes of every inode.
//!
//! Unsupported, with the errno the kernel gets: hard links (`EPERM`), symlinks
//! (`EPERM`), special files (`EPERM`), extended attributes (`ENOSYS`), `RENAME_EXCHANGE`
//! and `RENAME_WHITEOUT` (`EINVAL`). `copy_file_range` and `lseek` `SEEK_DATA` are left to
//! the kernel's generic fallbacks.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno as FuseErrno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::image::{Kind, PAGE};
use crate::model::{Attr, Errno, Model, Res, SetAttr};

/// No kernel caching of attributes or entries.
const TTL: Duration = Duration::ZERO;

/// Reported by statfs: the volume's size (memory is the real limit).
const VOLUME_BYTES: u64 = 1 << 32;
const VOLUME_INODES: u64 = 1 << 20;

pub(crate) struct Adapter {
    pub(crate) model: Arc<Mutex<Model>>,
}

impl Adapter {
    fn model(&self) -> MutexGuard<'_, Model> {
        // A panic while holding the lock is a bug in the model; its state is still the
        // best there is, and a FUSE thread must not die of it.
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn errno(e: Errno) -> FuseErrno {
    FuseErrno::from_i32(e.0)
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: UNIX_EPOCH,
        kind: match a.kind {
            Kind::File => FileType::RegularFile,
            Kind::Dir => FileType::Directory,
        },
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: PAGE as u32,
        flags: 0,
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn entry(reply: ReplyEntry, r: Res<Attr>) {
    match r {
        Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

fn empty(reply: ReplyEmpty, r: Res<()>) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

fn perm(mode: u32, umask: u32) -> u16 {
    ((mode & !umask) & 0o7777) as u16
}

impl Filesystem for Adapter {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        entry(reply, self.model().lookup(parent.0, name));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.model().getattr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            perm: mode.map(|m| (m & 0o7777) as u16),
            uid,
            gid,
            size,
            atime: atime.map(time),
            mtime: mtime.map(time),
        };
        match self.model().setattr(ino.0, fh.map(|f| f.0), set) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(FuseErrno::EPERM);
        }
        let r = self.model().create(
            parent.0,
            name,
            Kind::File,
            perm(mode, umask),
            req.uid(),
            req.gid(),
        );
        entry(reply, r);
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.model().create(
            parent.0,
            name,
            Kind::Dir,
            perm(mode, umask),
            req.uid(),
            req.gid(),
        );
        entry(reply, r);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.model().unlink(parent.0, name));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.model().rmdir(parent.0, name));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        if !(flags - RenameFlags::RENAME_NOREPLACE).is_empty() {
            return reply.error(FuseErrno::EINVAL);
        }
        let r = self
            .model()
            .rename(parent.0, name, newparent.0, newname, noreplace);
        empty(reply, r);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.model().open(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.model().read(fh.0, ino.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.model().write(fh.0, ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.model().release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.model().fsync(fh.0, ino.0, datasync));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut m = self.model();
        let r = match m.getattr(ino.0) {
            Ok(a) if a.kind != Kind::Dir => Err(Errno::ENOTDIR),
            Ok(_) => m.open(ino.0),
            Err(e) => Err(e),
        };
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let entries = match self.model().readdir(fh.0, ino.0) {
            Ok(e) => e,
            Err(e) => return reply.error(errno(e)),
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (child, kind, name)) in entries.iter().enumerate().skip(skip) {
            let kind = match kind {
                Kind::File => FileType::RegularFile,
                Kind::Dir => FileType::Directory,
            };
            if reply.add(INodeNo(*child), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.model().release(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.model().fsyncdir(fh.0, ino.0));
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (bytes, inodes) = self.model().usage();
        let blocks = VOLUME_BYTES / PAGE;
        let free = blocks.saturating_sub(bytes.div_ceil(PAGE));
        let ffree = VOLUME_INODES.saturating_sub(inodes);
        reply.statfs(
            blocks,
            free,
            free,
            VOLUME_INODES,
            ffree,
            PAGE as u32,
            crate::model::NAME_MAX as u32,
            PAGE as u32,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        empty(reply, self.model().getattr(ino.0).map(|_| ()));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut m = self.model();
        let r = m
            .create(
                parent.0,
                name,
                Kind::File,
                perm(mode, umask),
                req.uid(),
                req.gid(),
            )
            .and_then(|a| Ok((m.open(a.ino)?, a)));
        match r {
            Ok((fh, a)) => reply.created(
                &TTL,
                &file_attr(&a),
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.model().fallocate(fh.0, ino.0, offset, length, mode),
        );
    }
}
