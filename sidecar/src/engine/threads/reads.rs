//! Reads of threads: the latest checkpoint (from memory when hot), searches, and
//! checkpoints made whole (deltas put together, pending writes merged), the backlog
//! first and then the backend.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use agentstate_protocol::{
    ChannelHistory, DeltaHistoryRequest, DeltaHistoryResponse, SearchCheckpointsRequest,
    ThreadCheckpointTuple, ThreadWrite,
};
use serde_json::Value;

use super::chains::whole;
use super::checks::{check_ns, invalid};
use super::{
    matches, order, purged, Blobs, Order, Pending, Writes, ANCESTORS_MAX, SEARCH_LIMIT_DEFAULT,
    THREAD_CHECKPOINTS_MAX,
};
use crate::cache::{merge_write, HeadLookup, ORPHANS_MAX};
use crate::engine::{Engine, EngineError, EngineResult, PAGE_LIMIT_MAX};
use crate::metrics as m;
use crate::model::{BlobKey, CheckpointKey, DeltaRoot, ThreadCheckpoint};
use crate::store::ThreadQuery;
use crate::validate;

impl Engine {
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
    pub(super) async fn search_one(
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
    pub(super) async fn orphan_writes(
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
    pub(super) async fn merged_writes(
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
    pub(super) fn pending_threads(&self, thread: Option<&str>) -> HashMap<String, Pending> {
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
    pub(super) async fn checkpoint_rows(
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
    pub(super) async fn all_rows(&self, thread: &str) -> EngineResult<Vec<Arc<ThreadCheckpoint>>> {
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
    pub(super) async fn parts(
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

    /// Makes checkpoints whole: their channel values (deltas put together) and pending
    /// writes.
    pub(super) async fn tuples(
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
