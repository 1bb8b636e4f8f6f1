//! How far the backend has the WAL, kept in one file beside it, `wal/flush-progress`,
//! written by the flusher only: the watermark (every record at or below it is in the
//! backend) and the flushed marks above it (each agent's changes up to an LSN, transfers
//! by LSN; see [`FlushedMarks`]).
//!
//! A start reads it to skip what the backend holds, and to number new records above every
//! LSN it names: a `memory` write can reach the backend, and so this file, without ever
//! reaching the log, and an LSN given again would make a later start take an acknowledged
//! record for one the backend holds.
//!
//! Hazards, and why one file: the two facts must be read as of one moment, so they are
//! written together, replaced at once and durably (`durable::replace`: a temporary file,
//! fsync, rename, fsync of `wal/`), with a CRC-32C over the contents. Any state a power
//! cut leaves is then one the flusher wrote. A file that is missing or fails its check
//! reads as no progress: the start replays more of the log, which is safe (flushes are
//! idempotent), and numbers above what the log holds.
//!
//! Format: a first line `agentstate-flush-progress 1 <crc32c, 8 hex digits>`, then JSON
//! `{"watermark": N, "marks": {...}}`. Versions before this file kept the two facts in
//! `wal/flushed-lsn` and `wal/flushed-marks.json`; they are read when this file is absent
//! and removed once it is written.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backlog::FlushedMarks;

const MAGIC: &str = "agentstate-flush-progress";
const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlushProgress {
    /// Every WAL record at or below this LSN is in the backend.
    pub watermark: u64,
    /// What the backend holds above the watermark.
    pub marks: FlushedMarks,
}

impl FlushProgress {
    /// The highest LSN this progress names: new records are numbered above it.
    pub fn lsn_floor(&self) -> u64 {
        self.watermark.max(self.marks.lsn_max())
    }

    fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).expect("flush progress serializes");
        let mut out = format!("{MAGIC} {VERSION} {:08x}\n", crc32c::crc32c(&body)).into_bytes();
        out.extend_from_slice(&body);
        out
    }

    fn decode(bytes: &[u8]) -> Result<FlushProgress, String> {
        let newline = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("no header line")?;
        let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| "header is not text")?;
        let body = &bytes[newline + 1..];
        let mut parts = header.split(' ');
        let (magic, version, crc) = (parts.next(), parts.next(), parts.next());
        if magic != Some(MAGIC) || parts.next().is_some() {
            return Err(format!("header {header:?} is not a flush progress header"));
        }
        if version != Some("1") {
            return Err(format!("version {version:?} is not one this sidecar reads"));
        }
        let crc = crc
            .and_then(|c| u32::from_str_radix(c, 16).ok())
            .ok_or("no checksum")?;
        if crc32c::crc32c(body) != crc {
            return Err("checksum mismatch".into());
        }
        serde_json::from_slice(body).map_err(|e| e.to_string())
    }

    /// The progress kept in the WAL folder `wal_dir`: none if there is none, or it cannot
    /// be read (logged; the start then replays more, which is safe).
    pub fn load(wal_dir: &Path) -> FlushProgress {
        let path = crate::data_dir::flush_progress(wal_dir);
        match std::fs::read(&path) {
            Ok(bytes) => FlushProgress::decode(&bytes).unwrap_or_else(|e| {
                tracing::warn!(file = %path.display(), error = %e, "ignoring unreadable flush progress");
                FlushProgress::default()
            }),
            Err(_) => FlushProgress::load_legacy(wal_dir),
        }
    }

    /// The two files older versions kept, if they are there.
    fn load_legacy(wal_dir: &Path) -> FlushProgress {
        let watermark = std::fs::read_to_string(crate::data_dir::legacy_flushed_lsn(wal_dir))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let marks = std::fs::read(crate::data_dir::legacy_flushed_marks(wal_dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        FlushProgress { watermark, marks }
    }

    /// Replaces the progress kept in `wal_dir`, durably; then removes the older
    /// versions' files (not synced: should they come back after a power cut, this file
    /// is read first).
    pub fn save(&self, wal_dir: &Path) -> std::io::Result<()> {
        crate::durable::replace(&crate::data_dir::flush_progress(wal_dir), &self.encode())?;
        for old in [
            crate::data_dir::legacy_flushed_lsn(wal_dir),
            crate::data_dir::legacy_flushed_marks(wal_dir),
        ] {
            match std::fs::remove_file(&old) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> FlushProgress {
        let mut marks = FlushedMarks::default();
        marks.agents.insert("a".into(), 70);
        marks.transfers.insert(65);
        FlushProgress {
            watermark: 61,
            marks,
        }
    }

    #[test]
    fn progress_round_trips_and_names_its_highest_lsn() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(FlushProgress::load(dir.path()), FlushProgress::default());
        let p = progress();
        p.save(dir.path()).unwrap();
        assert_eq!(FlushProgress::load(dir.path()), p);
        assert_eq!(p.lsn_floor(), 70);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["flush-progress"], "one file, no temporary left");
    }

    #[test]
    fn a_damaged_file_reads_as_no_progress() {
        let dir = tempfile::tempdir().unwrap();
        progress().save(dir.path()).unwrap();
        let path = crate::data_dir::flush_progress(dir.path());
        let good = std::fs::read(&path).unwrap();
        let mut flipped = good.clone();
        let last = flipped.len() - 2;
        flipped[last] ^= 0x01;
        for bad in [
            flipped,
            good[..good.len() / 2].to_vec(),
            Vec::new(),
            b"61".to_vec(),
            [
                &b"agentstate-flush-progress 2 00000000\n"[..],
                &good[good.len() - 10..],
            ]
            .concat(),
        ] {
            std::fs::write(&path, &bad).unwrap();
            assert_eq!(
                FlushProgress::load(dir.path()),
                FlushProgress::default(),
                "{:?}",
                String::from_utf8_lossy(&bad)
            );
        }
    }

    #[test]
    fn the_older_two_files_are_read_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = progress();
        std::fs::write(crate::data_dir::legacy_flushed_lsn(dir.path()), "61").unwrap();
        std::fs::write(
            crate::data_dir::legacy_flushed_marks(dir.path()),
            serde_json::to_vec(&p.marks).unwrap(),
        )
        .unwrap();
        assert_eq!(FlushProgress::load(dir.path()), p);
        p.save(dir.path()).unwrap();
        assert!(!crate::data_dir::legacy_flushed_lsn(dir.path()).exists());
        assert!(!crate::data_dir::legacy_flushed_marks(dir.path()).exists());
        assert_eq!(FlushProgress::load(dir.path()), p);
    }
}
