//! The write path and the read path: everything between the HTTP handlers and the
//! WAL, backlog, cache and backend.
//!
//! A mutating call runs, under the locks of the agents it touches:
//! read the current records -> validate and build one [`Op`] -> append it to the WAL ->
//! wait for the fsync (`local`) -> apply it to the backlog and the cache -> release the
//! locks -> (`remote`: wait until the flusher has it in the backend) -> acknowledge.
//! Operations are built by the pure functions in [`crate::ops`]; this module holds the
//! locking, reading and logging around them.
//!
//! Hazards:
//! - A request whose client goes away must not stop half-way (the record would be in the
//!   WAL but not in memory), so the critical section runs in its own task.
//! - The version of an agent this sidecar has never seen comes from the backend; if the
//!   backend is down, such a write is refused with 503 rather than guessed.
//! - Per-agent locks are striped (a fixed array), so their memory is bounded; several
//!   are always taken in stripe order, so two multi-agent calls cannot deadlock.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentstate_protocol::{
    AbortTransitionRequest, AppendMessagesResponse, BatchRequest, BatchResponse, BatchResult,
    BeginTransitionResponse, Checkpoint, CheckpointRequest, CheckpointResponse,
    CompleteTransitionRequest, Durability, Message, NewMessage, PopMessageResponse, ReplayResponse,
    SaveStateRequest, StateTransition, Transfer, TransferRequest, TransitionRequest,
    TransitionResponse,
};
use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::{watch, Notify, OwnedMutexGuard};

use crate::backlog::Backlog;
use crate::cache::{StateCache, ThreadHeads};
use crate::config::RetentionPolicy;
use crate::metrics as m;
use crate::model::{AgentRecord, Current, Effect, Op};
use crate::ops::{self, Built, Limits};
use crate::store::mongo::Lease;
use crate::store::{Retained, Store, StoreError};
use crate::validate::{self, AgentTypes};
use crate::wal::{Wal, WalError};

/// Seconds a client is told to wait (`Retry-After`) when the sidecar is overloaded.
pub const RETRY_AFTER_SECS: u64 = 1;
/// Number of lock stripes; a power of two well above the expected concurrency.
const LOCK_STRIPES: usize = 1024;
/// Longest page of a log read.
pub const PAGE_LIMIT_MAX: u32 = 1000;
/// Highest sequence number of a log or conversation: both backends keep them as signed
/// 64-bit integers, so a page read `after` anything higher starts here (and finds nothing).
const SEQ_MAX: u64 = i64::MAX as u64;
/// Most log entries a replay walks through.
const REPLAY_TRANSITIONS_MAX: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("version conflict: expected version {expected}, current is {current}")]
    VersionConflict { expected: String, current: u64 },
    #[error("{0}")]
    Conflict(String),
    /// Another sidecar owns the agent (its lease has not expired).
    #[error("{0}")]
    Fenced(String),
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<WalError> for EngineError {
    fn from(e: WalError) -> Self {
        match e {
            WalError::TooLarge(_) => EngineError::Validation(e.to_string()),
            e => EngineError::Unavailable(format!("write not accepted: {e}")),
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => EngineError::Unavailable(m),
            StoreError::Rejected(m) => EngineError::Internal(m),
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// A condition on the agent's current version (`If-Match`, `If-None-Match: *`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// The agent must exist at this version.
    Version(u64),
    /// The agent must not exist.
    Absent,
}

impl Precondition {
    pub fn from_if_match(v: Option<u64>) -> Self {
        v.map_or(Precondition::None, Precondition::Version)
    }

    pub fn check(self, current: Option<&Current>) -> EngineResult<()> {
        let live_version = current.and_then(Current::live).map(|r| r.state.version);
        let ok = match self {
            Precondition::None => true,
            Precondition::Version(v) => live_version == Some(v),
            Precondition::Absent => live_version.is_none(),
        };
        if ok {
            return Ok(());
        }
        Err(EngineError::VersionConflict {
            expected: match self {
                Precondition::Version(v) => v.to_string(),
                _ => "none (agent must not exist)".into(),
            },
            current: live_version.unwrap_or(0),
        })
    }
}

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub remote_timeout: Duration,
    pub flush_batch_max: usize,
    pub limits: Limits,
    /// This sidecar's identity and lease length, where the backend is shared (MongoDB).
    pub lease: Option<LeaseOptions>,
    /// Bytes of threads' latest checkpoints kept in memory.
    pub thread_cache_bytes_max: u64,
}

#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// Stable across restarts (kept in the data dir), so a restarted sidecar keeps its
    /// leases.
    pub owner: String,
    pub ttl: Duration,
}

