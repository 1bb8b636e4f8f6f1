//! The write path and the read path: everything between the HTTP handlers and the
//! WAL, backlog, cache and backend.
//!
//! A mutating call runs, under its agent's lock:
//! validate -> read the current record -> build the [`Op`] -> append it to the WAL ->
//! wait for the fsync (`local`) -> apply it to the backlog and the cache -> release the
//! lock -> (`remote`: wait until the flusher has it in the backend) -> acknowledge.
//!
//! Hazards:
//! - A request whose client goes away must not stop half-way (the record would be in the
//!   WAL but not in memory), so the critical section runs in its own task.
//! - The version of an agent this sidecar has never seen comes from the backend; if the
//!   backend is down, such a write is refused with 503 rather than guessed.
//! - Per-agent locks are striped (a fixed array), so their memory is bounded.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentstate_protocol::{
    Durability, PersistedState, SaveStateRequest, StateTransition, TransitionRequest,
    TransitionResponse,
};
use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::{watch, Notify, OwnedMutexGuard};

use crate::backlog::Backlog;
use crate::cache::StateCache;
use crate::model::{AgentRecord, Current, Op, Tombstone};
use crate::store::{Store, StoreError};
use crate::validate;
use crate::wal::{Wal, WalError};

/// Seconds a client is told to wait (`Retry-After`) when the sidecar is overloaded.
pub const RETRY_AFTER_SECS: u64 = 1;
/// Number of lock stripes; a power of two well above the expected concurrency.
const LOCK_STRIPES: usize = 1024;
/// Longest page of the transition log.
pub const PAGE_LIMIT_MAX: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    NotFound(String),
    #[error("version conflict: expected version {expected}, current is {current}")]
    VersionConflict { expected: String, current: u64 },
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
    fn check(self, current: Option<&Current>) -> EngineResult<()> {
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
    pub(crate) store: Store,
    locks: Vec<Arc<tokio::sync::Mutex<()>>>,
    /// Every WAL record at or below this LSN is in the backend.
    pub(crate) flushed_tx: watch::Sender<u64>,
    /// Wakes the flusher before its interval (full batch, `remote` write, shutdown).
    pub(crate) flush_now: Notify,
    pub(crate) flush_status: Mutex<FlushStatus>,
    ready: AtomicBool,
    opts: EngineOptions,
}

/// Now, to the millisecond: BSON dates hold milliseconds, and every copy of a timestamp
/// (memory, WAL, backend) should read the same.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

