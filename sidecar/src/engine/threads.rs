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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use agentstate_protocol::{
    ChannelHistory, CheckpointsDeletedResponse, CopyThreadResponse, DeltaHistoryRequest,
    DeltaHistoryResponse, Durability, PruneStrategy, PutThreadCheckpointRequest,
    PutThreadCheckpointResponse, PutThreadWritesRequest, SearchCheckpointsRequest, ThreadBlob,
    ThreadCheckpointTuple, ThreadWrite,
};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::ops;
use super::{now, Engine, EngineError, EngineResult, Precondition, PAGE_LIMIT_MAX};
use crate::backlog::ThreadDirt;
use crate::cache::{merge_write, Chains, HeadLookup, ORPHANS_MAX};
use crate::config::RetentionPolicy;
use crate::delta;
use crate::metrics as m;
use crate::model::{
    AgentRecord, BlobKey, CheckpointKey, Current, DeltaRoot, Doc, Op, PersistedState, StoredBlob,
    StoredWrite, ThreadChange, ThreadCheckpoint, Tombstone,
};
use crate::store::{cutoff, BlobRange, ThreadQuery};
use crate::validate;

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
/// Longest namespace (and task path), in characters.
const NS_CHARS_MAX: usize = 1024;

fn invalid(e: impl ToString) -> EngineError {
    EngineError::Validation(e.to_string())
}

/// Namespaces may be empty (the root); otherwise bounded, no control characters.
fn check_ns(ns: &str) -> EngineResult<()> {
    if ns.chars().count() > NS_CHARS_MAX || ns.chars().any(char::is_control) {
        return Err(invalid(format!(
            "checkpoint_ns must be at most {NS_CHARS_MAX} characters, none of them a control"
        )));
    }
    Ok(())
}

fn check_put(req: &PutThreadCheckpointRequest) -> EngineResult<()> {
    check_ns(&req.checkpoint_ns)?;
    validate::name("checkpoint_id", &req.checkpoint_id).map_err(invalid)?;
    if let Some(p) = &req.parent_checkpoint_id {
        validate::name("parent_checkpoint_id", p).map_err(invalid)?;
    }
    validate::name("checkpoint.type", &req.checkpoint.type_).map_err(invalid)?;
    validate::document_tree("metadata", &Value::Object(req.metadata.clone())).map_err(invalid)?;
    for (channel, version) in &req.channel_versions {
        validate::name("channel", channel).map_err(invalid)?;
        validate::name("channel version", version).map_err(invalid)?;
    }
    for b in &req.blobs {
        validate::name("blob channel", &b.channel).map_err(invalid)?;
        validate::name("blob version", &b.version).map_err(invalid)?;
        validate::name("blob type", &b.value.type_).map_err(invalid)?;
        if let Some(base) = &b.extends {
            validate::name("blob extends", base).map_err(invalid)?;
            // What makes a delta inapplicable is a conflict: the client sends the whole
            // value instead.
            let refuse = |why: String| {
                EngineError::Conflict(format!(
                    "blob {} extends {base}: {why}; send the whole value",
                    b.channel
                ))
            };
            // Versions grow along a chain, so a chain lies in one range of versions.
            if *base >= b.version {
                return Err(refuse("a delta must extend an older version".into()));
            }
            delta::check(&b.value).map_err(|e| refuse(e.to_string()))?;
            if req.parent_checkpoint_id.is_none() {
                return Err(refuse("the checkpoint has no parent".into()));
            }
        }
    }
    Ok(())
}

fn check_writes(req: &PutThreadWritesRequest) -> EngineResult<()> {
    check_ns(&req.checkpoint_ns)?;
    validate::name("checkpoint_id", &req.checkpoint_id).map_err(invalid)?;
    validate::name("task_id", &req.task_id).map_err(invalid)?;
    if req.task_path.chars().count() > NS_CHARS_MAX || req.task_path.chars().any(char::is_control) {
        return Err(invalid(format!(
            "task_path must be at most {NS_CHARS_MAX} characters, none of them a control"
        )));
    }
    if req.writes.is_empty() {
        return Err(invalid("writes must not be empty"));
    }
    for w in &req.writes {
        validate::name("write channel", &w.channel).map_err(invalid)?;
        validate::name("write type", &w.value.type_).map_err(invalid)?;
    }
    Ok(())
}

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

/// A stored blob's whole value: itself, or its chain put together (`find` finds a
/// version of the same channel).
fn whole<'a>(
    thread: &str,
    b: &'a StoredBlob,
    find: impl Fn(&str) -> Option<&'a Arc<StoredBlob>>,
) -> EngineResult<ThreadBlob> {
    let broken = |why: String| {
        EngineError::Internal(format!(
            "thread {thread}: blob {} at {}: {why}",
            b.blob.channel, b.blob.version
        ))
    };
    let mut parts = vec![&b.blob.value];
    let mut at = b;
    while let Some(base) = &at.blob.extends {
        if parts.len() > delta::CHAIN_MAX + 1 {
            return Err(broken("its chain does not end".into()));
        }
        at = find(base).ok_or_else(|| broken(format!("version {base} under it is missing")))?;
        parts.push(&at.blob.value);
    }
    if parts.len() == 1 {
        return Ok(ThreadBlob {
            extends: None,
            ..b.blob.clone()
        });
    }
    parts.reverse();
    let value = delta::materialize(&parts).map_err(|e| broken(e.to_string()))?;
    Ok(ThreadBlob {
        channel: b.blob.channel.clone(),
        version: b.blob.version.clone(),
        value,
        extends: None,
    })
}

