//! The pure in-memory model behind the filesystem: a durable image, the volatile view
//! every reader sees, and the record of what separates them. No FUSE here; the adapter
//! in [`crate::fuse`] only translates requests into these calls, so nearly all the logic
//! is tested without a mount.
//!
//! What is durable, and when (the rules a power cut enforces):
//! - A file's **data and size** become durable on `fsync` or `fdatasync` of that file
//!   (the two are the same here: fdatasync also makes the size durable). Its metadata
//!   (mode, owner, times) goes along.
//! - A **directory entry** (create, mkdir, unlink, rmdir, rename) becomes durable on
//!   `fsync` of the directory holding it. Syncing a file never makes its name durable:
//!   a file created, written and fsynced, whose directory was never fsynced, is lost.
//! - A **rename within one directory** is one atomic operation of that directory. A
//!   **rename between two directories** is two: the new name, durable once the
//!   destination directory is fsynced, and the removal of the old name, durable once the
//!   source directory is. Sync one side only and a cut may show the file under both
//!   names, or (source synced, destination not) under neither. This is stricter than
//!   ext4, where one journal transaction carries both; a program that wants its rename to
//!   survive must sync both directories, as `sidecar/src/durable.rs` does.
//! - A name made durable for an inode that has no durable copy yet (created, never
//!   fsynced) gives an empty file, or an empty directory.
//!
//! Everything else is in the volatile view only until then, and readers always see the
//! volatile view, as a kernel's page cache would show them.
//!
//! Open handles are numbered for the whole life of the model; a power cut forgets them
//! all, so a handle opened before a cut answers `EIO` afterwards (see [`Model::check_handle`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use crate::image::{Body, Image, Ino, Kind, Meta, Node, PAGE, ROOT};

/// An errno value to answer a request with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const EFBIG: Errno = Errno(libc::EFBIG);
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
}

pub type Res<T> = Result<T, Errno>;

/// Largest file accepted (`EFBIG` past it): files live in memory.
pub const MAX_FILE_SIZE: u64 = 1 << 30;

/// Longest name accepted (`ENAMETOOLONG` past it), as on ext4.
pub const NAME_MAX: usize = 255;

/// One change to a file's bytes that is not durable yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum FileOp {
    /// A write request as the kernel sent it (one `write(2)` larger than the FUSE
    /// request limit, 1 MiB on current kernels with fuser, arrives as several).
    Write { off: u64, data: Vec<u8> },
    /// truncate, ftruncate, or the extension by fallocate.
    SetLen(u64),
}

/// What a file changed since its last fsync, relative to its durable copy (empty if it
/// has none): replaying `ops` on the durable bytes gives the volatile bytes.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileLog {
    pub ops: Vec<FileOp>,
    /// The file's size after each op.
    pub sizes: Vec<u64>,
    /// Pages (index = offset / [`PAGE`]) any op touched.
    pub dirty: BTreeSet<u64>,
}