/// What the flusher last saw of the backend.
#[derive(Debug, Clone, Default)]
pub struct FlushStatus {
    pub last_flush_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub backend_reachable: bool,
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
    /// Every WAL record at or below this LSN is in the backend.
    pub(crate) flushed_tx: watch::Sender<u64>,
    /// Wakes the flusher before its interval (full batch, `remote` write, shutdown).
    pub(crate) flush_now: Notify,
    pub(crate) flush_status: Mutex<FlushStatus>,
    /// Bytes of changes the flusher puts in one batch (adapted to the backend's pace).
    pub(crate) flush_batch_bytes: AtomicU64,
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
            locks: (0..LOCK_STRIPES)
                .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                .collect(),
            flushed_tx: watch::channel(flushed).0,
            flush_now: Notify::new(),
            flush_status: Mutex::new(FlushStatus::default()),
            flush_batch_bytes: AtomicU64::new(crate::backlog::FLUSH_BATCH_BYTES_MAX),
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
        if self.backlog.would_overflow(body.len() as u64) {
            return Err(EngineError::Unavailable(format!(
                "backlog is full ({} bytes max) while the backend catches up",
                self.backlog.bytes_max()
            )));
        }
        let started = std::time::Instant::now();
        let mut appended = self.wal.append(&body, durability != Durability::Memory)?;
        appended.wait_durable().await?;
        metrics::histogram!(m::WAL_APPEND_DURATION).record(started.elapsed().as_secs_f64());
        self.backlog.apply(appended.lsn, op, body.len() as u64);
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

    /// Makes sure this sidecar owns every agent `op` writes, and stamps the records with
    /// the lease epochs (checked again by every flush).
    async fn stamp_leases(&self, op: &mut Op) -> EngineResult<()> {
        let Some(lease) = &self.opts.lease else {
            return Ok(());
        };
        let mut epochs: HashMap<String, u64> = HashMap::new();
        for record in op.records_mut() {
            let id = &record.state.agent_id;
            let epoch = match epochs.get(id) {
                Some(e) => *e,
                None => {
                    let e = self.lease(id, lease).await?;
                    epochs.insert(id.clone(), e);
                    e
                }
            };
            record.lease_epoch = epoch;
        }
        Ok(())
    }