/// Every blob a checkpoint's values are made of: each channel's, and a delta's chain
/// (as far as `blobs` holds it).
fn used_keys(c: &ThreadCheckpoint, blobs: &Blobs) -> Vec<BlobKey> {
    let mut out = Vec::with_capacity(c.channel_versions.len());
    for key in c.blob_keys() {
        let mut at = blobs.get(&(c.thread_id.clone(), key.clone()));
        out.push(key);
        while let Some(base) = at.and_then(|b| b.blob.extends.as_ref()) {
            let key = BlobKey {
                version: base.clone(),
                ..out[out.len() - 1].clone()
            };
            at = blobs.get(&(c.thread_id.clone(), key.clone()));
            out.push(key);
            if out.len() > c.channel_versions.len() * (delta::CHAIN_MAX + 1) {
                break;
            }
        }
    }
    out
}

/// The roots a put gives its delta blobs (by channel and version) and its checkpoint.
#[derive(Default)]
struct PutChains {
    blobs: HashMap<(String, String), DeltaRoot>,
    checkpoint: BTreeMap<String, DeltaRoot>,
}

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

/// What retention (and a prune keeping the latest: `max_count` 1) drops from a thread's
/// checkpoints: per namespace, those past the newest `max_count` and those created
/// before `cutoff`, never the newest.
fn beyond_retention(
    rows: &[Arc<ThreadCheckpoint>],
    max_count: Option<u64>,
    cutoff: Option<DateTime<Utc>>,
) -> BTreeSet<CheckpointKey> {
    let mut by_ns: HashMap<&str, Vec<&ThreadCheckpoint>> = HashMap::new();
    for c in rows {
        by_ns.entry(&c.checkpoint_ns).or_default().push(c);
    }
    let mut out = BTreeSet::new();
    for mut cs in by_ns.into_values() {
        cs.sort_by(|a, b| b.checkpoint_id.cmp(&a.checkpoint_id));
        for (i, c) in cs.iter().enumerate().skip(1) {
            let over = max_count.is_some_and(|n| i as u64 >= n);
            if over || cutoff.is_some_and(|t| c.created_at < t) {
                out.insert(c.key());
            }
        }
    }
    out
}

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

    /// The roots of a put's deltas (under the thread's lock): each delta blob's, and
    /// the checkpoint's for every channel whose value is a delta, its own or one it
    /// keeps from before. A delta whose base is not held, or that would stand on more
    /// than [`delta::CHAIN_MAX`] deltas, is refused (409): the client sends the whole
    /// value instead.
    async fn put_chains(
        &self,
        thread: &str,
        req: &PutThreadCheckpointRequest,
    ) -> EngineResult<PutChains> {
        let ns = &req.checkpoint_ns;
        let parent = match &req.parent_checkpoint_id {
            Some(id) => self.checkpoint_chains(thread, ns, id).await?,
            None => None,
        };
        let mut out = PutChains::default();
        for b in &req.blobs {
            let Some(base) = &b.extends else { continue };
            let refuse = |why: String| {
                EngineError::Conflict(format!(
                    "blob {} extends {base}: {why}; send the whole value",
                    b.channel
                ))
            };
            let Some(under) = self
                .root_of(thread, ns, parent.as_ref(), &b.channel, base)
                .await?
            else {
                return Err(refuse(format!(
                    "thread {thread} does not hold it in namespace {ns:?}"
                )));
            };
            let root = match under {
                Some(r) => DeltaRoot {
                    root: r.root,
                    depth: r.depth + 1,
                },
                None => DeltaRoot {
                    root: base.clone(),
                    depth: 1,
                },
            };
            if root.depth as usize > delta::CHAIN_MAX {
                return Err(refuse(format!(
                    "it would stand on more than {} deltas",
                    delta::CHAIN_MAX
                )));
            }
            out.blobs
                .insert((b.channel.clone(), b.version.clone()), root);
        }
        for (channel, version) in &req.channel_versions {
            let own = req
                .blobs
                .iter()
                .any(|b| b.channel == *channel && b.version == *version);
            let root = match out.blobs.get(&(channel.clone(), version.clone())) {
                Some(root) => Some(root.clone()),
                None if own => None,
                None => self
                    .root_of(thread, ns, parent.as_ref(), channel, version)
                    .await?
                    .flatten(),
            };
            if let Some(root) = root {
                out.checkpoint.insert(channel.clone(), root);
            }
        }
        Ok(out)
    }

    /// A checkpoint's channel versions and delta roots: from memory when it is the
    /// thread's latest or last put, else from the backlog or the backend.
    async fn checkpoint_chains(
        &self,
        thread: &str,
        ns: &str,
        id: &str,
    ) -> EngineResult<Option<Chains>> {
        if let Some(known) = self.thread_heads.chains(thread, ns, id) {
            return Ok(Some(known));
        }
        let q = SearchCheckpointsRequest {
            thread_id: Some(thread.to_string()),
            checkpoint_ns: Some(ns.to_string()),
            checkpoint_id: Some(id.to_string()),
            limit: Some(1),
            ..Default::default()
        };
        let pending = self.pending_threads(Some(thread));
        let rows = self.checkpoint_rows(&q, &pending, 1).await?;
        Ok(rows.first().map(|c| Chains {
            channel_versions: c.channel_versions.clone(),
            delta_roots: c.delta_roots.clone(),
        }))
    }

    /// The root of a blob the thread holds (`Some(None)`: a whole value), or `None` if
    /// it does not hold it. The parent answers when it has that version.
    async fn root_of(
        &self,
        thread: &str,
        ns: &str,
        parent: Option<&Chains>,
        channel: &str,
        version: &str,
    ) -> EngineResult<Option<Option<DeltaRoot>>> {
        let at_parent = parent.filter(|p| {
            p.channel_versions
                .get(channel)
                .is_some_and(|v| v == version)
        });
        if let Some(p) = at_parent {
            return Ok(Some(p.delta_roots.get(channel).cloned()));
        }
        let key = BlobKey {
            ns: ns.to_string(),
            channel: channel.to_string(),
            version: version.to_string(),
        };
        let pending = self.backlog.thread(thread);
        if let Some((dirt, _)) = &pending {
            if let Some((_, b)) = dirt.blobs.get(&key) {
                return Ok(Some(b.root.clone()));
            }
            if dirt.dropped_blobs.contains_key(&key) {
                return Ok(None);
            }
        }
        let stored = self.store.thread_blobs(thread, vec![key]).await?;
        Ok(stored
            .into_iter()
            .find(|b| !purged(pending.as_ref(), b.version))
            .map(|b| b.root))
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

    /// `GET /v1/threads/{id}/checkpoint`: one checkpoint, or the latest of a namespace.
    /// The latest is answered from memory when the thread is hot.
    pub async fn thread_checkpoint(
        &self,
        thread: &str,
        ns: String,
        checkpoint_id: Option<String>,
    ) -> EngineResult<ThreadCheckpointTuple> {
        check_ns(&ns)?;
        let not_found = || {
            EngineError::NotFound(match &checkpoint_id {
                Some(id) => format!("thread {thread} has no checkpoint {id} in namespace {ns:?}"),
                None => format!("thread {thread} has no checkpoint in namespace {ns:?}"),
            })
        };
        let from_memory = |lookup: HeadLookup| match lookup {
            HeadLookup::Known(Some(t))
                if checkpoint_id
                    .as_ref()
                    .is_none_or(|id| *id == t.checkpoint_id) =>
            {
                Some(Ok((*t).clone()))
            }
            HeadLookup::Known(None) if checkpoint_id.is_none() => Some(Err(not_found())),
            _ => None,
        };
        if let Some(answer) = from_memory(self.thread_heads.get(thread, &ns)) {
            metrics::counter!(m::THREAD_CACHE_READS_TOTAL, "outcome" => "hit").increment(1);
            return answer;
        }
        metrics::counter!(m::THREAD_CACHE_READS_TOTAL, "outcome" => "miss").increment(1);
        if checkpoint_id.is_none() {
            // Filled under the thread's lock, so no change can slip in between.
            let _g = self.lock(&[thread]).await;
            if let Some(answer) = from_memory(self.thread_heads.get(thread, &ns)) {
                return answer;
            }
            let latest = self.search_one(thread, &ns, None).await?;
            let after = latest
                .as_ref()
                .map_or("", |(t, _)| t.checkpoint_id.as_str());
            if let Some(orphans) = self.orphan_writes(thread, &ns, after).await? {
                self.thread_heads.fill(thread, &ns, latest.clone(), orphans);
            }
            return latest.map(|(t, _)| t).ok_or_else(not_found);
        }
        self.search_one(thread, &ns, checkpoint_id.clone())
            .await?
            .map(|(t, _)| t)
            .ok_or_else(not_found)
    }

    /// One checkpoint (the latest without an id), whole, with its chains.
    async fn search_one(
        &self,
        thread: &str,
        ns: &str,
        checkpoint_id: Option<String>,
    ) -> EngineResult<Option<(ThreadCheckpointTuple, BTreeMap<String, DeltaRoot>)>> {
        let q = SearchCheckpointsRequest {
            thread_id: Some(thread.to_string()),
            checkpoint_ns: Some(ns.to_string()),
            checkpoint_id,
            limit: Some(1),
            ..Default::default()
        };
        let pending = self.pending_threads(Some(thread));
        let rows = self.checkpoint_rows(&q, &pending, 1).await?;
        let roots = rows
            .first()
            .map(|c| c.delta_roots.clone())
            .unwrap_or_default();
        Ok(self.tuples(rows, &pending).await?.pop().map(|t| (t, roots)))
    }

    /// The writes against checkpoints of `ns` above `after` (stored or not), by
    /// checkpoint id, or `None` if there are too many to keep track of.
    async fn orphan_writes(
        &self,
        thread: &str,
        ns: &str,
        after: &str,
    ) -> EngineResult<Option<HashMap<String, Vec<ThreadWrite>>>> {
        let limit = ORPHANS_MAX as u32 + 1;
        let mut ids: BTreeSet<String> = self
            .store
            .thread_write_ids_after(thread, ns, after, limit)
            .await?
            .into_iter()
            .collect();
        let pending = self.pending_threads(Some(thread));
        if let Some((dirt, _)) = pending.get(thread) {
            ids.extend(
                dirt.writes
                    .keys()
                    .filter(|k| k.checkpoint.ns == ns && k.checkpoint.id.as_str() > after)
                    .map(|k| k.checkpoint.id.clone()),
            );
        }
        if ids.len() > ORPHANS_MAX {
            return Ok(None);
        }
        let keys: Vec<CheckpointKey> = ids
            .into_iter()
            .map(|id| CheckpointKey {
                ns: ns.to_string(),
                id,
            })
            .collect();
        let writes = self
            .merged_writes(thread, keys, pending.get(thread))
            .await?;
        Ok(Some(writes.into_iter().map(|(k, w)| (k.id, w)).collect()))
    }

    /// The writes of these checkpoints: stored ones (unless a pending drop or delete
    /// hides them) merged with unflushed ones, at `idx >= 0` the first of a key winning
    /// (a stored one is older), below 0 the last.
    async fn merged_writes(
        &self,
        thread: &str,
        keys: Vec<CheckpointKey>,
        p: Option<&Pending>,
    ) -> EngineResult<BTreeMap<CheckpointKey, Vec<ThreadWrite>>> {
        // Stored ones first (they are older), then unflushed ones, by the same rule the
        // cache and the backend apply.
        let mut out: BTreeMap<CheckpointKey, Vec<ThreadWrite>> = BTreeMap::new();
        for w in self.store.thread_writes(thread, keys.clone()).await? {
            let key = CheckpointKey {
                ns: w.checkpoint_ns,
                id: w.checkpoint_id,
            };
            let dropped = p.is_some_and(|(d, _)| d.dropped_checkpoints.contains_key(&key));
            if !dropped && !purged(p, w.version) {
                merge_write(out.entry(key).or_default(), &w.write);
            }
        }
        if let Some((d, _)) = p {
            for key in &keys {
                for (_, (_, w)) in d.writes.iter().filter(|(wk, _)| &wk.checkpoint == key) {
                    merge_write(out.entry(key.clone()).or_default(), &w.write);
                }
            }
        }
        Ok(out)
    }

    /// `POST /v1/checkpoints/search`: greatest id first.
    pub async fn search_checkpoints(
        &self,
        q: SearchCheckpointsRequest,
    ) -> EngineResult<Vec<ThreadCheckpointTuple>> {
        if let Some(t) = &q.thread_id {
            validate::agent_id(t).map_err(|e| EngineError::Malformed(format!("thread id: {e}")))?;
        }
        if let Some(ns) = &q.checkpoint_ns {
            check_ns(ns)?;
        }
        // Stored metadata passed the document rules, so a filter that breaks them could
        // match nothing; and MongoDB would read a `$` key as an operator.
        if let Some(filter) = &q.filter {
            validate::document_tree("filter", &Value::Object(filter.clone())).map_err(invalid)?;
        }
        let limit = q.limit.unwrap_or(SEARCH_LIMIT_DEFAULT);
        if !(1..=PAGE_LIMIT_MAX).contains(&limit) {
            return Err(EngineError::Malformed(format!(
                "limit must be an integer from 1 to {PAGE_LIMIT_MAX}, got {limit}"
            )));
        }
        let pending = self.pending_threads(q.thread_id.as_deref());
        let rows = self.checkpoint_rows(&q, &pending, limit as usize).await?;
        self.tuples(rows, &pending).await
    }

    /// What the backlog holds of one thread, or of every thread.
    fn pending_threads(&self, thread: Option<&str>) -> HashMap<String, Pending> {
        match thread {
            Some(t) => self
                .backlog
                .thread(t)
                .map(|p| (t.to_string(), p))
                .into_iter()
                .collect(),
            None => self
                .backlog
                .threads()
                .into_iter()
                .map(|(t, d, p)| (t, (d, p)))
                .collect(),
        }
    }

    /// The checkpoints matching `q`, unflushed ones merged in, at most `limit`.
    async fn checkpoint_rows(
        &self,
        q: &SearchCheckpointsRequest,
        pending: &HashMap<String, Pending>,
        limit: usize,
    ) -> EngineResult<Vec<Arc<ThreadCheckpoint>>> {
        let mut found: BTreeMap<Order, Arc<ThreadCheckpoint>> = BTreeMap::new();
        let mut hidden = 0usize;
        for (dirt, _) in pending.values() {
            hidden += dirt.checkpoints.len() + dirt.dropped_checkpoints.len();
            for (_, c) in dirt.checkpoints.values() {
                if matches(q, c) {
                    found.insert(order(c), c.clone());
                }
            }
        }
        // Stored rows may be hidden by pending drops, puts and deletes: read pages until
        // `limit` visible rows precede the page's end, or the store has no more.
        let page = (limit + hidden).min(10_000) as u32;
        let mut before = q.before.clone();
        loop {
            let rows = self
                .store
                .thread_checkpoints(ThreadQuery {
                    thread_id: q.thread_id.clone(),
                    checkpoint_ns: q.checkpoint_ns.clone(),
                    checkpoint_id: q.checkpoint_id.clone(),
                    before: before.clone(),
                    run_ids: None,
                    filter: q.filter.clone().unwrap_or_default(),
                    limit: page,
                })
                .await?;
            let full = rows.len() >= page as usize;
            let last = rows.last().map(order);
            for c in rows {
                let p = pending.get(&c.thread_id);
                let key = c.key();
                let superseded = p.is_some_and(|(d, _)| {
                    d.checkpoints.contains_key(&key) || d.dropped_checkpoints.contains_key(&key)
                });
                if superseded || purged(p, c.version) || !matches(q, &c) {
                    continue;
                }
                found.entry(order(&c)).or_insert_with(|| Arc::new(c));
            }
            let Some(last) = last else { break };
            let settled = found.range(..=last.clone()).count();
            if !full || settled >= limit {
                break;
            }
            before = Some(last.0 .0);
        }
        Ok(found.into_values().take(limit).collect())
    }

    /// Every checkpoint of a thread (all namespaces), greatest id first.
    async fn all_rows(&self, thread: &str) -> EngineResult<Vec<Arc<ThreadCheckpoint>>> {
        let q = SearchCheckpointsRequest {
            thread_id: Some(thread.to_string()),
            ..Default::default()
        };
        let pending = self.pending_threads(Some(thread));
        let rows = self
            .checkpoint_rows(&q, &pending, THREAD_CHECKPOINTS_MAX + 1)
            .await?;
        if rows.len() > THREAD_CHECKPOINTS_MAX {
            return Err(invalid(format!(
                "thread {thread} has more than {THREAD_CHECKPOINTS_MAX} checkpoints; prune it first"
            )));
        }
        Ok(rows)
    }

    /// The blobs (as stored: deltas as deltas) and pending writes of checkpoints.
    async fn parts(
        &self,
        rows: &[Arc<ThreadCheckpoint>],
        pending: &HashMap<String, Pending>,
    ) -> EngineResult<(Blobs, Writes)> {
        let blobs = self.blobs_of(rows, pending, true).await?;
        let mut writes = Writes::new();
        let mut by_thread: BTreeMap<&str, Vec<CheckpointKey>> = BTreeMap::new();
        for c in rows {
            by_thread.entry(&c.thread_id).or_default().push(c.key());
        }
        for (thread, keys) in by_thread {
            for (key, w) in self
                .merged_writes(thread, keys, pending.get(thread))
                .await?
            {
                writes.insert((thread.to_string(), key), w);
            }
        }
        Ok((blobs, writes))
    }

    /// The blobs checkpoints' values are made of, as stored: the chains under deltas
    /// (one range of versions per chain), and with `whole_values` the rest too.
    async fn blobs_of(
        &self,
        rows: &[Arc<ThreadCheckpoint>],
        pending: &HashMap<String, Pending>,
        whole_values: bool,
    ) -> EngineResult<Blobs> {
        let mut by_thread: BTreeMap<&str, Vec<&ThreadCheckpoint>> = BTreeMap::new();
        for c in rows {
            by_thread.entry(&c.thread_id).or_default().push(c);
        }
        let mut blobs = Blobs::new();
        for (thread, cps) in by_thread {
            let p = pending.get(thread);
            let mut ranges: BTreeMap<(String, String, String), String> = BTreeMap::new();
            let mut keys = BTreeSet::new();
            for c in &cps {
                for key in c.blob_keys() {
                    match c.delta_roots.get(&key.channel) {
                        Some(r) => {
                            let to = ranges
                                .entry((key.ns.clone(), key.channel.clone(), r.root.clone()))
                                .or_default();
                            if key.version > *to {
                                *to = key.version.clone();
                            }
                        }
                        None if whole_values => {
                            keys.insert(key);
                        }
                        None => {}
                    }
                }
            }
            self.fetch_blobs(thread, keys, p, &mut blobs).await?;
            for ((ns, channel, from), to) in ranges {
                let range = BlobRange {
                    ns,
                    channel,
                    from,
                    to,
                };
                self.fetch_range(thread, range, p, &mut blobs).await?;
            }
        }
        Ok(blobs)
    }

    /// Adds a thread's blobs in `range` to `out`: the backend's, then unflushed ones.
    async fn fetch_range(
        &self,
        thread: &str,
        range: BlobRange,
        p: Option<&Pending>,
        out: &mut Blobs,
    ) -> EngineResult<()> {
        let dropped = |k: &BlobKey| p.is_some_and(|(d, _)| d.dropped_blobs.contains_key(k));
        for b in self.store.thread_blob_range(thread, range.clone()).await? {
            let key = b.key();
            if !purged(p, b.version) && !dropped(&key) {
                out.insert((thread.to_string(), key), Arc::new(b));
            }
        }
        if let Some((d, _)) = p {
            let within = |k: &BlobKey| {
                k.ns == range.ns
                    && k.channel == range.channel
                    && (range.from.as_str()..=range.to.as_str()).contains(&k.version.as_str())
            };
            for (key, (_, b)) in d.blobs.iter().filter(|(k, _)| within(k)) {
                out.insert((thread.to_string(), key.clone()), b.clone());
            }
        }
        Ok(())
    }

    /// Adds a thread's blobs at `keys` to `out`: unflushed ones first, the rest from the
    /// backend.
    async fn fetch_blobs(
        &self,
        thread: &str,
        keys: BTreeSet<BlobKey>,
        p: Option<&Pending>,
        out: &mut Blobs,
    ) -> EngineResult<()> {
        let mut missing = Vec::new();
        for key in keys {
            match p.and_then(|(d, _)| d.blobs.get(&key)) {
                Some((_, b)) => {
                    out.insert((thread.to_string(), key), b.clone());
                }
                None if p.is_some_and(|(d, _)| d.dropped_blobs.contains_key(&key)) => {}
                None => missing.push(key),
            }
        }
        for b in self.store.thread_blobs(thread, missing).await? {
            if !purged(p, b.version) {
                out.insert((thread.to_string(), b.key()), Arc::new(b));
            }
        }
        Ok(())
    }

    /// Makes checkpoints whole: their channel values (deltas put together) and pending
    /// writes.
    async fn tuples(
        &self,
        rows: Vec<Arc<ThreadCheckpoint>>,
        pending: &HashMap<String, Pending>,
    ) -> EngineResult<Vec<ThreadCheckpointTuple>> {
        let (blobs, mut writes) = self.parts(&rows, pending).await?;
        rows.into_iter()
            .map(|c| {
                let c = Arc::unwrap_or_clone(c);
                let thread = c.thread_id.clone();
                let mut values = Vec::with_capacity(c.channel_versions.len());
                for (channel, version) in &c.channel_versions {
                    let key = |version: &str| {
                        let key = BlobKey {
                            ns: c.checkpoint_ns.clone(),
                            channel: channel.clone(),
                            version: version.to_string(),
                        };
                        (thread.clone(), key)
                    };
                    if let Some(b) = blobs.get(&key(version)) {
                        values.push(whole(&thread, b, |v| blobs.get(&key(v)))?);
                    }
                }
                let tuple_writes = writes
                    .remove(&(thread.clone(), c.key()))
                    .unwrap_or_default();
                Ok(ThreadCheckpointTuple {
                    thread_id: c.thread_id,
                    checkpoint_ns: c.checkpoint_ns,
                    checkpoint_id: c.checkpoint_id,
                    parent_checkpoint_id: c.parent_checkpoint_id,
                    checkpoint: c.checkpoint,
                    metadata: c.metadata,
                    channel_versions: c.channel_versions,
                    blobs: values,
                    writes: tuple_writes,
                })
            })
            .collect()
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

    /// `POST /v1/threads/{id}/copy`: every checkpoint of `source`, with its blobs and
    /// writes, into `target`, as one change.
    pub async fn copy_thread(
        self: &Arc<Self>,
        source: String,
        target: String,
        durability: Durability,
    ) -> EngineResult<CopyThreadResponse> {
        validate::agent_id(&target)
            .map_err(|e| EngineError::Malformed(format!("target_thread_id: {e}")))?;
        if source == target {
            return Err(invalid("a thread cannot be copied onto itself"));
        }
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&source, &target]).await;
            let rows = engine.all_rows(&source).await?;
            if rows.is_empty() {
                return Err(EngineError::NotFound(format!(
                    "thread {source} has no checkpoints to copy"
                )));
            }
            let pending = engine.pending_threads(Some(&source));
            // As stored: a delta is copied as a delta, with the chain it stands on.
            let (blobs_held, mut writes) = engine.parts(&rows, &pending).await?;
            let mut blobs = blobs_held.clone();
            let current = engine.current_to_change(&target).await?;
            let at = now();
            let record = thread_record(&target, current.as_ref(), at);
            let version = record.state.version;
            let copied = rows.len() as u64;
            let mut changes = Vec::with_capacity(rows.len() * 2);
            for c in rows.into_iter().rev() {
                let c = Arc::unwrap_or_clone(c);
                let keys = used_keys(&c, &blobs_held);
                let blobs = keys
                    .into_iter()
                    .filter_map(|k| blobs.remove(&(source.clone(), k)))
                    .map(|b| StoredBlob {
                        version,
                        ..Arc::unwrap_or_clone(b)
                    })
                    .collect();
                let writes: Vec<StoredWrite> = writes
                    .remove(&(source.clone(), c.key()))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|write| StoredWrite {
                        checkpoint_ns: c.checkpoint_ns.clone(),
                        checkpoint_id: c.checkpoint_id.clone(),
                        write,
                        version,
                    })
                    .collect();
                changes.push(ThreadChange::Put {
                    checkpoint: Box::new(ThreadCheckpoint {
                        thread_id: target.clone(),
                        version,
                        created_at: at,
                        ..c
                    }),
                    blobs,
                });
                if !writes.is_empty() {
                    changes.push(ThreadChange::Writes { writes });
                }
            }
            let mut op = Op::Thread {
                record: record.into(),
                changes,
            };
            let lsn = engine.log(&mut op, durability).await?;
            Ok((
                CopyThreadResponse {
                    checkpoints_copied: copied,
                },
                Some(lsn),
            ))
        })
        .await
    }

    /// `POST /v1/checkpoints/prune`.
    pub async fn prune_threads(
        self: &Arc<Self>,
        threads: Vec<String>,
        strategy: PruneStrategy,
        durability: Durability,
    ) -> EngineResult<CheckpointsDeletedResponse> {
        // Counted as given, duplicates included, as the description's `maxItems` counts.
        if threads.len() > PAGE_LIMIT_MAX as usize {
            return Err(invalid(format!(
                "at most {PAGE_LIMIT_MAX} thread ids per call, not {}",
                threads.len()
            )));
        }
        self.drop_checkpoints(threads, durability, move |rows| match strategy {
            PruneStrategy::Delete => rows.iter().map(|c| c.key()).collect(),
            PruneStrategy::KeepLatest => beyond_retention(rows, Some(1), None),
        })
        .await
    }

    /// `POST /v1/checkpoints/delete_for_runs`: checkpoints whose `metadata.run_id` is
    /// one of `run_ids`, in any thread.
    pub async fn delete_for_runs(
        self: &Arc<Self>,
        run_ids: Vec<String>,
        durability: Durability,
    ) -> EngineResult<CheckpointsDeletedResponse> {
        if run_ids.len() > PAGE_LIMIT_MAX as usize {
            return Err(invalid(format!(
                "at most {PAGE_LIMIT_MAX} run ids per call, not {}",
                run_ids.len()
            )));
        }
        let runs: BTreeSet<String> = run_ids.iter().cloned().collect();
        let listed = move |c: &ThreadCheckpoint| {
            c.metadata
                .get("run_id")
                .and_then(Value::as_str)
                .is_some_and(|r| runs.contains(r))
        };
        let is_listed = listed.clone();
        let mut threads: BTreeSet<String> = BTreeSet::new();
        for (t, (dirt, _)) in self.pending_threads(None) {
            if dirt
                .checkpoints
                .values()
                .any(|(_, c)| is_listed(c.as_ref()))
            {
                threads.insert(t);
            }
        }
        let stored = self
            .store
            .thread_checkpoints(ThreadQuery {
                run_ids: Some(run_ids.clone()),
                limit: THREAD_CHECKPOINTS_MAX as u32,
                ..Default::default()
            })
            .await?;
        threads.extend(stored.into_iter().map(|c| c.thread_id));
        self.drop_checkpoints(threads.into_iter().collect(), durability, move |rows| {
            rows.iter()
                .filter(|c| listed(c.as_ref()))
                .map(|c| c.key())
                .collect()
        })
        .await
    }

    /// Thins threads' checkpoints to the policy's thread limits; returns how many went.
    /// Logged like a prune, under the threads' locks and over the backlog merged with the
    /// store, so a blob an unflushed checkpoint still uses is kept. Candidates are the
    /// threads the backend finds over a limit and those whose unflushed checkpoints alone
    /// are over the count.
    pub async fn retain_threads(
        self: &Arc<Self>,
        policy: &RetentionPolicy,
        at: DateTime<Utc>,
    ) -> EngineResult<u64> {
        let max_count = policy.thread_checkpoints_max_count.map(|n| n.max(1));
        let cutoff = policy
            .thread_checkpoints_max_age_days
            .map(|d| cutoff(at, d));
        if max_count.is_none() && cutoff.is_none() {
            return Ok(0);
        }
        let mut threads: BTreeSet<String> = self
            .store
            .thread_retention_candidates(max_count, cutoff, RETENTION_THREADS_MAX)
            .await?
            .into_iter()
            .collect();
        if let Some(n) = max_count {
            for (t, (dirt, _)) in self.pending_threads(None) {
                let mut per_ns: HashMap<&str, u64> = HashMap::new();
                for (_, c) in dirt.checkpoints.values() {
                    *per_ns.entry(&c.checkpoint_ns).or_default() += 1;
                }
                if per_ns.values().any(|&count| count > n) {
                    threads.insert(t);
                }
            }
        }
        let threads: Vec<String> = threads.into_iter().collect();
        let mut deleted = 0;
        for some in threads.chunks(PAGE_LIMIT_MAX as usize) {
            deleted += self
                .drop_checkpoints(some.to_vec(), Durability::Local, move |rows| {
                    beyond_retention(rows, max_count, cutoff)
                })
                .await?
                .checkpoints_deleted;
        }
        Ok(deleted)
    }

    /// Removes, in each thread, the checkpoints `choose` picks from all of its
    /// checkpoints, with their writes and the blobs no remaining checkpoint uses; one
    /// WAL record for all the threads.
    async fn drop_checkpoints(
        self: &Arc<Self>,
        mut threads: Vec<String>,
        durability: Durability,
        choose: impl Fn(&[Arc<ThreadCheckpoint>]) -> BTreeSet<CheckpointKey> + Send + 'static,
    ) -> EngineResult<CheckpointsDeletedResponse> {
        threads.sort();
        threads.dedup();
        if threads.len() > PAGE_LIMIT_MAX as usize {
            return Err(invalid(format!(
                "at most {PAGE_LIMIT_MAX} threads per call, not {}",
                threads.len()
            )));
        }
        for t in &threads {
            validate::agent_id(t).map_err(|e| EngineError::Malformed(format!("thread id: {e}")))?;
        }
        let engine = self.clone();
        self.critical(durability, async move {
            let keys: Vec<&str> = threads.iter().map(String::as_str).collect();
            let _g = engine.lock(&keys).await;
            let mut ops = Vec::new();
            let mut deleted = 0u64;
            for thread in &threads {
                let rows = engine.all_rows(thread).await?;
                let drop = choose(&rows);
                if drop.is_empty() {
                    continue;
                }
                // The chains under deltas count as used (only they are read here).
                let pending = engine.pending_threads(Some(thread));
                let chains = engine.blobs_of(&rows, &pending, false).await?;
                let kept: BTreeSet<BlobKey> = rows
                    .iter()
                    .filter(|c| !drop.contains(&c.key()))
                    .flat_map(|c| used_keys(c, &chains))
                    .collect();
                let blobs: BTreeSet<BlobKey> = rows
                    .iter()
                    .filter(|c| drop.contains(&c.key()))
                    .flat_map(|c| used_keys(c, &chains))
                    .filter(|k| !kept.contains(k))
                    .collect();
                deleted += drop.len() as u64;
                let current = engine.current_to_change(thread).await?;
                ops.push(Op::Thread {
                    record: thread_record(thread, current.as_ref(), now()).into(),
                    changes: vec![ThreadChange::Drop {
                        checkpoints: drop.into_iter().collect(),
                        blobs: blobs.into_iter().collect(),
                    }],
                });
            }
            let resp = CheckpointsDeletedResponse {
                checkpoints_deleted: deleted,
            };
            let mut op = match ops.len() {
                0 => return Ok((resp, None)),
                1 => ops.remove(0),
                _ => Op::Batch { ops },
            };
            let lsn = engine.log(&mut op, durability).await?;
            Ok((resp, Some(lsn)))
        })
        .await
    }

    /// `POST /v1/threads/{id}/delta_history`: what each channel contributed along the
    /// checkpoint's ancestors (LangGraph's `get_delta_channel_history`).
    pub async fn delta_history(
        &self,
        thread: &str,
        req: DeltaHistoryRequest,
    ) -> EngineResult<DeltaHistoryResponse> {
        check_ns(&req.checkpoint_ns)?;
        let mut out = DeltaHistoryResponse::default();
        for ch in &req.channels {
            validate::name("channel", ch).map_err(invalid)?;
            out.channels.insert(ch.clone(), ChannelHistory::default());
        }
        let target = match self
            .thread_checkpoint(thread, req.checkpoint_ns.clone(), req.checkpoint_id)
            .await
        {
            Ok(t) => t,
            Err(EngineError::NotFound(_)) => return Ok(out),
            Err(e) => return Err(e),
        };
        let mut remaining: BTreeSet<String> = out.channels.keys().cloned().collect();
        let mut cursor = target.parent_checkpoint_id;
        let mut walked = 0usize;
        while let Some(id) = cursor.take() {
            if remaining.is_empty() {
                break;
            }
            walked += 1;
            if walked > ANCESTORS_MAX {
                return Err(invalid(format!(
                    "more than {ANCESTORS_MAX} ancestors; the thread needs a snapshot"
                )));
            }
            let t = match self
                .thread_checkpoint(thread, req.checkpoint_ns.clone(), Some(id))
                .await
            {
                Ok(t) => t,
                Err(EngineError::NotFound(_)) => break,
                Err(e) => return Err(e),
            };
            // Collected newest first, reversed at the end.
            for w in t.writes.iter().rev() {
                if remaining.contains(&w.channel) {
                    if let Some(h) = out.channels.get_mut(&w.channel) {
                        h.writes.push(w.clone());
                    }
                }
            }
            for b in &t.blobs {
                let current = t.channel_versions.get(&b.channel) == Some(&b.version);
                if current && b.value.type_ != "empty" && remaining.remove(&b.channel) {
                    if let Some(h) = out.channels.get_mut(&b.channel) {
                        h.seed = Some(b.value.clone());
                    }
                }
            }
            cursor = t.parent_checkpoint_id;
        }
        for h in out.channels.values_mut() {
            h.writes.reverse();
        }
        Ok(out)
    }
}
