//! Start-up recovery: replay the WAL into the backlog, so every change that is not known
//! to be in the backend is dirty again and will be (re-)flushed.
//!
//! Records at or below the flushed watermark are skipped, and so are the changes above
//! it that the flushed marks say the backend holds (both read from the flush progress,
//! `flush_progress`) (an agent's up to an LSN, transfers
//! by LSN). Replay may still re-apply some the backend has (flushed just before a crash,
//! the marks not yet saved). That is fine: flushes are idempotent and never move a
//! document to an older version, so re-flushing them changes nothing.

use std::time::Instant;

use anyhow::Context;

use crate::backlog::Backlog;
use crate::flush_progress::FlushProgress;
use crate::metrics as m;
use crate::model::Op;
use crate::wal::{ReplayStats, Wal, WalOptions};

/// Opens the WAL, replaying it into `backlog`; returns the flush progress it went by,
/// for the engine to carry on.
pub fn replay(
    opts: WalOptions,
    backlog: &Backlog,
) -> anyhow::Result<(Wal, ReplayStats, FlushProgress)> {
    let started = Instant::now();
    let dir = opts.dir.clone();
    let progress = FlushProgress::load(&dir);
    // An LSN the progress names was given once, even if its record never reached the log.
    let opened = Wal::open_above(
        opts,
        progress.watermark,
        progress.lsn_floor(),
        |lsn, body| {
            let op = Op::decode(body).context("decode WAL operation")?;
            backlog.replay(lsn, &op, body.len() as u64, &progress.marks);
            Ok(())
        },
    );
    let outcome = if opened.is_ok() { "ok" } else { "error" };
    metrics::counter!(m::RECOVERY_RUNS_TOTAL, "outcome" => outcome).increment(1);
    let (wal, stats) = opened.with_context(|| format!("open the WAL in {}", dir.display()))?;
    metrics::counter!(m::RECOVERY_RECORDS_TOTAL).increment(stats.records - stats.skipped);
    metrics::histogram!(m::RECOVERY_DURATION).record(started.elapsed().as_secs_f64());
    tracing::info!(
        segments = stats.segments,
        records = stats.records,
        already_flushed = stats.skipped,
        bytes = stats.bytes,
        truncated_bytes = stats.truncated_bytes,
        last_lsn = stats.last_lsn,
        dirty_agents = backlog.stats().agents,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "WAL replayed"
    );
    Ok((wal, stats, progress))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backlog::FlushBatch;
    use crate::model::tests::record;

    fn opts(dir: &std::path::Path) -> WalOptions {
        WalOptions {
            dir: dir.to_path_buf(),
            segment_bytes_max: 1 << 20,
            fsync: true,
        }
    }

    fn put(agent: &str, version: u64) -> Vec<u8> {
        Op::Put {
            record: record(agent, version).into(),
        }
        .encode()
        .unwrap()
    }

    /// The sequence, with kill -9 alone: `memory` saves to M are applied and
    /// flushed while a stalled fsync keeps them out of the log; the process dies; after
    /// the restart, `local` saves to L are acknowledged; the process dies again. L's
    /// saves must replay, by the flushed LSN and by the flushed marks alike.
    #[tokio::test]
    async fn acknowledged_writes_after_lost_memory_writes_replay() {
        for via_marks in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let backlog = Backlog::new(1 << 20);
            let (wal, _, _) = replay(opts(dir.path()), &backlog).unwrap();
            for v in 1..=3 {
                let mut a = wal.append(&put("m", v), true).unwrap();
                a.wait_durable().await.unwrap();
            }
            // M's `memory` saves 4..=61 reached the backend, never the disk.
            let mut progress = FlushProgress::default();
            if via_marks {
                let mut batch = FlushBatch::default();
                backlog.apply(61, &Op::decode(&put("m", 61)).unwrap(), 10, false);
                batch.items = backlog.take_batch(10, u64::MAX).items;
                progress.marks.note(&batch);
            } else {
                progress.watermark = 61;
            }
            progress.save(dir.path()).unwrap();
            drop(wal); // the kill: nothing more is written

            let backlog = Backlog::new(1 << 20);
            let (wal, _, _) = replay(opts(dir.path()), &backlog).unwrap();
            // L's, and M's own (the marks are per agent).
            for v in 1..=10 {
                let mut a = wal.append(&put("l", v), true).unwrap();
                a.wait_durable().await.unwrap();
                let mut a = wal.append(&put("m", 61 + v), true).unwrap();
                a.wait_durable().await.unwrap();
            }
            drop(wal);

            let backlog = Backlog::new(1 << 20);
            let (_, stats, _) = replay(opts(dir.path()), &backlog).unwrap();
            assert_eq!(
                (
                    backlog.get("l").map(|c| c.version()),
                    backlog.get("m").map(|c| c.version())
                ),
                (Some(10), Some(71)),
                "the acknowledged saves replay (via marks: {via_marks}; {stats:?})"
            );
        }
    }
}
