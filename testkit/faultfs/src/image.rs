//! A filesystem tree held in memory: inodes by number, each a regular file (its bytes)
//! or a directory (its entries). The same type serves for the durable image (what a
//! power cut leaves) and for the volatile view (what readers see now).
//!
//! Inode numbers are never reused, not even across power cuts, so an inode number the
//! kernel still remembers names the same file or nothing.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

/// An inode number.
pub type Ino = u64;

/// The root directory's inode number (FUSE's `FUSE_ROOT_ID`).
pub const ROOT: Ino = 1;

/// The page size of the modelled page cache: the unit in which [`crate::CutMode::Pages`]
/// keeps or drops unsynced data.
pub const PAGE: u64 = 4096;

/// What an inode is. Symlinks, devices and the like are not modelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    File,
    Dir,
}

/// An inode's metadata. Made durable with the inode (file fsync, directory fsync) or
/// when its entry is made durable and the inode had no durable copy yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits (`mode & 0o7777`).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

impl Meta {
    /// Metadata of a new inode, all times now.
    pub fn new(perm: u16, uid: u32, gid: u32) -> Meta {
        let now = SystemTime::now();
        Meta {
            perm,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }
}

/// An inode's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// A regular file: its bytes; the length is the file's size.
    File(Vec<u8>),
    /// A directory: name to inode. `.` and `..` are not stored.
    Dir(BTreeMap<OsString, Ino>),
}

/// One inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub meta: Meta,
    pub body: Body,
}

impl Node {
    /// An empty file or directory.
    pub fn empty(kind: Kind, meta: Meta) -> Node {
        let body = match kind {
            Kind::File => Body::File(Vec::new()),
            Kind::Dir => Body::Dir(BTreeMap::new()),
        };
        Node { meta, body }
    }

    pub fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir(_) => Kind::Dir,
        }
    }

    /// The file's bytes, or `None` for a directory.
    pub fn data(&self) -> Option<&[u8]> {
        match &self.body {
            Body::File(d) => Some(d),
            Body::Dir(_) => None,
        }
    }

    /// The directory's entries, or `None` for a file.
    pub fn entries(&self) -> Option<&BTreeMap<OsString, Ino>> {
        match &self.body {
            Body::Dir(e) => Some(e),
            Body::File(_) => None,
        }
    }

    /// Bytes for a file; 0 for a directory.
    pub fn size(&self) -> u64 {
        self.data().map_or(0, |d| d.len() as u64)
    }
}

/// A whole tree. It may hold inodes no entry names (orphans: a file fsynced whose entry
/// is not durable yet); a power cut drops those, as fsck would.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub nodes: BTreeMap<Ino, Node>,
}