impl Engine {
    pub fn new(
        wal: Wal,
        backlog: Backlog,
        cache: StateCache,
        store: Store,
        opts: EngineOptions,
    ) -> Self {
        let flushed = wal.oldest_unapplied_lsn().saturating_sub(1);
        Engine {
            wal,
            backlog,
            cache,
            store,
            locks: (0..LOCK_STRIPES)
                .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                .collect(),
            flushed_tx: watch::channel(flushed).0,
            flush_now: Notify::new(),
            flush_status: Mutex::new(FlushStatus::default()),
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

    async fn lock(&self, agent_id: &str) -> OwnedMutexGuard<()> {
        let mut h = DefaultHasher::new();
        agent_id.hash(&mut h);
        let stripe = (h.finish() as usize) % LOCK_STRIPES;
        self.locks[stripe].clone().lock_owned().await
    }

    /// The agent as this sidecar knows it: unflushed changes first, then the cache, then
    /// the backend (whose answer is cached). Call with the agent's lock held when the
    /// answer feeds a write.
    async fn current(&self, agent_id: &str) -> EngineResult<Option<Current>> {
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

    /// `GET /v1/agents/{id}`.
    pub async fn get(&self, agent_id: &str) -> EngineResult<PersistedState> {
        let fast = match self.backlog.get(agent_id) {
            Some(c) => Some(c),
            None => self.cache.get(agent_id),
        };
        let current = match fast {
            Some(c) => Some(c),
            None => {
                let _guard = self.lock(agent_id).await;
                self.current(agent_id).await?
            }
        };
        match current {
            Some(Current::Live(r)) => Ok(r.state.clone()),
            _ => Err(EngineError::NotFound(format!("agent {agent_id} not found"))),
        }
    }

    /// `PUT /v1/agents/{id}`: returns the new version.
    pub async fn save(
        self: &Arc<Self>,
        agent_id: String,
        req: SaveStateRequest,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<u64> {
        validate::name("state_name", &req.state_name).map_err(EngineError::Validation)?;
        if let Some(t) = &req.agent_type {
            validate::name("agent_type", t).map_err(EngineError::Validation)?;
        }
        if let Some(d) = &req.state_data {
            validate::document("state_data", d).map_err(EngineError::Validation)?;
        }
        if let Some(m) = &req.metadata {
            validate::document("metadata", &serde_json::Value::Object(m.clone()))
                .map_err(EngineError::Validation)?;
        }
        self.mutate(agent_id, durability, move |agent_id, current| {
            cond.check(current)?;
            let now = now();
            let prev = current.and_then(Current::live);
            let record = AgentRecord {
                state: PersistedState {
                    agent_id: agent_id.to_string(),
                    agent_type: req
                        .agent_type
                        .or_else(|| prev.and_then(|p| p.state.agent_type.clone())),
                    state_name: req.state_name,
                    state_data: req.state_data.unwrap_or(serde_json::Value::Null),
                    conversation_context: prev.map_or(serde_json::Value::Null, |p| {
                        p.state.conversation_context.clone()
                    }),
                    created_at: prev.map_or(now, |p| p.state.created_at),
                    updated_at: now,
                    version: current.map_or(0, Current::version) + 1,
                    metadata: req.metadata.unwrap_or_default(),
                },
                transition_seq: current.map_or(0, Current::transition_seq),
            };
            Ok(Op::Put { record })
        })
        .await
        .map(|(op, _)| match op {
            Op::Put { record } => record.state.version,
            _ => unreachable!("save builds a Put"),
        })
    }

    /// `DELETE /v1/agents/{id}`: `Ok(None)` if there was nothing to delete.
    pub async fn delete(
        self: &Arc<Self>,
        agent_id: String,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<Option<u64>> {
        let result = self
            .mutate(agent_id, durability, move |agent_id, current| {
                cond.check(current)?;
                match current {
                    Some(Current::Live(r)) => Ok(Op::Delete {
                        agent_id: agent_id.to_string(),
                        tombstone: Tombstone {
                            version: r.state.version + 1,
                            transition_seq: r.transition_seq,
                        },
                        at: now(),
                    }),
                    _ => Err(EngineError::NotFound(format!("agent {agent_id} not found"))),
                }
            })
            .await;
        match result {
            Ok((Op::Delete { tombstone, .. }, _)) => Ok(Some(tombstone.version)),
            Ok(_) => unreachable!("delete builds a Delete"),
            Err(EngineError::NotFound(_)) if cond == Precondition::None => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `POST /v1/agents/{id}/transitions`. A refused transition is logged too, and
    /// answered with `Validation` naming the reason.
    pub async fn transition(
        self: &Arc<Self>,
        agent_id: String,
        req: TransitionRequest,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<TransitionResponse> {
        validate::name("to_state", &req.to_state).map_err(EngineError::Validation)?;
        validate::name("trigger", &req.trigger).map_err(EngineError::Validation)?;
        if let Some(d) = &req.state_data {
            validate::document("state_data", d).map_err(EngineError::Validation)?;
        }
        let (op, _) = self
            .mutate(agent_id, durability, move |agent_id, current| {
                cond.check(current)?;
                let Some(prev) = current.and_then(Current::live) else {
                    return Err(EngineError::NotFound(format!(
                        "agent {agent_id} not found; save a state before its first transition"
                    )));
                };
                let now = now();
                let seq = prev.transition_seq + 1;
                let transition = StateTransition {
                    id: new_id(),
                    seq,
                    agent_id: agent_id.to_string(),
                    from_state: prev.state.state_name.clone(),
                    to_state: req.to_state.clone(),
                    trigger: req.trigger,
                    timestamp: now,
                    success: true,
                    error: None,
                };
                let mut state = prev.state.clone();
                state.state_name = req.to_state;
                if let Some(d) = req.state_data {
                    state.state_data = d;
                }
                state.version += 1;
                state.updated_at = now;
                Ok(Op::Transition {
                    record: AgentRecord {
                        state,
                        transition_seq: seq,
                    },
                    transition,
                })
            })
            .await?;
        match op {
            Op::Transition { record, transition } => Ok(TransitionResponse {
                transition,
                version: record.state.version,
            }),
            _ => unreachable!("transition builds a Transition"),
        }
    }

    /// `GET /v1/agents/{id}/transitions`: backend page merged with unflushed entries.
    pub async fn transitions(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> EngineResult<Vec<StateTransition>> {
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        if self.get(agent_id).await.is_err() {
            return Err(EngineError::NotFound(format!("agent {agent_id} not found")));
        }
        let (pending, purge) = self.backlog.transitions(agent_id, after);
        // Entries a pending delete will purge are gone already, as far as readers know.
        let floor = purge.map_or(after, |t| after.max(t.transition_seq));
        let mut out = self.store.transitions(agent_id, floor, limit).await?;
        let last = out.last().map_or(0, |t| t.seq);
        out.extend(pending.into_iter().filter(|t| t.seq > last));
        out.truncate(limit as usize);
        Ok(out)
    }

    /// Runs `build` on the agent's current state under its lock, logs the resulting op,
    /// applies it and waits as `durability` asks. Returns the op and its LSN.
    async fn mutate(
        self: &Arc<Self>,
        agent_id: String,
        durability: Durability,
        build: impl FnOnce(&str, Option<&Current>) -> EngineResult<Op> + Send + 'static,
    ) -> EngineResult<(Op, u64)> {
        if !self.is_ready() {
            return Err(EngineError::Unavailable("sidecar is not ready".into()));
        }
        let engine = self.clone();
        // Its own task: once started, it finishes even if the caller goes away.
        let (op, lsn) = tokio::spawn(async move {
            let _guard = engine.lock(&agent_id).await;
            let current = engine.current(&agent_id).await?;
            let op = build(&agent_id, current.as_ref())?;
            let body = op
                .encode()
                .map_err(|e| EngineError::Internal(format!("encode WAL record: {e}")))?;
            if engine.backlog.would_overflow(body.len() as u64) {
                return Err(EngineError::Unavailable(format!(
                    "backlog is full ({} bytes max) while the backend catches up",
                    engine.backlog.bytes_max()
                )));
            }
            let mut appended = engine.wal.append(&body, durability != Durability::Memory)?;
            appended.wait_durable().await?;
            engine.backlog.apply(appended.lsn, &op, body.len() as u64);
            engine.cache.insert(&agent_id, op.resulting());
            Ok((op, appended.lsn))
        })
        .await
        .map_err(|e| EngineError::Internal(format!("write task failed: {e}")))??;

        if self.backlog.stats().agents >= self.opts.flush_batch_max as u64 {
            self.flush_now.notify_one();
        }
        if durability == Durability::Remote {
            self.wait_flushed(lsn).await?;
        }
        Ok((op, lsn))
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
}

/// A random 128-bit id, hex.
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}
