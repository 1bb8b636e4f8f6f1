//! Every file and folder of the data dir, named in one place, with the one module that
//! writes each and how it is made durable:
//!
//! | path | written by | durable by |
//! |---|---|---|
//! | `LOCK` | `server` (held while a process uses the dir) | not needed: a lock |
//! | `owner-id` | `server`, once | `durable::replace` |
//! | `agentstate.db` (+ `-wal`, `-shm`) | `store::sqlite` | SQLite's own journal |
//! | `mongo-txn-session.json` | `store::mongo`, once a run | `durable::replace` |
//! | `wal/<first LSN, 20 digits>.wal` | `wal` (the writer thread) | fdatasync per batch; a new name by syncing `wal/` |
//! | `wal/flushed-lsn` | `wal`, for the flusher | `durable::replace` |
//! | `wal/flushed-marks.json` | `backlog`, for the flusher | `durable::replace` |
//! | `wal/quarantine/` | `admin recover --truncate-corrupt` | `durable::copy`, `durable::rename` |
//!
//! A `.tmp` beside a file is a replacement cut short; it is written over by the next one.

use std::path::{Path, PathBuf};

/// Held (flock) by the one process using the data dir.
pub fn lock(data_dir: &Path) -> PathBuf {
    data_dir.join("LOCK")
}

/// This sidecar's name in leases.
pub fn owner_id(data_dir: &Path) -> PathBuf {
    data_dir.join("owner-id")
}

/// The embedded store.
pub fn sqlite(data_dir: &Path) -> PathBuf {
    data_dir.join("agentstate.db")
}

/// The MongoDB store's note of its transaction session.
pub fn mongo_txn_session(data_dir: &Path) -> PathBuf {
    data_dir.join("mongo-txn-session.json")
}

/// The write-ahead log's folder.
pub fn wal(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

/// A WAL segment, by the LSN of its first record.
pub fn segment(wal_dir: &Path, first_lsn: u64) -> PathBuf {
    wal_dir.join(format!("{first_lsn:020}.wal"))
}

/// Every record through this LSN is in the backend.
pub fn flushed_lsn(wal_dir: &Path) -> PathBuf {
    wal_dir.join("flushed-lsn")
}

/// What the backend holds past the flushed LSN.
pub fn flushed_marks(wal_dir: &Path) -> PathBuf {
    wal_dir.join("flushed-marks.json")
}

/// Damaged WAL segments set aside by `recover --truncate-corrupt`.
pub fn quarantine(wal_dir: &Path) -> PathBuf {
    wal_dir.join("quarantine")
}
