//! Start-up recovery: replay the WAL into the backlog, so every change that is not known
//! to be in the backend is dirty again and will be (re-)flushed.
//!
//! Records at or below the flushed watermark are skipped, and so are the changes above
//! it that the flushed marks say the backend holds (an agent's up to an LSN, transfers
//! by LSN). Replay may still re-apply some the backend has (flushed just before a crash,
//! the marks not yet saved). That is fine: flushes are idempotent and never move a
//! document to an older version, so re-flushing them changes nothing.

use std::time::Instant;

use anyhow::Context;

use crate::backlog::{Backlog, FlushedMarks};
use crate::metrics as m;
use crate::model::Op;
use crate::wal::{ReplayStats, Wal, WalOptions};

/// Opens the WAL, replaying it into `backlog`; returns the flushed marks it went by, for
/// the engine to carry on.
pub fn replay(
    opts: WalOptions,
    backlog: &Backlog,
) -> anyhow::Result<(Wal, ReplayStats, FlushedMarks)> {
    let started = Instant::now();
    let dir = opts.dir.clone();
    let flushed = FlushedMarks::load(&dir);
    let opened = Wal::open(opts, |lsn, body| {
        let op = Op::decode(body).context("decode WAL operation")?;
        backlog.replay(lsn, &op, body.len() as u64, &flushed);
        Ok(())
    });
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
    Ok((wal, stats, flushed))
}
