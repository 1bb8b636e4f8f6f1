//! The flusher: moves the backlog into the backend in batches, then lets the WAL go.
//!
//! Every `flush_interval` (or sooner, when woken: a full batch waiting, a `remote` write)
//! it runs a round: batches of up to `flush_batch_max` dirty agents, oldest first, each
//! written in one backend call and on success dropped from the backlog, advancing the
//! flushed watermark and deleting WAL segments wholly below it. A round ends once what
//! was logged before it began is flushed, so a hot agent costs the backend one write
//! per interval, not one per batch. On failure it retries with capped, jittered
//! exponential backoff; nothing is dropped.
//!
//! The watermark is `min(oldest LSN appended but not yet applied, oldest LSN in the
//! backlog) - 1`, read in that order: a record moves from "unapplied" to "backlog", never
//! back, so reading the WAL side first cannot miss one in transit.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::backlog::{FlushBatch, FLUSH_BATCH_BYTES_MAX, FLUSH_BATCH_BYTES_MIN};
use crate::engine::{now, Engine};
use crate::metrics as m;
use crate::store::StoreError;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Runs until `shutdown` turns true, then makes a last attempt to flush everything.
pub async fn run(
    engine: Arc<Engine>,
    interval: Duration,
    batch_max: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        let wait = if failing { jitter(backoff) } else { interval };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = engine.flush_now.notified(), if !failing => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        match flush_through(&engine, batch_max, engine.wal.last_lsn()).await {
            Ok(()) => {
                failing = false;
                backoff = BACKOFF_MIN;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "flush to backend failed; retrying with backoff");
                }
                failing = true;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

/// Flushes batches until nothing logged at or before LSN `through` is left in the
/// backlog (`u64::MAX`: until it is empty), or a flush fails.
pub async fn flush_through(engine: &Engine, batch_max: usize, through: u64) -> Result<(), String> {
    loop {
        let wal_low = engine.wal.oldest_unapplied_lsn();
        if engine.backlog.oldest_lsn().is_some_and(|l| l > through) {
            advance(engine, wal_low).await;
            return Ok(());
        }
        let batch_bytes = engine.flush_batch_bytes.load(Ordering::Relaxed);
        let batch = engine.backlog.take_batch(batch_max, batch_bytes);
        if batch.is_empty() {
            advance(engine, wal_low).await;
            return Ok(());
        }
        let started = std::time::Instant::now();
        let (written, fenced, error) = write(engine, batch).await;
        for agent in &fenced {
            // Its owner's state is in the backend; what this sidecar had is stale.
            engine.forget(agent);
        }
        metrics::histogram!(m::FLUSH_DURATION).record(started.elapsed().as_secs_f64());
        metrics::counter!(m::FLUSH_BATCHES_TOTAL, "outcome" => if error.is_none() { "ok" } else { "error" })
            .increment(1);
        metrics::histogram!(m::FLUSH_BATCH_AGENTS).record(written.items.len() as f64);
        if let Some(e) = &error {
            let kind = match e {
                StoreError::Unavailable(_) => "unavailable",
                StoreError::Rejected(_) => "rejected",
                StoreError::Conflict(_) => "conflict",
            };
            metrics::counter!(m::BACKEND_ERRORS_TOTAL, "kind" => kind).increment(1);
        }
        if !written.is_empty() {
            engine.backlog.ack(&written);
            engine.note_flushed(&written);
            let wal_low = engine.wal.oldest_unapplied_lsn();
            advance(engine, wal_low).await;
            tracing::debug!(
                agents = written.items.len(),
                transfers = written.transfers.len(),
                "flushed batch"
            );
        }
        let mut st = engine
            .flush_status
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        // A batch the backend could not take in time is split; successes grow it back.
        let next_bytes = match &error {
            None => (batch_bytes * 2).min(FLUSH_BATCH_BYTES_MAX),
            Some(StoreError::Unavailable(_)) => (batch_bytes / 2).max(FLUSH_BATCH_BYTES_MIN),
            Some(StoreError::Rejected(_) | StoreError::Conflict(_)) => batch_bytes,
        };
        engine
            .flush_batch_bytes
            .store(next_bytes, Ordering::Relaxed);
        match error {
            None => {
                st.last_flush_at = Some(now());
                st.last_error = None;
                st.backend_reachable = true;
            }
            Some(e) => {
                if !written.is_empty() {
                    st.last_flush_at = Some(now());
                }
                st.last_error = Some(e.to_string());
                // A conflict is an answer: the backend is there.
                st.backend_reachable = !written.is_empty() || matches!(e, StoreError::Conflict(_));
                return Err(e.to_string());
            }
        }
    }
}

/// Writes `batch` to the backend, except what was written under a lease since lost,
/// which is kept aside (`agent_state_conflicts`). Returns what left the backlog, the
/// agents fenced off, and the first error.
async fn write(
    engine: &Engine,
    mut batch: FlushBatch,
) -> (FlushBatch, Vec<String>, Option<StoreError>) {
    let aside = match engine.fence(&mut batch).await {
        Ok(aside) => aside,
        Err(e) => return (FlushBatch::default(), Vec::new(), Some(e)),
    };
    if !aside.is_empty() {
        if let Err(e) = engine.store.keep_aside(&aside).await {
            return (FlushBatch::default(), Vec::new(), Some(e));
        }
        engine.note_set_aside(aside.items.iter(), aside.transfers.iter());
    }
    let (mut written, mut fenced, error) = engine.store.flush(batch, engine.lease_owner()).await;
    // What the backend found under a newer epoch was kept aside by the store.
    let fenced_off = |agent: &str| fenced.iter().any(|f| f == agent);
    engine.note_set_aside(
        written.items.iter().filter(|i| fenced_off(&i.agent_id)),
        written
            .transfers
            .iter()
            .filter(|t| t.op.agents().into_iter().any(fenced_off)),
    );
    fenced.extend(aside.items.iter().map(|item| item.agent_id.clone()));
    for t in &aside.transfers {
        fenced.extend(t.op.agents().into_iter().map(str::to_string));
    }
    written.items.extend(aside.items);
    written.transfers.extend(aside.transfers);
    (written, fenced, error)
}

/// Runs a write of flush progress (each one synced twice: the file, its directory) on
/// a blocking thread, not on the runtime's, which also serve requests. A failure only
/// means the next start re-flushes more.
async fn off_runtime<E: std::fmt::Display + Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> Result<(), E> + Send + 'static,
) {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot {what}; the next start re-flushes more"),
        Err(e) => tracing::warn!(error = %e, "cannot {what}; the next start re-flushes more"),
    }
}

/// Publishes the new watermark, saves the flush progress (the watermark and the marks)
/// beside the WAL, then releases WAL segments below the watermark: in that order, so that
/// a start never finds segments gone that its saved progress still needs.
async fn advance(engine: &Engine, wal_low: u64) {
    let low = engine
        .backlog
        .oldest_lsn()
        .map_or(wal_low, |b| b.min(wal_low));
    let watermark = low.saturating_sub(1);
    engine.flushed_tx.send_if_modified(|w| {
        if watermark > *w {
            *w = watermark;
            true
        } else {
            false
        }
    });
    off_runtime("save the flush progress", engine.flush_progress_saver()).await;
    if let Err(e) = engine.wal.release_through(watermark) {
        tracing::warn!(error = %e, "cannot delete flushed WAL segments");
    }
}
