//! The threads API on the engine: framework checkpoints (LangGraph's model) kept beside
//! an agent's own state. A thread is an agent; its checkpoints go through the same write
//! path as everything else (one WAL record per change, group commit, the backlog, the
//! coalescing flusher), carrying their payloads as bytes.
//!
//! Reads merge what the backlog holds (unflushed puts, drops and a pending delete) with
//! what the backend has, the backlog first: an entry leaves the backlog only after the
//! backend has it, so this order cannot miss one in transit.
//!
//! Hazards: copies, prunes and deletes for runs are computed from a consistent read
//! under the threads' locks and logged as explicit lists of what they add or remove, so
//! replaying them can never touch a checkpoint written later.

mod chains;
mod checks;
mod inspect;
mod maintenance;
pub use inspect::check_reason;
mod reads;

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::Arc;

use agentstate_protocol::{
    Durability, PutThreadCheckpointRequest, PutThreadCheckpointResponse, PutThreadWritesRequest,
    SearchCheckpointsRequest, ThreadWrite,
};
use chrono::{DateTime, Utc};

use super::ops;
use super::{now, Engine, EngineResult, Precondition};
use crate::backlog::ThreadDirt;
use crate::model::{
    AgentRecord, BlobKey, CheckpointKey, Current, Doc, Op, PersistedState, StoredBlob, StoredWrite,
    ThreadChange, ThreadCheckpoint, Tombstone,
};
use checks::{check_put, check_writes};

/// The state a thread's agent is created in by its first checkpoint.
pub const THREAD_STATE: &str = "active";

/// Page size of a search when none is asked for.
const SEARCH_LIMIT_DEFAULT: u32 = 100;

/// Most checkpoints one copy, prune or delete for runs reads per thread.
const THREAD_CHECKPOINTS_MAX: usize = 100_000;

/// Most threads one application of the retention policy thins (the rest wait for the
/// next).
const RETENTION_THREADS_MAX: u32 = 10_000;

/// Most ancestors a delta history walks.
const ANCESTORS_MAX: usize = 100_000;

/// The thread's record after a change: its next version, created if absent.
fn thread_record(thread: &str, current: Option<&Current>, at: DateTime<Utc>) -> AgentRecord {
    match current {
        Some(Current::Live(r)) => ops::next(r, at),
        other => AgentRecord {
            state: PersistedState {
                agent_id: thread.to_string(),
                agent_type: None,
                state_name: THREAD_STATE.into(),
                state_data: Doc::null(),
                conversation_context: Doc::null(),
                created_at: at,
                updated_at: at,
                version: other.map_or(0, Current::version) + 1,
                metadata: Default::default(),
                pending_transition: None,
            },
            transition_seq: other.map_or(0, Current::transition_seq),
            message_seq: other.map_or(0, Current::message_seq),
            lease_epoch: 0,
            encoded: Default::default(),
        },
    }
}

/// What the backlog holds of one thread.
type Pending = (ThreadDirt, Option<Tombstone>);

/// Blobs of threads, by thread and key, as stored.
type Blobs = HashMap<(String, BlobKey), Arc<StoredBlob>>;

/// Pending writes of threads' checkpoints.
type Writes = HashMap<(String, CheckpointKey), Vec<ThreadWrite>>;

/// Whether a stored row of version `version` is superseded by a pending delete.
fn purged(pending: Option<&Pending>, version: u64) -> bool {
    pending
        .and_then(|p| p.1)
        .is_some_and(|t| version < t.version)
}

fn matches(q: &SearchCheckpointsRequest, c: &ThreadCheckpoint) -> bool {
    q.thread_id.as_ref().is_none_or(|t| *t == c.thread_id)
        && q.checkpoint_ns
            .as_ref()
            .is_none_or(|n| *n == c.checkpoint_ns)
        && q.checkpoint_id
            .as_ref()
            .is_none_or(|i| *i == c.checkpoint_id)
        && q.before.as_ref().is_none_or(|b| c.checkpoint_id < *b)
        && q.filter
            .as_ref()
            .is_none_or(|f| f.iter().all(|(k, v)| c.metadata.get(k) == Some(v)))
}

/// Search order: greatest id first, then thread and namespace.
type Order = (Reverse<String>, String, String);

fn order(c: &ThreadCheckpoint) -> Order {
    (
        Reverse(c.checkpoint_id.clone()),
        c.thread_id.clone(),
        c.checkpoint_ns.clone(),
    )
}

