//! The write path and the read path: everything between the HTTP handlers and the
//! WAL, backlog, cache and backend.
//!
//! A mutating call runs, under the locks of the agents it touches:
//! read the current records -> validate and build one [`Op`] -> append it to the WAL ->
//! wait for the fsync (`local`) -> apply it to the backlog and the cache -> release the
//! locks -> (`remote`: wait until the flusher has it in the backend) -> acknowledge.
//! Operations are built by the pure functions in [`ops`]; this module holds the
//! locking, reading and logging around them.
//!
//! Hazards:
//! - A request whose client goes away must not stop half-way (the record would be in the
//!   WAL but not in memory), so the critical section runs in its own task.
//! - The version of an agent this sidecar has never seen comes from the backend; if the
//!   backend is down, such a write is refused with 503 rather than guessed.
//! - Per-agent locks are striped (a fixed array), so their memory is bounded; several
//!   are always taken in stripe order, so two multi-agent calls cannot deadlock.
//!
//! The parts: this file (the engine, its locks, reads and logging), [`ops`] (building
//! operations, pure), [`state`] (saves, transitions, batches), [`history`] (the
//! transition log and the conversation), [`checkpoints`] (checkpoints, rollback,
//! replay), [`transfers`], [`threads`] (framework checkpoints), [`leases`] (ownership
//! on a shared backend), [`backup`] (export and import) and [`error`].

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentstate_protocol::{Durability, StatusResponse};
use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::{watch, Notify, OwnedMutexGuard};

use crate::backlog::Backlog;
use crate::cache::{StateCache, ThreadHeads};
use crate::config::Limits;
use crate::config::RetentionPolicy;
use crate::flush_progress::FlushProgress;
use crate::metrics as m;
use crate::model::{AgentRecord, Current, Effect, Op};
use crate::store::{Retained, Store, StoreError};
use crate::validate::AgentTypes;
use crate::wal::Wal;
use ops::Built;

mod backup;
mod checkpoints;
mod error;
mod history;
mod inspect;
mod leases;
pub mod ops;
mod state;
pub mod threads;
mod transfers;

pub use backup::{ImportOptions, Imported};
pub use error::{EngineError, EngineResult, RETRY_AFTER_SECS};
pub use inspect::TimelineCursor;
pub use leases::LeaseOptions;
pub use ops::Precondition;

/// Number of lock stripes; a power of two well above the expected concurrency.
const LOCK_STRIPES: usize = 1024;
/// Longest page of a log read.
/// Longest page of a log read.
pub const PAGE_LIMIT_MAX: u32 = 1000;
/// Highest sequence number of a log or conversation: both backends keep them as signed
/// 64-bit integers, so a page read `after` anything higher starts here (and finds nothing).
const SEQ_MAX: u64 = i64::MAX as u64;

pub struct EngineOptions {
    pub remote_timeout: Duration,
    pub flush_batch_max: usize,
    pub limits: Limits,
    /// This sidecar's identity and lease length, where the backend is shared (MongoDB).
    pub lease: Option<LeaseOptions>,
    /// Bytes of threads' latest checkpoints kept in memory.
    pub thread_cache_bytes_max: u64,
}

#[derive(Debug, Clone, Default)]
pub struct FlushStatus {
    pub last_flush_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub backend_reachable: bool,
}

/// The flushed marks the flusher keeps, and what it last saved.
struct ProgressBook {
    marks: crate::backlog::FlushedMarks,
    saved: FlushProgress,
}