    /// This sidecar's lease epoch for `agent_id`, renewed once half of it has passed.
    async fn lease(&self, agent_id: &str, lease: &LeaseOptions) -> EngineResult<u64> {
        let now = Instant::now();
        let cached = self.leases.get(agent_id);
        if let Some((epoch, until)) = cached {
            if until > now + lease.ttl / 2 {
                return Ok(epoch);
            }
        }
        match self
            .store
            .acquire_lease(agent_id, &lease.owner, lease.ttl)
            .await
        {
            Ok(Lease::Held { epoch }) => {
                // Trust it a little less long than MongoDB does, for clock skew.
                self.leases
                    .insert(agent_id.to_string(), (epoch, now + lease.ttl * 4 / 5));
                Ok(epoch)
            }
            Ok(Lease::Taken { owner, expires_at }) => {
                self.leases.invalidate(agent_id);
                Err(EngineError::Fenced(format!(
                    "agent {agent_id} is owned by sidecar {owner} (lease until {expires_at}); this sidecar may write it once that lease expires"
                )))
            }
            // The backend is down: the epoch this sidecar last held still fences its
            // writes at flush time, so keep accepting them (an agent it never owned is
            // refused: its version is unknown anyway).
            Err(StoreError::Unavailable(m)) => match cached {
                Some((epoch, _)) => Ok(epoch),
                None => Err(EngineError::Unavailable(format!(
                    "cannot confirm ownership of agent {agent_id}: {m}"
                ))),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Drops what this sidecar remembers of an agent another sidecar owns now.
    pub(crate) fn forget(&self, agent_id: &str) {
        self.cache.invalidate(agent_id);
        self.thread_heads.invalidate(agent_id);
        self.leases.invalidate(agent_id);
    }

    /// Counts the op's logged transitions by agent type (declared types only: the label
    /// must stay bounded) and outcome.
    fn count_transitions(&self, op: &Op) {
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

    async fn wait_flushed(&self, lsn: u64) -> EngineResult<()> {
        self.flush_now.notify_one();
        let mut rx = self.flushed_tx.subscribe();
        let waited =
            tokio::time::timeout(self.opts.remote_timeout, rx.wait_for(|f| *f >= lsn)).await;
        match waited {
            Ok(Ok(_)) => Ok(()),
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

    /// `GET /v1/agents/{id}`.
    /// The agent's record; its state's body comes from [`AgentRecord::state_body`].
    pub async fn get(&self, agent_id: &str) -> EngineResult<Arc<AgentRecord>> {
        self.read_live(agent_id).await
    }

    /// The shape of most one-agent changes, under the agent's lock: read its record,
    /// `build` the op (a refusal that must be logged is logged), log it, `answer`.
    async fn change<R: Send + 'static>(
        self: &Arc<Self>,
        agent_id: String,
        durability: Durability,
        build: impl FnOnce(&AgentTypes, &str, Option<&Current>) -> EngineResult<Built> + Send + 'static,
        answer: impl FnOnce(&Op, &str) -> R + Send + 'static,
    ) -> EngineResult<R> {
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let current = engine.current(&agent_id).await?;
            let built = build(&engine.types, &agent_id, current.as_ref())?;
            let (op, lsn) = engine.log_built(built, durability).await?;
            Ok((answer(&op, &agent_id), Some(lsn)))
        })
        .await
    }

    /// `PUT /v1/agents/{id}`: returns the new version.
    pub async fn save(
        self: &Arc<Self>,
        agent_id: String,
        req: SaveStateRequest,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<u64> {
        self.change(
            agent_id,
            durability,
            move |types, id, current| ops::put(types, id, current, req, cond, now()).map(Built::Ok),
            ops::version_of,
        )
        .await
    }

    /// `DELETE /v1/agents/{id}`: `Ok(None)` if there was nothing to delete.
    pub async fn delete(
        self: &Arc<Self>,
        agent_id: String,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<Option<u64>> {
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let current = engine.current(&agent_id).await?;
            match ops::delete(&agent_id, current.as_ref(), cond, now()) {
                Ok(mut op) => {
                    let lsn = engine.log(&mut op, durability).await?;
                    Ok((Some(ops::version_of(&op, &agent_id)), Some(lsn)))
                }
                Err(EngineError::NotFound(_)) if cond == Precondition::None => Ok((None, None)),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// `POST /v1/agents/{id}/transitions`. A refused transition is logged too, and
    /// answered with `Validation` naming the rule.
    pub async fn transition(
        self: &Arc<Self>,
        agent_id: String,
        req: TransitionRequest,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<TransitionResponse> {
        self.change(
            agent_id,
            durability,
            move |types, id, current| ops::transition(types, id, current, req, cond, now()),
            |op, _| ops::transition_response(op),
        )
        .await
    }

    /// `POST /v1/agents/{id}/transitions/begin`: the first step of a multi-step
    /// transition, recorded as the agent's `pending_transition`.
    pub async fn begin_transition(
        self: &Arc<Self>,
        agent_id: String,
        req: TransitionRequest,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<BeginTransitionResponse> {
        self.change(
            agent_id,
            durability,
            move |types, id, current| ops::begin(types, id, current, req, cond, now()),
            |op, _| {
                let Op::Put { record } = op else {
                    unreachable!("begin builds a Put")
                };
                BeginTransitionResponse {
                    pending_transition: record
                        .state
                        .pending_transition
                        .clone()
                        .expect("begin sets the pending transition"),
                    version: record.state.version,
                }
            },
        )
        .await
    }

    /// `POST .../transitions/{tid}/complete` or `.../abort`.
    pub async fn finish_transition(
        self: &Arc<Self>,
        agent_id: String,
        transition_id: String,
        finish: ops::Finish,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<TransitionResponse> {
        self.change(
            agent_id,
            durability,
            move |types, id, current| {
                ops::finish(types, id, current, &transition_id, finish, cond, now()).map(Built::Ok)
            },
            |op, _| ops::transition_response(op),
        )
        .await
    }

    /// Convenience for the API: complete with the given data.
    pub fn complete(req: CompleteTransitionRequest) -> ops::Finish {
        ops::Finish::Complete(req.state_data)
    }

    /// Convenience for the API: abort with the given reason.
    pub fn abort(req: AbortTransitionRequest) -> ops::Finish {
        ops::Finish::Abort(req.error)
    }

    /// `GET /v1/agents/{id}/transitions`: backend page merged with unflushed entries.
    pub async fn transitions(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> EngineResult<Vec<StateTransition>> {
        self.read_live(agent_id).await?;
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        let after = after.min(SEQ_MAX);
        // Entries a pending delete will purge are gone already, as far as readers know.
        let floor = self
            .backlog
            .purge(agent_id)
            .map_or(after, |t| after.max(t.transition_seq));
        let pending = self.backlog.transitions(agent_id, floor);
        let stored = self.store.transitions(agent_id, floor, limit).await?;
        Ok(merge_by_seq(stored, pending, |t| t.seq, limit))
    }

    /// `POST /v1/agents/{id}/messages`: returns the new messages' sequence numbers.
    pub async fn append_messages(
        self: &Arc<Self>,
        agent_id: String,
        messages: Vec<NewMessage>,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<AppendMessagesResponse> {
        ops::check_messages(&messages, &self.opts.limits)?;
        self.change(
            agent_id,
            durability,
            move |_, id, current| ops::messages(id, current, messages, cond, now()).map(Built::Ok),
            |op, _| {
                let Op::Messages { record, messages } = op else {
                    unreachable!("messages builds Messages")
                };
                AppendMessagesResponse {
                    seqs: messages.iter().map(|m| m.seq).collect(),
                    version: record.state.version,
                }
            },
        )
        .await
    }

    /// `GET /v1/agents/{id}/messages`.
    pub async fn messages(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> EngineResult<Vec<Message>> {
        self.read_live(agent_id).await?;
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        let after = after.min(SEQ_MAX);
        let floor = self
            .backlog
            .purge(agent_id)
            .map_or(after, |t| after.max(t.message_seq));
        let pending = self.backlog.messages(agent_id, floor);
        // Removed messages the backend still has are skipped, range by range.
        let drops = self.backlog.message_drops(agent_id);
        let mut stored = Vec::new();
        let mut cursor = floor;
        loop {
            while let Some((_, to)) = drops
                .iter()
                .find(|(from, to)| *from <= cursor + 1 && cursor < *to)
            {
                cursor = *to;
            }
            let page = self.store.messages(agent_id, cursor, limit).await?;
            let full = page.len() >= limit as usize;
            cursor = page.last().map_or(cursor, |m| m.seq);
            stored.extend(page.into_iter().filter(|m| !dropped(&drops, m.seq)));
            if !full || stored.len() >= limit as usize {
                break;
            }
        }
        Ok(merge_by_seq(stored, pending, |m| m.seq, limit))
    }

    /// `GET /v1/agents/{id}/messages?last=N`: the latest `n`, oldest first.
    pub async fn last_messages(&self, agent_id: &str, n: u32) -> EngineResult<Vec<Message>> {
        let record = self.read_live(agent_id).await?;
        self.recent_messages(agent_id, record.message_seq, n.clamp(1, PAGE_LIMIT_MAX))
            .await
    }

    /// The latest `n` messages with `seq <= upto`, oldest first.
    pub(crate) async fn recent_messages(
        &self,
        agent_id: &str,
        upto: u64,
        n: u32,
    ) -> EngineResult<Vec<Message>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let floor = self.backlog.purge(agent_id).map_or(0, |t| t.message_seq);
        let pending: Vec<Message> = self
            .backlog
            .messages(agent_id, floor)
            .into_iter()
            .filter(|m| m.seq <= upto)
            .collect();
        let drops = self.backlog.message_drops(agent_id);
        let mut stored_upto = pending.first().map_or(upto, |m| m.seq - 1);
        let mut out: Vec<Message> = Vec::new();
        while out.len() < n as usize {
            while let Some((from, _)) = drops
                .iter()
                .find(|(from, to)| *from <= stored_upto && stored_upto <= *to)
            {
                stored_upto = from.saturating_sub(1);
            }
            if stored_upto <= floor {
                break;
            }
            let page = self.store.last_messages(agent_id, stored_upto, n).await?;
            let full = page.len() >= n as usize;
            stored_upto = page.first().map_or(0, |m| m.seq.saturating_sub(1));
            let mut kept: Vec<Message> = page
                .into_iter()
                .filter(|m| m.seq > floor && !dropped(&drops, m.seq))
                .collect();
            kept.append(&mut out);
            out = kept;
            if !full {
                break;
            }
        }
        out.extend(pending);
        let skip = out.len().saturating_sub(n as usize);
        Ok(out.split_off(skip))
    }

    /// `DELETE /v1/agents/{id}/messages/last`: removes the latest message.
    pub async fn pop_message(
        self: &Arc<Self>,
        agent_id: String,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<PopMessageResponse> {
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let record = engine.live(&agent_id).await?;
            cond.check(Some(&Current::Live(record.clone())))?;
            let last = engine
                .recent_messages(&agent_id, record.message_seq, 1)
                .await?
                .pop();
            let Some(message) = last else {
                let version = record.state.version;
                return Ok((
                    PopMessageResponse {
                        message: None,
                        version,
                    },
                    None,
                ));
            };
            let mut op = Op::DropMessages {
                record: ops::next(&record, now()),
                from_seq: message.seq,
                to_seq: message.seq,
            };
            let lsn = engine.log(&mut op, durability).await?;
            let version = ops::version_of(&op, &agent_id);
            Ok((
                PopMessageResponse {
                    message: Some(message),
                    version,
                },
                Some(lsn),
            ))
        })
        .await
    }

    /// `DELETE /v1/agents/{id}/messages`: removes the whole conversation.
    pub async fn clear_messages(
        self: &Arc<Self>,
        agent_id: String,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<u64> {
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let record = engine.live(&agent_id).await?;
            cond.check(Some(&Current::Live(record.clone())))?;
            let mut op = Op::DropMessages {
                record: ops::next(&record, now()),
                from_seq: 1,
                to_seq: record.message_seq,
            };
            let lsn = engine.log(&mut op, durability).await?;
            Ok((ops::version_of(&op, &agent_id), Some(lsn)))
        })
        .await
    }

    /// `POST /v1/agents/{id}/checkpoints`.
    pub async fn checkpoint(
        self: &Arc<Self>,
        agent_id: String,
        req: CheckpointRequest,
        durability: Durability,
    ) -> EngineResult<CheckpointResponse> {
        if let Some(label) = &req.label {
            validate::name("label", label).map_err(EngineError::Validation)?;
        }
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let record = engine.live(&agent_id).await?;
            let checkpoint = Checkpoint {
                checkpoint_id: new_id(),
                agent_id: agent_id.clone(),
                version: record.state.version,
                state: record.state.clone(),
                transition_seq: record.transition_seq,
                message_seq: record.message_seq,
                created_at: now(),
                label: req.label,
            };
            let resp = CheckpointResponse {
                checkpoint_id: checkpoint.checkpoint_id.clone(),
                version: checkpoint.version,
            };
            let lsn = engine
                .log(&mut Op::Checkpoint { checkpoint }, durability)
                .await?;
            Ok((resp, Some(lsn)))
        })
        .await
    }

    /// `GET /v1/agents/{id}/checkpoints`, oldest first.
    pub async fn checkpoints(&self, agent_id: &str) -> EngineResult<Vec<Checkpoint>> {
        self.read_live(agent_id).await?;
        self.all_checkpoints(agent_id).await
    }

    async fn all_checkpoints(&self, agent_id: &str) -> EngineResult<Vec<Checkpoint>> {
        // The backlog before the store: an entry moves from the one to the other only
        // after the store has it, so this order cannot miss one in transit.
        let pending = self.backlog.checkpoints(agent_id);
        let floor = self.backlog.purge(agent_id).map_or(0, |t| t.version);
        let mut all: Vec<Checkpoint> = self
            .store
            .checkpoints(agent_id)
            .await?
            .into_iter()
            .filter(|c| c.version >= floor)
            .collect();
        for c in pending {
            if !all.iter().any(|s| s.checkpoint_id == c.checkpoint_id) {
                all.push(c);
            }
        }
        all.sort_by_key(|c| (c.created_at, c.version));
        Ok(all)
    }

    async fn find_checkpoint(
        &self,
        agent_id: &str,
        checkpoint_id: &str,
    ) -> EngineResult<Checkpoint> {
        self.all_checkpoints(agent_id)
            .await?
            .into_iter()
            .find(|c| c.checkpoint_id == checkpoint_id)
            .ok_or_else(|| {
                EngineError::NotFound(format!(
                    "agent {agent_id} has no checkpoint {checkpoint_id}"
                ))
            })
    }

    /// `POST /v1/agents/{id}/rollback`: restores a checkpoint as a new version, logged as
    /// a transition with trigger `rollback`.
    pub async fn rollback(
        self: &Arc<Self>,
        agent_id: String,
        checkpoint_id: String,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<TransitionResponse> {
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let record = engine.live(&agent_id).await?;
            cond.check(Some(&Current::Live(record.clone())))?;
            let checkpoint = engine.find_checkpoint(&agent_id, &checkpoint_id).await?;
            let mut op = ops::restore(&record, &checkpoint.state, "rollback", now());
            let lsn = engine.log(&mut op, durability).await?;
            Ok((ops::transition_response(&op), Some(lsn)))
        })
        .await
    }

    /// `POST /v1/agents/{id}/replay`: recomputes the state from a checkpoint and the
    /// successful transitions logged after it; with `apply`, makes it current (a new
    /// version, logged with trigger `replay`).
    pub async fn replay(
        self: &Arc<Self>,
        agent_id: String,
        checkpoint_id: String,
        apply: bool,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<ReplayResponse> {
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let record = engine.live(&agent_id).await?;
            cond.check(Some(&Current::Live(record.clone())))?;
            let checkpoint = engine.find_checkpoint(&agent_id, &checkpoint_id).await?;
            let mut state = checkpoint.state.clone();
            let mut applied = 0u64;
            let mut after = checkpoint.transition_seq;
            let mut walked = 0usize;
            loop {
                let page = engine.transitions(&agent_id, after, PAGE_LIMIT_MAX).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                walked += page.len();
                if walked > REPLAY_TRANSITIONS_MAX {
                    return Err(EngineError::Validation(format!(
                        "more than {REPLAY_TRANSITIONS_MAX} transitions after the checkpoint; take a newer checkpoint"
                    )));
                }
                for t in page.iter().filter(|t| t.success && t.seq <= record.transition_seq) {
                    state.state_name = t.to_state.clone();
                    if let Some(d) = &t.state_data {
                        state.state_data = d.clone();
                    }
                    applied += 1;
                }
            }
            if !apply {
                return Ok((
                    ReplayResponse {
                        state,
                        transitions_applied: applied,
                        applied: false,
                        version: record.state.version,
                    },
                    None,
                ));
            }
            let mut op = ops::restore(&record, &state, "replay", now());
            let lsn = engine.log(&mut op, durability).await?;
            let Op::Transition { record: after_record, .. } = &op else {
                unreachable!("restore builds a Transition")
            };
            Ok((
                ReplayResponse {
                    state: after_record.state.clone(),
                    transitions_applied: applied,
                    applied: true,
                    version: after_record.state.version,
                },
                Some(lsn),
            ))
        })
        .await
    }

    /// `POST /v1/transfers`: hands the conversation and context of one agent to another,
    /// atomically; the same `transfer_id` again returns the first result.
    pub async fn transfer(
        self: &Arc<Self>,
        req: TransferRequest,
        durability: Durability,
    ) -> EngineResult<Transfer> {
        ops::check_transfer_request(&req)?;
        if let Some(t) = self.existing_transfer(&req).await? {
            return Ok(t);
        }
        let engine = self.clone();
        self.critical(durability, async move {
            let transfer_key = format!("transfer:{}", req.transfer_id);
            let _g = engine
                .lock(&[&req.from_agent, &req.to_agent, &transfer_key])
                .await;
            // Again under the locks: a concurrent retry may have just done it.
            if let Some(t) = engine.existing_transfer(&req).await? {
                return Ok((t, None));
            }
            let source = engine.current(&req.from_agent).await?;
            let target = engine.current(&req.to_agent).await?;
            let Some(Current::Live(src)) = &source else {
                return Err(not_found(&req.from_agent));
            };
            let wanted = req
                .messages_max
                .unwrap_or(engine.opts.limits.transfer_messages_max)
                .min(engine.opts.limits.transfer_messages_max);
            let history = engine
                .recent_messages(&req.from_agent, src.message_seq, wanted)
                .await?;
            let built = ops::transfer(
                &engine.types,
                &req,
                source.as_ref(),
                target.as_ref(),
                history,
                now(),
            )?;
            let (op, lsn) = engine.log_built(built, durability).await?;
            let Op::Transfer { transfer, .. } = op else {
                unreachable!("transfer builds a Transfer")
            };
            Ok((transfer, Some(lsn)))
        })
        .await
    }

    /// The transfer with this id, if it happened; 409 if the id was used for others.
    async fn existing_transfer(&self, req: &TransferRequest) -> EngineResult<Option<Transfer>> {
        let found = match self.backlog.transfer(&req.transfer_id) {
            Some(t) => Some(t),
            None => self.store.transfer(&req.transfer_id).await?,
        };
        match found {
            Some(t) if t.from_agent != req.from_agent || t.to_agent != req.to_agent => {
                Err(EngineError::Conflict(format!(
                    "transfer {} was made from {} to {}, not from {} to {}",
                    t.transfer_id, t.from_agent, t.to_agent, req.from_agent, req.to_agent
                )))
            }
            other => Ok(other),
        }
    }

    /// `GET /v1/transfers/{id}`.
    pub async fn get_transfer(&self, transfer_id: &str) -> EngineResult<Transfer> {
        let found = match self.backlog.transfer(transfer_id) {
            Some(t) => Some(t),
            None => self.store.transfer(transfer_id).await?,
        };
        found.ok_or_else(|| EngineError::NotFound(format!("transfer {transfer_id} not found")))
    }

    /// `POST /v1/batch`: every operation or none; one WAL record.
    pub async fn batch(
        self: &Arc<Self>,
        req: BatchRequest,
        durability: Durability,
    ) -> EngineResult<BatchResponse> {
        ops::check_batch(&req, &self.opts.limits)?;
        let engine = self.clone();
        self.critical(durability, async move {
            let ids: Vec<String> = req
                .operations
                .iter()
                .map(|o| ops::batch_agent(o).to_string())
                .collect();
            let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
            let _g = engine.lock(&keys).await;
            let mut overlay: HashMap<String, Option<Current>> = HashMap::new();
            for id in &ids {
                if !overlay.contains_key(id) {
                    overlay.insert(id.clone(), engine.current(id).await?);
                }
            }
            let at = now();
            let mut built = Vec::with_capacity(req.operations.len());
            let mut results = Vec::with_capacity(req.operations.len());
            for (i, operation) in req.operations.into_iter().enumerate() {
                let id = ops::batch_agent(&operation).to_string();
                let current = overlay.get(&id).cloned().flatten();
                let op = ops::batch_op(&engine.types, operation, current.as_ref(), at)
                    .map_err(|e| prefix_error(e, &format!("operation {i} ({id})")))?;
                if let Some(c) = op.resulting(&id) {
                    overlay.insert(id.clone(), Some(c));
                }
                results.push(BatchResult {
                    version: ops::version_of(&op, &id),
                    agent_id: id,
                });
                built.push(op);
            }
            let lsn = engine
                .log(&mut Op::Batch { ops: built }, durability)
                .await?;
            Ok((BatchResponse { results }, Some(lsn)))
        })
        .await
    }
}

/// Whether `seq` lies in one of the removed ranges.
fn dropped(drops: &[(u64, u64)], seq: u64) -> bool {
    drops.iter().any(|(from, to)| *from <= seq && seq <= *to)
}

/// The same error, its message prefixed with where it happened.
fn prefix_error(e: EngineError, at: &str) -> EngineError {
    match e {
        EngineError::NotFound(m) => EngineError::NotFound(format!("{at}: {m}")),
        EngineError::Conflict(m) => EngineError::Conflict(format!("{at}: {m}")),
        EngineError::Validation(m) => EngineError::Validation(format!("{at}: {m}")),
        EngineError::Malformed(m) => EngineError::Malformed(format!("{at}: {m}")),
        other => other,
    }
}

/// One page of a log: stored entries with unflushed ones merged in by `seq`.
///
/// Unflushed entries may also be missing from the middle of what is stored (a transfer
/// is flushed ahead of the target's older messages), so they are merged, not appended.
/// When the stored page is full, unflushed entries past its end belong to a later page.
fn merge_by_seq<T>(stored: Vec<T>, pending: Vec<T>, seq: impl Fn(&T) -> u64, limit: u32) -> Vec<T> {
    let full = stored.len() >= limit as usize;
    let last = stored.last().map_or(0, &seq);
    let mut all = stored;
    all.extend(pending.into_iter().filter(|p| !full || seq(p) <= last));
    all.sort_by_key(|t| seq(t));
    all.dedup_by_key(|t| seq(t));
    all.truncate(limit as usize);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_merge_stored_and_unflushed_entries() {
        // Unflushed 5 is missing from the middle of what is stored.
        let page = merge_by_seq(vec![1, 2, 3, 4, 6, 7], vec![5, 6, 7, 8], |s| *s, 100);
        assert_eq!(page, [1, 2, 3, 4, 5, 6, 7, 8]);
        // A full stored page keeps later unflushed entries for the next page.
        let page = merge_by_seq(vec![1, 2, 3], vec![2, 9], |s| *s, 3);
        assert_eq!(page, [1, 2, 3]);
        let page = merge_by_seq(vec![], vec![4, 5], |s| *s, 1);
        assert_eq!(page, [4]);
    }
}
