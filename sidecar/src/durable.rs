//! File operations that survive a power cut once they return, not only a crash of the
//! process. The kernel keeps what a killed process wrote; a power cut or a kernel crash
//! drops whatever was not synced: a file's data until `fsync` of the file, and a new,
//! renamed or removed name until `fsync` of its directory.
//!
//! Every small file of the data dir the sidecar reads back at start (`owner-id`,
//! `flush-progress`), its folders, and the files `export` and
//! `recover` write go through here.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Syncs the directory `dir` itself: the names in it (created, renamed, removed).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory a path's name lives in (`.` for a bare name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Replaces `path` with `bytes`, at once and durably: written beside (`<path>.tmp`),
/// synced, renamed over, and the directory synced. A reader, even after a power cut,
/// sees the old file or the new one, never a mix or an empty one.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    rename(&tmp, path)
}

/// Renames `from` to `to` and syncs the directories of both names.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(parent_of(to))?;
    if parent_of(from) != parent_of(to) {
        sync_dir(parent_of(from))?;
    }
    Ok(())
}

/// Creates `dir` and any missing parents, syncing the parent of each folder it made, so
/// that the folders are still there after a power cut.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent_of(dir)),
        // Made meanwhile by someone else: theirs to sync.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Copies `from` to `to` and syncs the copy and its directory.
pub fn copy(from: &Path, to: &Path) -> io::Result<u64> {
    let n = fs::copy(from, to)?;
    File::open(to)?.sync_all()?;
    sync_dir(parent_of(to))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_leaves_the_new_file_whole_and_nothing_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flushed-lsn");
        replace(&path, b"12").unwrap();
        replace(&path, b"345").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"345");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("flushed-lsn")]);
    }

    #[test]
    fn create_dir_all_makes_every_missing_folder_and_accepts_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all(&deep).unwrap();
        let file = dir.path().join("a/file");
        fs::write(&file, b"x").unwrap();
        assert!(create_dir_all(&file).is_err(), "a file is no folder");
    }

    #[test]
    fn rename_and_copy_across_folders() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        create_dir_all(&a).unwrap();
        create_dir_all(&b).unwrap();
        fs::write(a.join("f"), b"data").unwrap();
        assert_eq!(copy(&a.join("f"), &b.join("g")).unwrap(), 4);
        rename(&a.join("f"), &b.join("f")).unwrap();
        assert!(!a.join("f").exists());
        assert_eq!(fs::read(b.join("f")).unwrap(), b"data");
        assert_eq!(fs::read(b.join("g")).unwrap(), b"data");
    }
}