pub struct Engine {
    pub(crate) wal: Wal,
    pub(crate) backlog: Backlog,
    pub(crate) cache: StateCache,
    pub(crate) thread_heads: ThreadHeads,
    pub(crate) store: Store,
    pub(crate) types: Arc<AgentTypes>,
    locks: Vec<Arc<tokio::sync::Mutex<()>>>,
    /// Leases this sidecar holds: agent -> (epoch, valid until). Bounded like the cache.
    leases: moka::sync::Cache<String, (u64, Instant)>,
    /// `remote` writes a flush set aside (a lease lost before they reached the backend):
    /// LSN -> which agents, until their callers, waiting for the flush, have answered.
    set_aside: moka::sync::Cache<u64, String>,
    /// Every WAL record at or below this LSN is in the backend.
    pub(crate) flushed_tx: watch::Sender<u64>,
    /// Wakes the flusher before its interval (full batch, `remote` write, shutdown).
    pub(crate) flush_now: Notify,
    pub(crate) flush_status: Mutex<FlushStatus>,
    /// Bytes of changes the flusher puts in one batch (adapted to the backend's pace).
    pub(crate) flush_batch_bytes: AtomicU64,
    /// The flushed marks, and the flush progress last saved beside the WAL.
    flush_progress: Arc<Mutex<ProgressBook>>,
    ready: AtomicBool,
    opts: EngineOptions,
}

/// Now, to the millisecond: BSON dates hold milliseconds, and every copy of a timestamp
/// (memory, WAL, backend) should read the same.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// A random 128-bit id, hex.
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn not_found(agent_id: &str) -> EngineError {
    EngineError::NotFound(format!("agent {agent_id} not found"))
}

