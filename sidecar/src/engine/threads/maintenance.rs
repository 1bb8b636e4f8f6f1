//! Copy, prune, delete for runs and retention: computed from a consistent read under
//! the threads' locks and logged as explicit lists of what they add or remove.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use agentstate_protocol::{
    CheckpointsDeletedResponse, CopyThreadResponse, Durability, PruneStrategy,
};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::chains::used_keys;
use super::checks::invalid;
use super::{thread_record, RETENTION_THREADS_MAX, THREAD_CHECKPOINTS_MAX};
use crate::config::RetentionPolicy;
use crate::engine::{now, Engine, EngineError, EngineResult, PAGE_LIMIT_MAX};
use crate::model::{
    BlobKey, CheckpointKey, ExportedThread, Op, StoredBlob, StoredWrite, ThreadChange,
    ThreadCheckpoint,
};
use crate::store::{cutoff, ThreadQuery};
use crate::validate;

/// What retention (and a prune keeping the latest: `max_count` 1) drops from a thread's
/// checkpoints: per namespace, those past the newest `max_count` and those created
/// before `cutoff`, never the newest.
pub(super) fn beyond_retention(
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

impl Engine {
    /// A thread's checkpoints up to its version `up_to`, oldest first, with the blobs
    /// they are made of as stored (deltas as deltas) and their pending writes: what an
    /// export holds of it.
    pub(in crate::engine) async fn thread_as_stored(
        &self,
        thread: &str,
        up_to: u64,
    ) -> EngineResult<ExportedThread> {
        let mut rows = self.all_rows(thread).await?;
        rows.retain(|c| c.version <= up_to);
        if rows.is_empty() {
            return Ok(ExportedThread::default());
        }
        rows.reverse();
        let pending = self.pending_threads(Some(thread));
        let (held, mut writes) = self.parts(&rows, &pending).await?;
        let mut out = ExportedThread::default();
        let mut seen = BTreeSet::new();
        for c in &rows {
            for key in used_keys(c, &held) {
                let Some(b) = held.get(&(thread.to_string(), key.clone())) else {
                    continue;
                };
                if b.version <= up_to && seen.insert(key) {
                    out.blobs.push((**b).clone());
                }
            }
            let of = writes
                .remove(&(thread.to_string(), c.key()))
                .unwrap_or_default();
            out.writes.extend(of.into_iter().map(|write| StoredWrite {
                checkpoint_ns: c.checkpoint_ns.clone(),
                checkpoint_id: c.checkpoint_id.clone(),
                write,
                version: up_to,
            }));
        }
        out.checkpoints = rows.into_iter().map(Arc::unwrap_or_clone).collect();
        Ok(out)
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
    pub(super) async fn drop_checkpoints(
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
}
