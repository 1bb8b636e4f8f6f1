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
//! | `wal/flush-progress` | `flush_progress`, by the flusher only | `durable::replace` (checksummed) |
//! | `wal/flushed-lsn`, `wal/flushed-marks.json` | older versions; read once if `flush-progress` is absent, then removed | |
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

/// How far the backend has the WAL (`flush_progress`).
pub fn flush_progress(wal_dir: &Path) -> PathBuf {
    wal_dir.join("flush-progress")
}

/// The flushed LSN, as versions before `flush-progress` kept it.
pub fn legacy_flushed_lsn(wal_dir: &Path) -> PathBuf {
    wal_dir.join("flushed-lsn")
}

/// The flushed marks, as versions before `flush-progress` kept them.
pub fn legacy_flushed_marks(wal_dir: &Path) -> PathBuf {
    wal_dir.join("flushed-marks.json")
}

/// Damaged WAL segments set aside by `recover --truncate-corrupt`.
pub fn quarantine(wal_dir: &Path) -> PathBuf {
    wal_dir.join("quarantine")
}