/// A change to one directory's entries that is not durable yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DirChange {
    /// `name` now names `ino` (create, mkdir, or the new half of a cross-directory
    /// rename). Kind and metadata make an empty inode if it has no durable copy.
    Link {
        name: OsString,
        ino: Ino,
        kind: Kind,
        meta: Meta,
    },
    /// `name` is gone (unlink, rmdir, or the old half of a cross-directory rename).
    Unlink { name: OsString },
    /// A rename within the directory, atomic: `from` gone and `to` naming `ino`.
    Rename {
        from: OsString,
        to: OsString,
        ino: Ino,
        kind: Kind,
        meta: Meta,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DirOp {
    pub dir: Ino,
    pub change: DirChange,
}

impl DirOp {
    /// Applies the change to `img`. A directory with no durable copy is skipped: nothing
    /// durable names it, so nothing would reach the change.
    pub(crate) fn apply(&self, img: &mut Image) {
        let Some(Node {
            body: Body::Dir(entries),
            ..
        }) = img.nodes.get_mut(&self.dir)
        else {
            return;
        };
        let made = match &self.change {
            DirChange::Link {
                name,
                ino,
                kind,
                meta,
            } => {
                entries.insert(name.clone(), *ino);
                Some((*ino, *kind, meta))
            }
            DirChange::Unlink { name } => {
                entries.remove(name);
                None
            }
            DirChange::Rename {
                from,
                to,
                ino,
                kind,
                meta,
            } => {
                entries.remove(from);
                entries.insert(to.clone(), *ino);
                Some((*ino, *kind, meta))
            }
        };
        if let Some((ino, kind, meta)) = made {
            img.nodes
                .entry(ino)
                .or_insert_with(|| Node::empty(kind, meta.clone()));
        }
    }
}

/// An inode's attributes as `stat` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// Changes asked by `setattr` (chmod, chown, truncate, utimes); `None` leaves as is.
#[derive(Clone, Debug, Default)]
pub struct SetAttr {
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

/// Counters since the mount, and what is unsynced now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub writes: u64,
    pub bytes_written: u64,
    pub fsyncs: u64,
    pub fdatasyncs: u64,
    pub dir_fsyncs: u64,
    pub cuts: u64,
    /// Files with changes not yet fsynced.
    pub unsynced_files: u64,
    /// Write requests not yet fsynced.
    pub unsynced_writes: u64,
    /// Bytes those write requests carried.
    pub unsynced_bytes: u64,
    /// Directory changes not yet made durable.
    pub pending_dir_ops: u64,
    /// Inodes in the volatile view.
    pub files: u64,
    pub dirs: u64,
    pub open_handles: u64,
}

/// The filesystem's whole state. See the module doc for the durability rules.
#[derive(Debug)]
pub struct Model {
    pub(crate) durable: Image,
    pub(crate) volatile: Image,
    /// Unsynced changes of each file. A file absent here has its volatile bytes durable
    /// (or has no name durable at all, which a cut handles through the entries).
    pub(crate) logs: BTreeMap<Ino, FileLog>,
    /// Unsynced directory changes, all directories, in the order they happened.
    pub(crate) dir_ops: Vec<DirOp>,
    /// Volatile entries naming each inode.
    links: BTreeMap<Ino, u32>,
    /// Volatile parent of each directory.
    parents: BTreeMap<Ino, Ino>,
    /// Open file and directory handles: handle number to inode.
    handles: BTreeMap<u64, Ino>,
    /// Open handles per inode: an unlinked inode lives while open.
    open: BTreeMap<Ino, u32>,
    next_ino: Ino,
    next_fh: u64,
    /// Directory fsyncs answered but not done: a program's missing directory fsync, for
    /// tests that a harness notices one.
    dir_fsync_ignored: bool,
    pub(crate) stats: Stats,
}

impl Default for Model {
    fn default() -> Self {
        Model::new()
    }
}

impl Model {
    /// An empty filesystem: a root directory owned by this process's user, durable.
    pub fn new() -> Model {
        // SAFETY: geteuid and getegid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let img = Image::new(Meta::new(0o755, uid, gid));
        Model {
            durable: img.clone(),
            volatile: img,
            logs: BTreeMap::new(),
            dir_ops: Vec::new(),
            links: BTreeMap::new(),
            parents: BTreeMap::from([(ROOT, ROOT)]),
            handles: BTreeMap::new(),
            open: BTreeMap::new(),
            next_ino: ROOT + 1,
            next_fh: 1,
            dir_fsync_ignored: false,
            stats: Stats::default(),
        }
    }

    /// What a power cut now would start from (orphans included: fsynced inodes whose
    /// names are not durable yet).
    pub fn durable(&self) -> &Image {
        &self.durable
    }

    /// What readers see now.
    pub fn volatile(&self) -> &Image {
        &self.volatile
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.unsynced_files = self.logs.len() as u64;
        for log in self.logs.values() {
            for op in &log.ops {
                if let FileOp::Write { data, .. } = op {
                    s.unsynced_writes += 1;
                    s.unsynced_bytes += data.len() as u64;
                }
            }
        }
        s.pending_dir_ops = self.dir_ops.len() as u64;
        for node in self.volatile.nodes.values() {
            match node.kind() {
                Kind::File => s.files += 1,
                Kind::Dir => s.dirs += 1,
            }
        }
        s.open_handles = self.handles.len() as u64;
        s
    }

    /// Bytes held by files in the volatile view, and its inode count (for statfs).
    pub fn usage(&self) -> (u64, u64) {
        let bytes = self.volatile.nodes.values().map(Node::size).sum();
        (bytes, self.volatile.nodes.len() as u64)
    }

    // ---- lookups ----

    fn node(&self, ino: Ino) -> Res<&Node> {
        self.volatile.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: Ino) -> Res<&mut Node> {
        self.volatile.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn entries(&self, dir: Ino) -> Res<&BTreeMap<OsString, Ino>> {
        self.node(dir)?.entries().ok_or(Errno::ENOTDIR)
    }

    fn entries_mut(&mut self, dir: Ino) -> Res<&mut BTreeMap<OsString, Ino>> {
        match &mut self.node_mut(dir)?.body {
            Body::Dir(e) => Ok(e),
            Body::File(_) => Err(Errno::ENOTDIR),
        }
    }

    fn data_mut(&mut self, ino: Ino) -> Res<&mut Vec<u8>> {
        match &mut self.node_mut(ino)?.body {
            Body::File(d) => Ok(d),
            Body::Dir(_) => Err(Errno::EISDIR),
        }
    }

    pub fn getattr(&self, ino: Ino) -> Res<Attr> {
        let node = self.node(ino)?;
        let nlink = match node.kind() {
            Kind::Dir => 2,
            Kind::File => self.links.get(&ino).copied().unwrap_or(0),
        };
        Ok(Attr {
            ino,
            kind: node.kind(),
            size: node.size(),
            perm: node.meta.perm,
            nlink,
            uid: node.meta.uid,
            gid: node.meta.gid,
            atime: node.meta.atime,
            mtime: node.meta.mtime,
            ctime: node.meta.ctime,
        })
    }

    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Res<Attr> {
        let ino = *self.entries(parent)?.get(name).ok_or(Errno::ENOENT)?;
        self.getattr(ino)
    }

    /// The entries of `dir`, `.` and `..` first, for `readdir` on handle `fh`.
    pub fn readdir(&self, fh: u64, dir: Ino) -> Res<Vec<(Ino, Kind, OsString)>> {
        self.check_handle(fh, dir)?;
        let entries = self.entries(dir)?;
        let parent = self.parents.get(&dir).copied().unwrap_or(ROOT);
        let mut out = vec![
            (dir, Kind::Dir, OsString::from(".")),
            (parent, Kind::Dir, OsString::from("..")),
        ];
        for (name, &ino) in entries {
            if let Ok(node) = self.node(ino) {
                out.push((ino, node.kind(), name.clone()));
            }
        }
        Ok(out)
    }

    // ---- handles ----

    /// Opens `ino` (file or directory) and returns a handle number.
    pub fn open(&mut self, ino: Ino) -> Res<u64> {
        self.node(ino)?;
        let fh = self.next_fh;
        self.next_fh += 1;
        self.handles.insert(fh, ino);
        *self.open.entry(ino).or_insert(0) += 1;
        Ok(fh)
    }

    /// Closes a handle. A handle from before a power cut is ignored.
    pub fn release(&mut self, fh: u64) {
        let Some(ino) = self.handles.remove(&fh) else {
            return;
        };
        if let Some(n) = self.open.get_mut(&ino) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&ino);
            }
        }
        self.forget_if_unused(ino);
    }

    /// `EIO` for a handle this model did not hand out since the last power cut: it was
    /// opened on the filesystem as it was before the cut, which no longer exists.
    pub fn check_handle(&self, fh: u64, ino: Ino) -> Res<()> {
        match self.handles.get(&fh) {
            Some(&h) if h == ino => Ok(()),
            _ => Err(Errno::EIO),
        }
    }

    // ---- directory changes ----

    fn check_name(name: &OsStr) -> Res<()> {
        let bytes = name.as_encoded_bytes();
        if bytes.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if bytes.is_empty() || bytes.contains(&b'/') || name == "." || name == ".." {
            return Err(Errno::EINVAL);
        }
        Ok(())
    }

    fn touch_dir(&mut self, dir: Ino) {
        if let Some(n) = self.volatile.nodes.get_mut(&dir) {
            let now = SystemTime::now();
            n.meta.mtime = now;
            n.meta.ctime = now;
        }
    }

    /// Creates an empty file or directory `name` in `parent` (create, mknod, mkdir).
    pub fn create(
        &mut self,
        parent: Ino,
        name: &OsStr,
        kind: Kind,
        perm: u16,
        uid: u32,
        gid: u32,
    ) -> Res<Attr> {
        Self::check_name(name)?;
        if self.entries(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let meta = Meta::new(perm & 0o7777, uid, gid);
        self.volatile
            .nodes
            .insert(ino, Node::empty(kind, meta.clone()));
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        self.links.insert(ino, 1);
        if kind == Kind::Dir {
            self.parents.insert(ino, parent);
        }
        self.touch_dir(parent);
        self.dir_ops.push(DirOp {
            dir: parent,
            change: DirChange::Link {
                name: name.to_owned(),
                ino,
                kind,
                meta,
            },
        });
        self.getattr(ino)
    }

    /// Removes the file `name` from `parent`.
    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> Res<()> {
        self.remove(parent, name, Kind::File)
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Res<()> {
        self.remove(parent, name, Kind::Dir)
    }

    fn remove(&mut self, parent: Ino, name: &OsStr, want: Kind) -> Res<()> {
        let ino = *self.entries(parent)?.get(name).ok_or(Errno::ENOENT)?;
        let node = self.node(ino)?;
        match (want, node.kind()) {
            (Kind::File, Kind::Dir) => return Err(Errno::EISDIR),
            (Kind::Dir, Kind::File) => return Err(Errno::ENOTDIR),
            (Kind::Dir, Kind::Dir) if node.entries().is_some_and(|e| !e.is_empty()) => {
                return Err(Errno::ENOTEMPTY)
            }
            _ => {}
        }
        self.entries_mut(parent)?.remove(name);
        self.touch_dir(parent);
        self.dir_ops.push(DirOp {
            dir: parent,
            change: DirChange::Unlink {
                name: name.to_owned(),
            },
        });
        self.drop_link(ino);
        Ok(())
    }

    fn drop_link(&mut self, ino: Ino) {
        if let Some(n) = self.links.get_mut(&ino) {
            *n = n.saturating_sub(1);
        }
        self.forget_if_unused(ino);
    }

    /// Drops an inode nothing names and nothing holds open, with its unsynced changes
    /// (its durable copy, if any, stays: a cut may bring its name back).
    fn forget_if_unused(&mut self, ino: Ino) {
        if ino == ROOT
            || self.links.get(&ino).copied().unwrap_or(0) > 0
            || self.open.contains_key(&ino)
        {
            return;
        }
        self.links.remove(&ino);
        self.volatile.nodes.remove(&ino);
        self.logs.remove(&ino);
        self.parents.remove(&ino);
    }

    /// Renames `parent/name` to `newparent/newname`, replacing what was there (unless
    /// `noreplace`: `EEXIST`). See the module doc for when it is durable.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        noreplace: bool,
    ) -> Res<()> {
        Self::check_name(newname)?;
        let ino = *self.entries(parent)?.get(name).ok_or(Errno::ENOENT)?;
        self.entries(newparent)?;
        let kind = self.node(ino)?.kind();
        if parent == newparent && name == newname {
            return Ok(());
        }
        if kind == Kind::Dir {
            // Not into itself or below itself.
            let mut at = newparent;
            loop {
                if at == ino {
                    return Err(Errno::EINVAL);
                }
                match self.parents.get(&at) {
                    Some(&p) if p != at => at = p,
                    _ => break,
                }
            }
        }
        let target = self.entries(newparent)?.get(newname).copied();
        if let Some(t) = target {
            if noreplace {
                return Err(Errno::EEXIST);
            }
            if t == ino {
                return Ok(());
            }
            let tnode = self.node(t)?;
            match (kind, tnode.kind()) {
                (Kind::Dir, Kind::File) => return Err(Errno::ENOTDIR),
                (Kind::File, Kind::Dir) => return Err(Errno::EISDIR),
                (Kind::Dir, Kind::Dir) if tnode.entries().is_some_and(|e| !e.is_empty()) => {
                    return Err(Errno::ENOTEMPTY)
                }
                _ => {}
            }
        }
        let meta = self.node(ino)?.meta.clone();
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(newparent)?.insert(newname.to_owned(), ino);
        if kind == Kind::Dir {
            self.parents.insert(ino, newparent);
        }
        self.touch_dir(parent);
        self.touch_dir(newparent);
        if parent == newparent {
            self.dir_ops.push(DirOp {
                dir: parent,
                change: DirChange::Rename {
                    from: name.to_owned(),
                    to: newname.to_owned(),
                    ino,
                    kind,
                    meta,
                },
            });
        } else {
            // The new name first: a prefix of the two never loses the file.
            self.dir_ops.push(DirOp {
                dir: newparent,
                change: DirChange::Link {
                    name: newname.to_owned(),
                    ino,
                    kind,
                    meta,
                },
            });
            self.dir_ops.push(DirOp {
                dir: parent,
                change: DirChange::Unlink {
                    name: name.to_owned(),
                },
            });
        }
        if let Some(t) = target {
            self.drop_link(t);
        }
        Ok(())
    }

    // ---- file data ----

    /// Reads up to `size` bytes at `off` through handle `fh`.
    pub fn read(&self, fh: u64, ino: Ino, off: u64, size: u32) -> Res<Vec<u8>> {
        self.check_handle(fh, ino)?;
        let data = self.node(ino)?.data().ok_or(Errno::EISDIR)?;
        let len = data.len() as u64;
        let from = off.min(len) as usize;
        let to = off.saturating_add(u64::from(size)).min(len) as usize;
        Ok(data[from..to].to_vec())
    }

    /// Writes `bytes` at `off` through handle `fh`; returns the count written.
    pub fn write(&mut self, fh: u64, ino: Ino, off: u64, bytes: &[u8]) -> Res<u32> {
        self.check_handle(fh, ino)?;
        let n = u32::try_from(bytes.len()).map_err(|_| Errno::EINVAL)?;
        self.write_at(ino, off, bytes)?;
        self.stats.writes += 1;
        self.stats.bytes_written += u64::from(n);
        Ok(n)
    }

    fn write_at(&mut self, ino: Ino, off: u64, bytes: &[u8]) -> Res<()> {
        let end = off
            .checked_add(bytes.len() as u64)
            .filter(|&e| e <= MAX_FILE_SIZE)
            .ok_or(Errno::EFBIG)?;
        if bytes.is_empty() {
            return Ok(());
        }
        let data = self.data_mut(ino)?;
        let old = data.len() as u64;
        apply_write(data, off, bytes);
        let new = data.len() as u64;
        self.touch_file(ino);
        // Pages between the old end and a write past it now read as zeros: touched too.
        let first = off.min(old) / PAGE;
        self.record(
            ino,
            FileOp::Write {
                off,
                data: bytes.to_vec(),
            },
            first..end.div_ceil(PAGE),
            new,
        );
        Ok(())
    }

    fn set_len(&mut self, ino: Ino, size: u64) -> Res<()> {
        if size > MAX_FILE_SIZE {
            return Err(Errno::EFBIG);
        }
        let data = self.data_mut(ino)?;
        let old = data.len() as u64;
        if old == size {
            return Ok(());
        }
        data.resize(size as usize, 0);
        self.touch_file(ino);
        let pages = old.min(size) / PAGE..old.max(size).div_ceil(PAGE);
        self.record(ino, FileOp::SetLen(size), pages, size);
        Ok(())
    }

    fn touch_file(&mut self, ino: Ino) {
        if let Some(n) = self.volatile.nodes.get_mut(&ino) {
            let now = SystemTime::now();
            n.meta.mtime = now;
            n.meta.ctime = now;
        }
    }

    fn record(&mut self, ino: Ino, op: FileOp, pages: std::ops::Range<u64>, size: u64) {
        let log = self.logs.entry(ino).or_default();
        log.ops.push(op);
        log.sizes.push(size);
        log.dirty.extend(pages);
    }

    /// chmod, chown, truncate, utimes. `fh` is the handle of an ftruncate, if any.
    pub fn setattr(&mut self, ino: Ino, fh: Option<u64>, set: SetAttr) -> Res<Attr> {
        if let Some(fh) = fh {
            self.check_handle(fh, ino)?;
        }
        self.node(ino)?;
        if let Some(size) = set.size {
            self.set_len(ino, size)?;
        }
        let node = self.node_mut(ino)?;
        let m = &mut node.meta;
        if let Some(p) = set.perm {
            m.perm = p & 0o7777;
        }
        if let Some(u) = set.uid {
            m.uid = u;
        }
        if let Some(g) = set.gid {
            m.gid = g;
        }
        if let Some(t) = set.atime {
            m.atime = t;
        }
        if let Some(t) = set.mtime {
            m.mtime = t;
        }
        m.ctime = SystemTime::now();
        self.getattr(ino)
    }

    /// fallocate(2). Plain preallocation extends the size (zeros); `KEEP_SIZE` alone
    /// changes nothing visible; `PUNCH_HOLE|KEEP_SIZE` and `ZERO_RANGE` write zeros
    /// (logged as a write of zeros, so a cut may lose them like any write). Other modes:
    /// `EOPNOTSUPP`, on which glibc's posix_fallocate falls back to writing.
    pub fn fallocate(&mut self, fh: u64, ino: Ino, off: u64, len: u64, mode: i32) -> Res<()> {
        self.check_handle(fh, ino)?;
        if len == 0 {
            return Err(Errno::EINVAL);
        }
        let end = off
            .checked_add(len)
            .filter(|&e| e <= MAX_FILE_SIZE)
            .ok_or(Errno::EFBIG)?;
        let size = self.node(ino)?.data().ok_or(Errno::EISDIR)?.len() as u64;
        const KEEP: i32 = libc::FALLOC_FL_KEEP_SIZE;
        const PUNCH: i32 = libc::FALLOC_FL_PUNCH_HOLE;
        const ZERO: i32 = libc::FALLOC_FL_ZERO_RANGE;
        let zero = |m: &mut Model| {
            let to = end.min(size);
            if off < to {
                m.write_at(ino, off, &vec![0; (to - off) as usize])
            } else {
                Ok(())
            }
        };
        match mode {
            0 => self.set_len(ino, size.max(end)),
            KEEP => Ok(()),
            m if m == PUNCH | KEEP || m == ZERO | KEEP => zero(self),
            ZERO => {
                zero(self)?;
                self.set_len(ino, size.max(end))
            }
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    // ---- syncs ----

    /// fsync or fdatasync of a file (a directory's goes to [`Model::fsyncdir`]): its
    /// bytes, size and metadata become durable; its name does not.
    pub fn fsync(&mut self, fh: u64, ino: Ino, datasync: bool) -> Res<()> {
        self.check_handle(fh, ino)?;
        let node = self.node(ino)?.clone();
        if node.kind() == Kind::Dir {
            return self.fsyncdir(fh, ino);
        }
        self.durable.nodes.insert(ino, node);
        self.logs.remove(&ino);
        if datasync {
            self.stats.fdatasyncs += 1;
        } else {
            self.stats.fsyncs += 1;
        }
        Ok(())
    }

    /// From now on, answers directory fsyncs with success and does nothing: as if the
    /// program had left them out.
    pub fn ignore_dir_fsyncs(&mut self) {
        self.dir_fsync_ignored = true;
    }

    /// fsync of a directory: its entries (and its own metadata) become durable, every
    /// change to them since its last fsync, in order.
    pub fn fsyncdir(&mut self, fh: u64, dir: Ino) -> Res<()> {
        self.check_handle(fh, dir)?;
        let node = self.node(dir)?;
        if node.kind() != Kind::Dir {
            return Err(Errno::ENOTDIR);
        }
        if self.dir_fsync_ignored {
            return Ok(());
        }
        let meta = node.meta.clone();
        let durable = self
            .durable
            .nodes
            .entry(dir)
            .or_insert_with(|| Node::empty(Kind::Dir, meta.clone()));
        durable.meta = meta;
        let (mine, rest): (Vec<DirOp>, Vec<DirOp>) = std::mem::take(&mut self.dir_ops)
            .into_iter()
            .partition(|op| op.dir == dir);
        self.dir_ops = rest;
        for op in &mine {
            op.apply(&mut self.durable);
        }
        debug_assert_eq!(
            self.durable.node(dir).and_then(Node::entries),
            self.volatile.node(dir).and_then(Node::entries),
            "a synced directory's durable entries are its volatile ones"
        );
        self.stats.dir_fsyncs += 1;
        Ok(())
    }

    /// Replaces everything by `img` (after a power cut): the volatile view becomes the
    /// image, nothing is unsynced, every handle is forgotten.
    pub(crate) fn restart_from(&mut self, img: Image) {
        self.links = img.link_counts();
        self.parents = img.dir_parents();
        self.durable = img.clone();
        self.volatile = img;
        self.logs.clear();
        self.dir_ops.clear();
        self.handles.clear();
        self.open.clear();
        self.stats.cuts += 1;
    }
}

/// Writes `bytes` at `off`, zero-filling any gap past the end.
pub(crate) fn apply_write(data: &mut Vec<u8>, off: u64, bytes: &[u8]) {
    if bytes.is_empty() {
        return;
    }
    let off = off as usize;
    let end = off + bytes.len();
    if data.len() < end {
        data.resize(end, 0);
    }
    data[off..end].copy_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CutMode;

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    /// A model with helpers that work by path, as a test would through a mount.
    struct T(Model);

    impl T {
        fn new() -> T {
            T(Model::new())
        }
        fn dir_of(&self, path: &str) -> (Ino, String) {
            let p = std::path::Path::new(path);
            let parent = p.parent().map(|p| p.to_str().unwrap()).unwrap_or("");
            let dir = self.0.volatile.resolve(parent).unwrap();
            (dir, p.file_name().unwrap().to_str().unwrap().to_owned())
        }
        fn create(&mut self, path: &str) -> Ino {
            let (dir, n) = self.dir_of(path);
            self.0
                .create(dir, name(&n), Kind::File, 0o644, 0, 0)
                .unwrap()
                .ino
        }
        fn mkdir(&mut self, path: &str) -> Ino {
            let (dir, n) = self.dir_of(path);
            self.0
                .create(dir, name(&n), Kind::Dir, 0o755, 0, 0)
                .unwrap()
                .ino
        }
        fn ino(&self, path: &str) -> Ino {
            self.0.volatile.resolve(path).unwrap()
        }
        fn write(&mut self, path: &str, off: u64, bytes: &[u8]) {
            let ino = self.ino(path);
            let fh = self.0.open(ino).unwrap();
            self.0.write(fh, ino, off, bytes).unwrap();
            self.0.release(fh);
        }
        fn fsync(&mut self, path: &str) {
            let ino = self.ino(path);
            let fh = self.0.open(ino).unwrap();
            match self.0.node(ino).unwrap().kind() {
                Kind::File => self.0.fsync(fh, ino, false).unwrap(),
                Kind::Dir => self.0.fsyncdir(fh, ino).unwrap(),
            }
            self.0.release(fh);
        }
        fn read(&self, path: &str) -> Option<Vec<u8>> {
            self.0.volatile.read(path).map(<[u8]>::to_vec)
        }
        fn rename(&mut self, from: &str, to: &str) {
            let (d1, n1) = self.dir_of(from);
            let (d2, n2) = self.dir_of(to);
            self.0.rename(d1, name(&n1), d2, name(&n2), false).unwrap();
        }
    }

    #[test]
    fn an_ignored_directory_fsync_leaves_a_synced_file_nameless() {
        let mut t = T::new();
        t.0.ignore_dir_fsyncs();
        t.create("a");
        t.write("a", 0, b"synced");
        t.fsync("a");
        t.fsync("");
        assert_eq!(t.read("a").as_deref(), Some(&b"synced"[..]));
        t.0.cut(CutMode::DropAll, 1);
        assert_eq!(t.read("a"), None, "the name was never made durable");
    }

    #[test]
    fn unsynced_data_is_lost_and_synced_data_kept() {
        let mut t = T::new();
        t.create("a");
        t.create("b");
        t.fsync("");
        t.write("a", 0, b"synced");
        t.fsync("a");
        t.write("a", 6, b" and not");
        t.write("b", 0, b"never synced");
        assert_eq!(t.read("a").unwrap(), b"synced and not");
        let r = t.0.cut(CutMode::DropAll, 1);
        assert_eq!(t.read("a").unwrap(), b"synced");
        assert_eq!(t.read("b").unwrap(), b"");
        assert_eq!(r.unsynced_files, 2);
        assert_eq!(r.unsynced_writes, 2);
        assert_eq!(r.bytes_dropped, 8 + 12);
        assert_eq!(r.pages_dropped, 2);
        assert_eq!(t.0.stats().unsynced_files, 0);
    }

    #[test]
    fn a_synced_file_without_a_synced_name_is_lost() {
        let mut t = T::new();
        t.create("lost");
        t.write("lost", 0, b"data");
        t.fsync("lost");
        let r = t.0.cut(CutMode::DropAll, 1);
        assert_eq!(t.read("lost"), None);
        assert_eq!(r.dir_ops_dropped, 1);
        assert_eq!(r.inodes_lost, 1);

        t.create("kept");
        t.write("kept", 0, b"data");
        t.fsync("kept");
        t.fsync("");
        t.0.cut(CutMode::DropAll, 1);
        assert_eq!(t.read("kept").unwrap(), b"data");
    }

    #[test]
    fn a_name_synced_before_the_data_gives_an_empty_file() {
        let mut t = T::new();
        t.create("f");
        t.write("f", 0, b"data");
        t.fsync("");
        t.0.cut(CutMode::DropAll, 1);
        assert_eq!(t.read("f").unwrap(), b"");
    }

    #[test]
    fn rename_over_a_file_needs_the_directory_sync() {
        let mut t = T::new();
        for (synced, want) in [(false, &b"old"[..]), (true, &b"new"[..])] {
            t.create("f");
            t.write("f", 0, b"old");
            t.fsync("f");
            t.fsync("");
            t.create("f.tmp");
            t.write("f.tmp", 0, b"new");
            t.fsync("f.tmp");
            t.rename("f.tmp", "f");
            assert_eq!(t.read("f").unwrap(), b"new");
            if synced {
                t.fsync("");
            }
            t.0.cut(CutMode::DropAll, 1);
            assert_eq!(t.read("f").unwrap(), want, "dir synced: {synced}");
            assert_eq!(t.read("f.tmp"), None);
            let _ = t.0.unlink(ROOT, name("f"));
            t.fsync("");
        }
    }

    #[test]
    fn a_cross_directory_rename_is_durable_side_by_side() {
        let setup = || {
            let mut t = T::new();
            t.mkdir("a");
            t.mkdir("b");
            t.create("a/f");
            t.write("a/f", 0, b"x");
            t.fsync("a/f");
            t.fsync("a");
            t.fsync("");
            t.rename("a/f", "b/f");
            t
        };
        // Destination synced only: both names.
        let mut t = setup();
        t.fsync("b");
        t.0.cut(CutMode::DropAll, 0);
        assert_eq!(t.read("a/f").unwrap(), b"x");
        assert_eq!(t.read("b/f").unwrap(), b"x");
        assert_eq!(t.0.getattr(t.ino("a/f")).unwrap().nlink, 2);
        // Source synced only: neither.
        let mut t = setup();
        t.fsync("a");
        t.0.cut(CutMode::DropAll, 0);
        assert_eq!((t.read("a/f"), t.read("b/f")), (None, None));
        // Both: moved.
        let mut t = setup();
        t.fsync("a");
        t.fsync("b");
        t.0.cut(CutMode::DropAll, 0);
        assert_eq!((t.read("a/f"), t.read("b/f")), (None, Some(b"x".to_vec())));
    }

    #[test]
    fn directory_sync_makes_exactly_the_volatile_entries_durable() {
        let mut t = T::new();
        t.mkdir("d");
        t.create("d/x");
        t.create("d/y");
        t.rename("d/x", "d/z");
        t.0.unlink(t.ino("d"), name("y")).unwrap();
        t.mkdir("d/sub");
        t.fsync("d");
        let d = t.ino("d");
        assert_eq!(
            t.0.durable.node(d).and_then(Node::entries),
            t.0.volatile.node(d).and_then(Node::entries)
        );
        // Root not synced: d itself is not reachable after a cut.
        t.0.cut(CutMode::DropAll, 0);
        assert!(t.0.volatile.paths().is_empty());
    }

    #[test]
    fn an_unlinked_open_file_lives_until_closed() {
        let mut t = T::new();
        let ino = t.create("f");
        let fh = t.0.open(ino).unwrap();
        t.0.unlink(ROOT, name("f")).unwrap();
        t.0.write(fh, ino, 0, b"abc").unwrap();
        assert_eq!(t.0.read(fh, ino, 0, 10).unwrap(), b"abc");
        assert_eq!(t.0.getattr(ino).unwrap().nlink, 0);
        t.0.release(fh);
        assert_eq!(t.0.getattr(ino), Err(Errno::ENOENT));
    }

    #[test]
    fn handles_from_before_a_cut_answer_eio() {
        let mut t = T::new();
        let ino = t.create("f");
        t.fsync("");
        let fh = t.0.open(ino).unwrap();
        t.0.cut(CutMode::DropAll, 0);
        assert_eq!(t.0.read(fh, ino, 0, 1), Err(Errno::EIO));
        assert_eq!(t.0.write(fh, ino, 0, b"x"), Err(Errno::EIO));
        assert_eq!(t.0.fsync(fh, ino, false), Err(Errno::EIO));
        t.0.release(fh); // ignored
        let fh = t.0.open(ino).unwrap();
        assert_eq!(t.0.read(fh, ino, 0, 1).unwrap(), b"");
    }

    #[test]
    fn truncate_and_fallocate() {
        let mut t = T::new();
        let ino = t.create("f");
        t.fsync("");
        let fh = t.0.open(ino).unwrap();
        t.0.write(fh, ino, 0, &[7; 100]).unwrap();
        t.0.fallocate(fh, ino, 0, 8192, 0).unwrap();
        assert_eq!(t.0.getattr(ino).unwrap().size, 8192);
        t.0.fallocate(fh, ino, 8192, 4096, libc::FALLOC_FL_KEEP_SIZE)
            .unwrap();
        assert_eq!(t.0.getattr(ino).unwrap().size, 8192);
        t.0.fallocate(
            fh,
            ino,
            10,
            20,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        )
        .unwrap();
        let data = t.0.read(fh, ino, 0, 200).unwrap();
        assert_eq!(&data[..10], &[7; 10]);
        assert_eq!(&data[10..30], &[0; 20]);
        assert_eq!(&data[30..100], &[7; 70]);
        t.0.fallocate(fh, ino, 8000, 1000, libc::FALLOC_FL_ZERO_RANGE)
            .unwrap();
        assert_eq!(t.0.getattr(ino).unwrap().size, 9000);
        assert_eq!(
            t.0.fallocate(fh, ino, 0, 1, libc::FALLOC_FL_COLLAPSE_RANGE),
            Err(Errno::EOPNOTSUPP)
        );
        t.0.fsync(fh, ino, true).unwrap();
        let set = SetAttr {
            size: Some(50),
            ..SetAttr::default()
        };
        t.0.setattr(ino, Some(fh), set).unwrap();
        t.0.release(fh);
        let data = t.read("f").unwrap();
        assert_eq!((data.len(), data[9], data[10], data[30]), (50, 7, 0, 7));
        t.0.cut(CutMode::DropAll, 0);
        // The truncate was not synced: the fdatasynced 9000 bytes are back.
        assert_eq!(t.read("f").unwrap().len(), 9000);
    }

    #[test]
    fn rename_refuses_what_posix_refuses() {
        let mut t = T::new();
        let d = t.mkdir("d");
        t.mkdir("d/e");
        t.create("d/e/f");
        t.create("g");
        assert_eq!(
            t.0.rename(ROOT, name("d"), d, name("x"), false),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            t.0.rename(ROOT, name("g"), ROOT, name("d"), false),
            Err(Errno::EISDIR)
        );
        assert_eq!(
            t.0.rename(ROOT, name("d"), ROOT, name("g"), false),
            Err(Errno::ENOTDIR)
        );
        t.mkdir("h");
        assert_eq!(
            t.0.rename(ROOT, name("h"), d, name("e"), false),
            Err(Errno::ENOTEMPTY)
        );
        assert_eq!(
            t.0.rename(ROOT, name("g"), d, name("e"), true),
            Err(Errno::EEXIST)
        );
        assert_eq!(t.0.rmdir(ROOT, name("d")), Err(Errno::ENOTEMPTY));
        assert_eq!(t.0.unlink(ROOT, name("d")), Err(Errno::EISDIR));
        assert_eq!(
            t.0.create(ROOT, name("g"), Kind::File, 0o644, 0, 0),
            Err(Errno::EEXIST)
        );
        let long = "x".repeat(256);
        assert_eq!(
            t.0.create(ROOT, name(&long), Kind::File, 0o644, 0, 0),
            Err(Errno::ENAMETOOLONG)
        );
    }
}