impl Image {
    /// A tree with an empty root directory.
    pub fn new(root: Meta) -> Image {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, Node::empty(Kind::Dir, root));
        Image { nodes }
    }

    pub fn node(&self, ino: Ino) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The inode named `name` in directory `dir`.
    pub fn lookup(&self, dir: Ino, name: &OsStr) -> Option<Ino> {
        self.node(dir)?.entries()?.get(name).copied()
    }

    /// The inode at `path`, relative to the root (a leading `/` is ignored).
    pub fn resolve(&self, path: impl AsRef<Path>) -> Option<Ino> {
        let mut ino = ROOT;
        for c in path.as_ref().components() {
            match c {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => ino = self.lookup(ino, name)?,
                Component::ParentDir | Component::Prefix(_) => return None,
            }
        }
        Some(ino)
    }

    /// The bytes of the file at `path`, if there is one.
    pub fn read(&self, path: impl AsRef<Path>) -> Option<&[u8]> {
        self.node(self.resolve(path)?)?.data()
    }

    /// Every path reachable from the root (the root itself excluded), with its kind.
    pub fn paths(&self) -> BTreeMap<PathBuf, Kind> {
        let mut out = BTreeMap::new();
        let mut seen = BTreeSet::from([ROOT]);
        let mut queue = VecDeque::from([(ROOT, PathBuf::new())]);
        while let Some((dir, at)) = queue.pop_front() {
            let Some(entries) = self.node(dir).and_then(Node::entries) else {
                continue;
            };
            for (name, &ino) in entries {
                let Some(node) = self.node(ino) else { continue };
                let path = at.join(name);
                out.insert(path.clone(), node.kind());
                if node.kind() == Kind::Dir && seen.insert(ino) {
                    queue.push_back((ino, path));
                }
            }
        }
        out
    }

    /// Makes the tree what a remount after a crash shows: entries naming a missing inode
    /// are removed; a directory named from two places (a cross-directory rename of which
    /// only one side was made durable) keeps the first name found breadth-first in name
    /// order and loses the others; inodes no entry reaches are dropped. Returns how many
    /// inodes were dropped.
    pub fn collect_garbage(&mut self) -> usize {
        let mut reached = BTreeSet::from([ROOT]);
        let mut queue = VecDeque::from([ROOT]);
        while let Some(dir) = queue.pop_front() {
            let names: Vec<(OsString, Ino)> = match self.node(dir).and_then(Node::entries) {
                Some(e) => e.iter().map(|(n, i)| (n.clone(), *i)).collect(),
                None => continue,
            };
            let mut drop_names = Vec::new();
            for (name, ino) in names {
                match self.node(ino).map(Node::kind) {
                    None => drop_names.push(name),
                    Some(Kind::File) => {
                        reached.insert(ino);
                    }
                    Some(Kind::Dir) => {
                        if reached.insert(ino) {
                            queue.push_back(ino);
                        } else {
                            drop_names.push(name);
                        }
                    }
                }
            }
            if let Some(Node {
                body: Body::Dir(entries),
                ..
            }) = self.nodes.get_mut(&dir)
            {
                for name in drop_names {
                    entries.remove(&name);
                }
            }
        }
        let before = self.nodes.len();
        self.nodes.retain(|ino, _| reached.contains(ino));
        before - self.nodes.len()
    }

    /// How many entries name each inode (directories' `.`/`..` not counted).
    pub fn link_counts(&self) -> BTreeMap<Ino, u32> {
        let mut links = BTreeMap::new();
        for node in self.nodes.values() {
            for &ino in node.entries().into_iter().flat_map(BTreeMap::values) {
                *links.entry(ino).or_insert(0) += 1;
            }
        }
        links
    }

    /// The parent of each directory (the root is its own parent).
    pub fn dir_parents(&self) -> BTreeMap<Ino, Ino> {
        let mut parents = BTreeMap::from([(ROOT, ROOT)]);
        for (&dir, node) in &self.nodes {
            for &ino in node.entries().into_iter().flat_map(BTreeMap::values) {
                if self.node(ino).map(Node::kind) == Some(Kind::Dir) {
                    parents.insert(ino, dir);
                }
            }
        }
        parents
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta::new(0o755, 0, 0)
    }

    fn dir_with(img: &mut Image, dir: Ino, name: &str, ino: Ino, node: Node) {
        img.nodes.insert(ino, node);
        if let Some(Node {
            body: Body::Dir(e), ..
        }) = img.nodes.get_mut(&dir)
        {
            e.insert(name.into(), ino);
        }
    }

    #[test]
    fn garbage_collection_drops_orphans_dangling_names_and_second_dir_aliases() {
        let mut img = Image::new(meta());
        dir_with(&mut img, ROOT, "a", 2, Node::empty(Kind::Dir, meta()));
        dir_with(&mut img, ROOT, "b", 3, Node::empty(Kind::Dir, meta()));
        dir_with(&mut img, 3, "a-again", 2, Node::empty(Kind::Dir, meta()));
        dir_with(&mut img, 2, "f", 4, Node::empty(Kind::File, meta()));
        // A file named twice is fine (it reads like a hard link).
        dir_with(&mut img, 3, "f2", 4, Node::empty(Kind::File, meta()));
        img.nodes.insert(9, Node::empty(Kind::File, meta())); // orphan
        if let Some(Node {
            body: Body::Dir(e), ..
        }) = img.nodes.get_mut(&ROOT)
        {
            e.insert("dangling".into(), 42);
        }
        assert_eq!(img.collect_garbage(), 1);
        let paths: Vec<_> = img.paths().into_keys().collect();
        let want: Vec<PathBuf> = ["a", "a/f", "b", "b/f2"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(paths, want);
        assert_eq!(img.link_counts().get(&4), Some(&2));
        assert_eq!(img.dir_parents().get(&2), Some(&ROOT));
    }
}
