//! A fault-injecting FUSE filesystem for power-loss tests (dev only).
//!
//! It keeps, in memory, a **durable image** and, apart from it, everything not yet made
//! durable: file data and sizes until `fsync`/`fdatasync` of the file, directory entries
//! until `fsync` of their directory. Readers always see the latest (volatile) view. A
//! seeded **power cut** ([`FaultFs::cut`]) replaces that view by a new durable image: the
//! old one plus some of what was not durable, as the [`CutMode`] says. The rules are in
//! [`model`]; the modes in [`CutMode`]; the kernel side in [`fuse`].
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! use agentstate_faultfs::{CutMode, FaultFs};
//! let dir = tempfile::tempdir()?;
//! let fs = FaultFs::mount(dir.path())?;
//! std::fs::write(dir.path().join("f"), b"not synced")?;
//! // Kill (SIGKILL) and reap every process writing to the mount first.
//! let report = fs.cut(CutMode::DropAll, 1);
//! assert!(!dir.path().join("f").exists());
//! println!("{report}");
//! # Ok(()) }
//! ```
//!
//! Mounting needs root (it calls mount(2) itself, through fuser's pure-Rust mount; no
//! libfuse, no `fusermount3`) and `/dev/fuse`.
//!
//! Hazards for the caller:
//! - Stop every writer before [`FaultFs::cut`]: SIGKILL the process and wait for it. A
//!   process killed mid-`write(2)` may have had part of it reach the model; that part is
//!   then unsynced like any other write, which is what a real power cut does too.
//! - Handles opened before a cut answer `EIO` afterwards (read, write, fsync, readdir);
//!   closing them is fine. Open the files again.
//! - Everything lives in this process's memory, and files are limited to 1 GiB.

pub mod cut;
pub mod fuse;
pub mod image;
pub mod model;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use fuser::{BackgroundSession, Config, INodeNo, MountOption};

pub use cut::{CutMode, CutReport};
pub use image::{Image, Ino, Kind, PAGE, ROOT};
pub use model::{Model, SetAttr, Stats};

/// A mounted fault-injecting filesystem. Dropping it unmounts (lazily, if something on
/// it is still open).
pub struct FaultFs {
    model: Arc<Mutex<Model>>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
}

impl FaultFs {
    /// Mounts an empty filesystem at `mountpoint` (an existing, empty directory) and
    /// serves it from a background thread.
    pub fn mount(mountpoint: impl AsRef<Path>) -> io::Result<FaultFs> {
        let mountpoint = mountpoint.as_ref().to_path_buf();
        if !Path::new("/dev/fuse").exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "faultfs: /dev/fuse is missing: the machine needs the fuse kernel module \
                 (modprobe fuse) and, in a container, the device passed in",
            ));
        }
        let model = Arc::new(Mutex::new(Model::new()));
        let adapter = fuse::Adapter {
            model: model.clone(),
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("faultfs".into()),
            MountOption::Subtype("faultfs".into()),
        ];
        let session = fuser::spawn_mount(adapter, &mountpoint, &config).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "faultfs: mounting at {} failed: {e}. Mounting needs root (mount(2) on \
                     /dev/fuse); a non-root user would need fusermount3 (Debian: fuse3)",
                    mountpoint.display()
                ),
            )
        })?;
        Ok(FaultFs {
            model,
            session: Some(session),
            mountpoint,
        })
    }

    /// From now on, answers directory fsyncs with success and makes nothing durable: a
    /// program's missing directory fsync, for a harness to show it would notice one.
    pub fn ignore_dir_fsyncs(&self) {
        self.model().ignore_dir_fsyncs();
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts the power (see [`CutMode`]) and returns what was lost. Atomic with respect
    /// to FUSE requests: it holds the model lock, so each request happens wholly before
    /// or wholly after it. The mount stays and serves the new image, as after a reboot
    /// and a remount. Kill (SIGKILL) and reap every process writing here first.
    pub fn cut(&self, mode: CutMode, seed: u64) -> CutReport {
        let (report, inos) = {
            let mut m = self.model();
            let mut inos = m.volatile_inos();
            let report = m.cut(mode, seed);
            inos.extend(m.volatile_inos());
            (report, inos)
        };
        // Drop the kernel's cached pages and attributes, with the lock released: the
        // kernel may call back (a dirty mmap page written back, answered EIO).
        if let Some(session) = &self.session {
            let notifier = session.notifier();
            for ino in inos {
                // ENOENT (an inode the kernel does not hold) is not an error here.
                let _ = notifier.inval_inode(INodeNo(ino), 0, 0);
            }
        }
        report
    }

    /// Counters, and what is unsynced now.
    pub fn stats(&self) -> Stats {
        self.model().stats()
    }

    /// A copy of the durable image: what [`CutMode::DropAll`] would leave, before its
    /// garbage collection (fsynced files whose names are not durable are still in it).
    pub fn durable_snapshot(&self) -> Image {
        self.model().durable().clone()
    }

    /// The image a cut would leave, and its report, without cutting.
    pub fn preview_cut(&self, mode: CutMode, seed: u64) -> (Image, CutReport) {
        self.model().preview_cut(mode, seed)
    }

    /// Unmounts, reporting failure (Drop does the same, ignoring it).
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        match session.umount_and_join() {
            Ok(()) => Ok(()),
            Err(e) => {
                // Busy (a file still open): detach now; the kernel ends the session
                // when the last user goes, and the serving thread then exits.
                lazy_unmount(&self.mountpoint)?;
                Err(e)
            }
        }
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        let _ = self.unmount_inner();
    }
}

fn lazy_unmount(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    // Already gone is fine.
    if e.raw_os_error() == Some(libc::EINVAL) {
        return Ok(());
    }
    Err(e)
}