impl Engine {
    pub fn new(
        wal: Wal,
        backlog: Backlog,
        progress: FlushProgress,
        cache: StateCache,
        store: Store,
        types: Arc<AgentTypes>,
        opts: EngineOptions,
    ) -> Self {
        // Replayed records are in the backlog until flushed again.
        let low = backlog
            .oldest_lsn()
            .map_or(wal.oldest_unapplied_lsn(), |b| {
                b.min(wal.oldest_unapplied_lsn())
            });
        let flushed = low.saturating_sub(1);
        Engine {
            wal,
            backlog,
            cache,
            thread_heads: ThreadHeads::new(opts.thread_cache_bytes_max),
            store,
            types,
            leases: moka::sync::Cache::new(100_000),
            // A caller waits at most `remote_timeout` for its flush.
            set_aside: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(opts.remote_timeout * 2)
                .build(),
            locks: (0..LOCK_STRIPES)
                .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                .collect(),
            flushed_tx: watch::channel(flushed).0,
            flush_now: Notify::new(),
            flush_status: Mutex::new(FlushStatus::default()),
            // Small at first: the first batches after a start complete, and their flushed
            // marks count, even if the process lives only a moment.
            flush_batch_bytes: AtomicU64::new(crate::backlog::FLUSH_BATCH_BYTES_MIN),
            flush_progress: Arc::new(Mutex::new(ProgressBook {
                marks: progress.marks.clone(),
                saved: progress,
            })),
            ready: AtomicBool::new(false),
            opts,
        }
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst) && self.wal.poisoned().is_none()
    }

    /// Why the sidecar should not get traffic, if it should not: not started, shutting
    /// down, the WAL refusing writes, or the backlog full while the backend lags.
    pub fn unready_reason(&self) -> Option<String> {
        if !self.ready.load(Ordering::SeqCst) {
            return Some("not serving (starting or shutting down)".into());
        }
        if let Some(why) = self.wal.poisoned() {
            return Some(format!("WAL refuses writes: {why}"));
        }
        // Nearly full counts as full: most writes would be refused already.
        if self.backlog.bytes() >= self.backlog.bytes_max() / 10 * 9 {
            return Some("backlog full while the backend catches up".into());
        }
        None
    }

    pub fn store_kind(&self) -> &'static str {
        self.store.kind()
    }

    pub fn flush_status(&self) -> FlushStatus {
        self.flush_status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn flushed_lsn(&self) -> u64 {
        *self.flushed_tx.borrow()
    }

    /// Notes a batch the backend took in the flushed marks, so that the next start does
    /// not replay it, even if the watermark could not move past it.
    pub(crate) fn note_flushed(&self, written: &crate::backlog::FlushBatch) {
        let mut book = self
            .flush_progress
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        book.marks.note(written);
        book.marks.prune(self.flushed_lsn());
    }

    /// The work of saving the flush progress (the watermark and the marks) if it changed
    /// since the last save; blocking (a durable replace syncs twice), for the flusher to
    /// run off the runtime's threads. Saves happen under one lock and never take the
    /// watermark back, so the file only moves forward.
    pub(crate) fn flush_progress_saver(&self) -> impl FnOnce() -> std::io::Result<()> + Send {
        let book = self.flush_progress.clone();
        let watermark = self.flushed_lsn();
        let dir = self.wal.dir().to_path_buf();
        move || {
            let mut book = book.lock().unwrap_or_else(|p| p.into_inner());
            let watermark = watermark.max(book.saved.watermark);
            book.marks.prune(watermark);
            let progress = FlushProgress {
                watermark,
                marks: book.marks.clone(),
            };
            if progress != book.saved {
                progress.save(&dir)?;
                book.saved = progress;
            }
            Ok(())
        }
    }

    /// Locks every key's stripe, in stripe order.
    pub(crate) async fn lock(&self, keys: &[&str]) -> Vec<OwnedMutexGuard<()>> {
        let mut stripes: Vec<usize> = keys
            .iter()
            .map(|k| {
                let mut h = DefaultHasher::new();
                k.hash(&mut h);
                (h.finish() as usize) % LOCK_STRIPES
            })
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.locks[s].clone().lock_owned().await);
        }
        guards
    }

    /// The agent as this sidecar knows it: unflushed changes first, then the cache, then
    /// the backend (whose answer is cached). Call with the agent's lock held when the
    /// answer feeds a write.
    pub(crate) async fn current(&self, agent_id: &str) -> EngineResult<Option<Current>> {
        if let Some(c) = self.backlog.get(agent_id) {
            return Ok(Some(c));
        }
        if let Some(c) = self.cache.get(agent_id) {
            return Ok(Some(c));
        }
        let loaded = self.store.load(agent_id).await.map_err(|e| match e {
            StoreError::Unavailable(m) => EngineError::Unavailable(format!(
                "agent {agent_id} is not cached and the backend cannot be read: {m}"
            )),
            e => e.into(),
        })?;
        let current = loaded.map(|r| Current::Live(Arc::new(r)));
        if let Some(c) = &current {
            self.cache.insert(agent_id, c.clone());
        }
        Ok(current)
    }

    /// The agent, to change it: under this sidecar's lease, as the backend holds it
    /// ([`Engine::own`]). Call with the agent's lock held.
    pub(crate) async fn current_to_change(&self, agent_id: &str) -> EngineResult<Option<Current>> {
        self.own(agent_id).await?;
        self.current(agent_id).await
    }

    /// The agent's live record, to change it (see [`Engine::current_to_change`]).
    pub(crate) async fn live_to_change(&self, agent_id: &str) -> EngineResult<Arc<AgentRecord>> {
        self.own(agent_id).await?;
        self.live(agent_id).await
    }

    /// The agent's live record, or `NotFound`.
    pub(crate) async fn live(&self, agent_id: &str) -> EngineResult<Arc<AgentRecord>> {
        match self.current(agent_id).await? {
            Some(Current::Live(r)) => Ok(r),
            _ => Err(not_found(agent_id)),
        }
    }

    /// Reads without taking the lock when memory has the answer.
    pub(crate) async fn read_live(&self, agent_id: &str) -> EngineResult<Arc<AgentRecord>> {
        let fast = self
            .backlog
            .get(agent_id)
            .or_else(|| self.cache.get(agent_id));
        match fast {
            Some(Current::Live(r)) => Ok(r),
            Some(Current::Deleted(_)) => Err(not_found(agent_id)),
            None => {
                let _guard = self.lock(&[agent_id]).await;
                self.live(agent_id).await
            }
        }
    }

    /// Logs `op` and applies it: the heart of the write path. Call under the locks of
    /// every agent it touches. Returns its LSN.
    pub(crate) async fn log(&self, op: &mut Op, durability: Durability) -> EngineResult<u64> {
        self.stamp_leases(op).await?;
        let body = op
            .encode()
            .map_err(|e| EngineError::Internal(format!("encode WAL record: {e}")))?;
        if body.len() > self.opts.limits.record_bytes_max {
            return Err(EngineError::Validation(format!(
                "the change is {} bytes, more than the {} a single change may take",
                body.len(),
                self.opts.limits.record_bytes_max
            )));
        }
        let Some(_room) = self.backlog.reserve(body.len() as u64) else {
            return Err(EngineError::Unavailable(format!(
                "backlog is full ({} bytes max) while the backend catches up",
                self.backlog.bytes_max()
            )));
        };
        let started = std::time::Instant::now();
        let mut appended = self.wal.append(&body, durability != Durability::Memory)?;
        appended.wait_durable().await?;
        metrics::histogram!(m::WAL_APPEND_DURATION).record(started.elapsed().as_secs_f64());
        self.backlog.apply(
            appended.lsn,
            op,
            body.len() as u64,
            durability == Durability::Remote,
        );
        op.for_each_effect(&mut |e| match e {
            Effect::Thread(id, change) => self.thread_heads.apply(id, change),
            Effect::Delete(id, _) => self.thread_heads.invalidate(id),
            _ => {}
        });
        self.count_transitions(op);
        for agent in op.agents() {
            if let Some(c) = op.resulting(agent) {
                self.cache.insert(agent, c);
            }
        }
        Ok(appended.lsn)
    }

    /// Counts the op's logged transitions by agent type (declared types only: the label
    /// must stay bounded) and outcome.
    fn count_transitions(&self, op: &Op) {
        // Imported entries are history, not transitions made here.
        if matches!(op, Op::Import { .. }) {
            return;
        }
        let mut types: HashMap<&str, Option<&str>> = HashMap::new();
        op.for_each_effect(&mut |e| {
            if let Effect::Record(r) = e {
                types.insert(&r.state.agent_id, r.state.agent_type.as_deref());
            }
        });
        op.for_each_effect(&mut |e| {
            let Effect::Transition(t) = e else { return };
            let agent_type = types
                .get(t.agent_id.as_str())
                .copied()
                .flatten()
                .filter(|ty| self.types.initial_state(ty).is_some())
                .map_or_else(|| "undeclared".to_string(), str::to_string);
            let outcome = match (&t.success, &t.error) {
                (true, _) => "ok",
                (false, Some(err)) if err.starts_with("aborted") => "aborted",
                (false, _) => "refused",
            };
            metrics::counter!(m::TRANSITIONS_TOTAL, "agent_type" => agent_type, "outcome" => outcome)
                .increment(1);
        });
    }

    /// Sets the gauges `/metrics` reports from the engine's own figures.
    /// The engine's figures at this moment: the one source of `/v1/status`, the gauges of
    /// `/metrics` and the inspector's durability panel.
    pub fn status(&self) -> StatusResponse {
        let (wal_segments, wal_bytes) = self.wal.size();
        let backlog = self.backlog.stats();
        let flush = self.flush_status();
        StatusResponse {
            ready: self.is_ready(),
            backend: self.store_kind().to_string(),
            backend_reachable: flush.backend_reachable,
            wal_segments,
            wal_bytes,
            wal_last_lsn: self.wal.last_lsn(),
            flushed_lsn: self.flushed_lsn(),
            backlog_agents: backlog.agents,
            backlog_bytes: backlog.bytes,
            backlog_bytes_max: self.backlog.bytes_max(),
            backlog_oldest_age_ms: backlog.oldest_age.as_millis() as u64,
            last_flush_at: flush.last_flush_at,
            last_flush_error: flush.last_error,
            cache_entries: self.cache.entries(),
            cache_bytes: self.cache.bytes(),
            leases_held: {
                // The count is eventually consistent until pending work is applied.
                self.leases.run_pending_tasks();
                self.leases.entry_count()
            },
        }
    }

    pub fn set_gauges(&self) {
        let s = self.status();
        metrics::gauge!(m::READY).set(if s.ready { 1.0 } else { 0.0 });
        metrics::gauge!(m::WAL_SEGMENTS).set(s.wal_segments as f64);
        metrics::gauge!(m::WAL_BYTES).set(s.wal_bytes as f64);
        metrics::gauge!(m::BACKLOG_AGENTS).set(s.backlog_agents as f64);
        metrics::gauge!(m::BACKLOG_BYTES).set(s.backlog_bytes as f64);
        metrics::gauge!(m::BACKLOG_BYTES_MAX).set(s.backlog_bytes_max as f64);
        metrics::gauge!(m::BACKLOG_OLDEST_AGE).set(s.backlog_oldest_age_ms as f64 / 1000.0);
        metrics::gauge!(m::CACHE_ENTRIES).set(s.cache_entries as f64);
        metrics::gauge!(m::CACHE_BYTES).set(s.cache_bytes as f64);
    }

    /// Applies a retention policy: history directly in the backend, threads'
    /// checkpoints through the WAL (see `retain_threads`).
    pub async fn retain(
        self: &Arc<Self>,
        policy: &RetentionPolicy,
        at: DateTime<Utc>,
    ) -> EngineResult<Retained> {
        let mut r = self.store.retain(policy, at).await?;
        r.thread_checkpoints = self.retain_threads(policy, at).await?;
        Ok(r)
    }

    /// Runs `work` (which locks, reads, logs) in its own task, so that once started it
    /// finishes even if the caller goes away; then waits as `durability` asks.
    pub(crate) async fn critical<T: Send + 'static>(
        self: &Arc<Self>,
        durability: Durability,
        work: impl Future<Output = EngineResult<(T, Option<u64>)>> + Send + 'static,
    ) -> EngineResult<T> {
        if !self.is_ready() {
            return Err(EngineError::Unavailable("sidecar is not ready".into()));
        }
        let (value, lsn) = tokio::spawn(work)
            .await
            .map_err(|e| EngineError::Internal(format!("write task failed: {e}")))??;
        if let Some(lsn) = lsn {
            if self.backlog.agents() >= self.opts.flush_batch_max as u64 {
                self.flush_now.notify_one();
            }
            if durability == Durability::Remote {
                self.wait_flushed(lsn).await?;
            }
        }
        Ok(value)
    }

    /// Waits until the write logged at `lsn` is in the backend; a write the flush set
    /// aside instead is a conflict.
    async fn wait_flushed(&self, lsn: u64) -> EngineResult<()> {
        self.flush_now.notify_one();
        let mut rx = self.flushed_tx.subscribe();
        let waited =
            tokio::time::timeout(self.opts.remote_timeout, rx.wait_for(|f| *f >= lsn)).await;
        match waited {
            Ok(Ok(_)) => match self.set_aside.remove(&lsn) {
                None => Ok(()),
                Some(agents) => Err(EngineError::Fenced(format!(
                    "another sidecar took {agents} over before this write reached the backend: the write is kept in agent_state_conflicts, not in the agent's state"
                ))),
            },
            _ => Err(EngineError::Unavailable(format!(
                "the write is durable in the local WAL, but the backend did not confirm it within {} ms; it will be flushed when the backend answers",
                self.opts.remote_timeout.as_millis()
            ))),
        }
    }

    /// Logs a built op; a refusal that must be logged is logged, then returned.
    async fn log_built(&self, built: Built, durability: Durability) -> EngineResult<(Op, u64)> {
        match built {
            Built::Ok(mut op) => {
                let lsn = self.log(&mut op, durability).await?;
                Ok((op, lsn))
            }
            Built::Refused(mut op, err) => {
                self.log(&mut op, durability).await?;
                Err(err)
            }
        }
    }
}