impl Engine {
    /// One change to one thread, under its lock: `build` gets the thread's id and next
    /// version and returns the changes; the answer is that version.
    async fn change_thread(
        self: &Arc<Self>,
        thread: String,
        durability: Durability,
        build: impl FnOnce(&str, u64) -> Vec<ThreadChange> + Send + 'static,
    ) -> EngineResult<u64> {
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&thread]).await;
            engine.log_thread(&thread, durability, build).await
        })
        .await
    }

    /// Logs one change to one thread (call under its lock): `build` gets the thread's id
    /// and next version and returns the changes.
    async fn log_thread(
        &self,
        thread: &str,
        durability: Durability,
        build: impl FnOnce(&str, u64) -> Vec<ThreadChange>,
    ) -> EngineResult<(u64, Option<u64>)> {
        let current = self.current_to_change(thread).await?;
        let record = thread_record(thread, current.as_ref(), now());
        let version = record.state.version;
        let changes = build(thread, version);
        let op = &mut Op::Thread {
            record: record.into(),
            changes,
        };
        let lsn = self.log(op, durability).await?;
        Ok((version, Some(lsn)))
    }

    /// `POST /v1/threads/{id}/checkpoints`.
    pub async fn put_thread_checkpoint(
        self: &Arc<Self>,
        thread: String,
        req: PutThreadCheckpointRequest,
        durability: Durability,
    ) -> EngineResult<PutThreadCheckpointResponse> {
        check_put(&req)?;
        let (ns, id) = (req.checkpoint_ns.clone(), req.checkpoint_id.clone());
        let engine = self.clone();
        let target = thread.clone();
        let version = self
            .critical(durability, async move {
                let thread = target;
                let _g = engine.lock(&[&thread]).await;
                let mut chains = engine.put_chains(&thread, &req).await?;
                engine
                    .log_thread(&thread, durability, move |thread, version| {
                        let blobs = req
                            .blobs
                            .into_iter()
                            .map(|blob| StoredBlob {
                                checkpoint_ns: req.checkpoint_ns.clone(),
                                root: chains
                                    .blobs
                                    .remove(&(blob.channel.clone(), blob.version.clone())),
                                blob,
                                version,
                            })
                            .collect();
                        let checkpoint = ThreadCheckpoint {
                            thread_id: thread.to_string(),
                            checkpoint_ns: req.checkpoint_ns,
                            checkpoint_id: req.checkpoint_id,
                            parent_checkpoint_id: req.parent_checkpoint_id,
                            checkpoint: req.checkpoint,
                            metadata: req.metadata,
                            channel_versions: req.channel_versions,
                            version,
                            created_at: now(),
                            delta_roots: chains.checkpoint,
                        };
                        vec![ThreadChange::Put {
                            checkpoint: Box::new(checkpoint),
                            blobs,
                        }]
                    })
                    .await
            })
            .await?;
        Ok(PutThreadCheckpointResponse {
            thread_id: thread,
            checkpoint_ns: ns,
            checkpoint_id: id,
            version,
        })
    }

    /// `POST /v1/threads/{id}/writes`: returns the thread's version.
    pub async fn put_thread_writes(
        self: &Arc<Self>,
        thread: String,
        req: PutThreadWritesRequest,
        durability: Durability,
    ) -> EngineResult<u64> {
        check_writes(&req)?;
        self.change_thread(thread, durability, move |_, version| {
            let writes = req
                .writes
                .into_iter()
                .map(|w| StoredWrite {
                    checkpoint_ns: req.checkpoint_ns.clone(),
                    checkpoint_id: req.checkpoint_id.clone(),
                    write: ThreadWrite {
                        task_id: req.task_id.clone(),
                        task_path: req.task_path.clone(),
                        idx: w.idx,
                        channel: w.channel,
                        value: w.value,
                    },
                    version,
                })
                .collect();
            vec![ThreadChange::Writes { writes }]
        })
        .await
    }

    /// `DELETE /v1/threads/{id}`: the thread's checkpoints and the agent itself.
    pub async fn delete_thread(
        self: &Arc<Self>,
        thread: String,
        durability: Durability,
    ) -> EngineResult<()> {
        self.delete(thread, Precondition::None, durability)
            .await
            .map(|_| ())
    }
}
