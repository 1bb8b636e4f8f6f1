//! What the inspector reads of threads (a listing, a checkpoint history without values,
//! one checkpoint decoded) and its one write to them: a fork from an old checkpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

use agentstate_protocol::{
    ChannelView, Durability, InspectorForkRequest, PutThreadCheckpointRequest,
    PutThreadCheckpointResponse, SearchCheckpointsRequest, ThreadCheckpointSummary,
    ThreadHistoryPage, ThreadSummary, ThreadView, ThreadsPage, WriteView,
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;

use super::checks::check_ns;
use crate::engine::{now, Engine, EngineError, EngineResult, PAGE_LIMIT_MAX};
use crate::model::ThreadCheckpoint;
use crate::typed;
use crate::validate;

/// Longest reason an operator may give, in characters.
pub const REASON_MAX: usize = 1000;

/// A reason given for an operator's change: said, and not too long.
pub fn check_reason(reason: &str) -> EngineResult<()> {
    if reason.trim().is_empty() {
        return Err(EngineError::Malformed("reason must not be empty".into()));
    }
    if reason.chars().count() > REASON_MAX {
        return Err(EngineError::Malformed(format!(
            "reason is longer than {REASON_MAX} characters"
        )));
    }
    Ok(())
}

fn summary(c: &ThreadCheckpoint) -> ThreadCheckpointSummary {
    ThreadCheckpointSummary {
        checkpoint_ns: c.checkpoint_ns.clone(),
        checkpoint_id: c.checkpoint_id.clone(),
        parent_checkpoint_id: c.parent_checkpoint_id.clone(),
        metadata: c.metadata.clone(),
    }
}

/// A time-ordered id in LangGraph's form (a UUID version 6, as `uuid6()` makes them), so
/// that a fork sorts after the checkpoints made before it.
fn uuid6(at: DateTime<Utc>) -> String {
    let nanos = at.timestamp_nanos_opt().unwrap_or_default().max(0) as u128;
    // 100 ns intervals since the Gregorian epoch.
    let ts = nanos / 100 + 0x01B2_1DD2_1381_4000;
    let random: u128 = rand::random();
    let n = ((ts >> 12) & 0xFFFF_FFFF_FFFF) << 80
        | (0x6000 | (ts & 0x0FFF)) << 64
        | (0x8000 | (random >> 64 & 0x3FFF)) << 48
        | random & 0xFFFF_FFFF_FFFF;
    let h = format!("{n:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Engine {
    /// `GET /v1/threads`: threads with checkpoints, ids after `cursor`, unflushed ones
    /// included.
    pub async fn list_threads(
        &self,
        prefix: &str,
        cursor: &str,
        limit: u32,
    ) -> EngineResult<ThreadsPage> {
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        // The backlog before the store, so that a thread in transit is seen in one.
        let mut pending: Vec<String> = self
            .backlog
            .threads()
            .into_iter()
            .map(|(t, _, _)| t)
            .filter(|t| t.as_str() > cursor && t.starts_with(prefix))
            .collect();
        pending.sort_unstable();
        let stored = self.store.thread_summaries(prefix, cursor, limit).await?;
        let full = stored.len() >= limit as usize;
        let bound = stored.last().map(|s| s.thread_id.clone()).filter(|_| full);
        let mut rows: BTreeMap<String, ThreadSummary> = stored
            .into_iter()
            .filter(|s| pending.binary_search(&s.thread_id).is_err())
            .map(|s| (s.thread_id.clone(), s))
            .collect();
        for thread in pending
            .iter()
            .filter(|t| bound.as_ref().is_none_or(|b| *t <= b))
            .take(limit as usize)
        {
            let all = self.all_rows(thread).await?;
            if let Some(latest) = all.iter().map(|c| &c.checkpoint_id).max() {
                rows.insert(
                    thread.clone(),
                    ThreadSummary {
                        thread_id: thread.clone(),
                        checkpoints: all.len() as u64,
                        latest_checkpoint_id: latest.clone(),
                    },
                );
            }
        }
        let mut threads: Vec<ThreadSummary> = rows.into_values().collect();
        let next_cursor = if threads.len() > limit as usize {
            threads.truncate(limit as usize);
            threads.last().map(|t| t.thread_id.clone())
        } else if full {
            bound
        } else if pending.len() > limit as usize {
            threads.last().map(|t| t.thread_id.clone())
        } else {
            None
        };
        Ok(ThreadsPage {
            threads,
            next_cursor,
        })
    }

    /// `GET /v1/threads/{id}/history`: checkpoints of a namespace without their values,
    /// greatest id first, ids before `cursor`.
    pub async fn thread_history(
        &self,
        thread: &str,
        ns: String,
        cursor: Option<String>,
        limit: u32,
    ) -> EngineResult<ThreadHistoryPage> {
        check_ns(&ns)?;
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        let q = SearchCheckpointsRequest {
            thread_id: Some(thread.to_string()),
            checkpoint_ns: Some(ns),
            before: cursor,
            ..Default::default()
        };
        let pending = self.pending_threads(Some(thread));
        let rows = self.checkpoint_rows(&q, &pending, limit as usize).await?;
        let next_cursor = (rows.len() >= limit as usize)
            .then(|| rows.last().map(|c| c.checkpoint_id.clone()))
            .flatten();
        Ok(ThreadHistoryPage {
            checkpoints: rows.iter().map(|c| summary(c)).collect(),
            next_cursor,
        })
    }

    /// `GET /v1/threads/{id}/view`: one checkpoint (the latest without an id), its
    /// channel values and pending writes decoded for reading.
    pub async fn thread_view(
        &self,
        thread: &str,
        ns: String,
        checkpoint_id: Option<String>,
    ) -> EngineResult<ThreadView> {
        let t = self.thread_checkpoint(thread, ns, checkpoint_id).await?;
        let mut channels = BTreeMap::new();
        for blob in &t.blobs {
            channels.insert(
                blob.channel.clone(),
                ChannelView {
                    version: blob.version.clone(),
                    value: typed::render(&blob.value),
                },
            );
        }
        Ok(ThreadView {
            thread_id: t.thread_id,
            checkpoint_ns: t.checkpoint_ns,
            checkpoint_id: t.checkpoint_id,
            parent_checkpoint_id: t.parent_checkpoint_id,
            metadata: t.metadata,
            checkpoint: typed::render(&t.checkpoint),
            channels,
            writes: t
                .writes
                .iter()
                .map(|w| WriteView {
                    task_id: w.task_id.clone(),
                    task_path: w.task_path.clone(),
                    idx: w.idx,
                    channel: w.channel.clone(),
                    value: typed::render(&w.value),
                })
                .collect(),
        })
    }

    /// `POST /v1/inspector/threads/{id}/fork`: a new latest checkpoint of the namespace,
    /// a child of `checkpoint_id` with its values, so the framework goes on from there.
    /// Its metadata says `source: fork`, what it was forked from and why.
    pub async fn fork_thread(
        self: &Arc<Self>,
        thread: String,
        req: InspectorForkRequest,
        durability: Durability,
    ) -> EngineResult<PutThreadCheckpointResponse> {
        check_reason(&req.reason)?;
        check_ns(&req.checkpoint_ns)?;
        validate::name("checkpoint_id", &req.checkpoint_id)
            .map_err(|e| EngineError::Malformed(e.to_string()))?;
        let pending = self.pending_threads(Some(&thread));
        let q = SearchCheckpointsRequest {
            thread_id: Some(thread.clone()),
            checkpoint_ns: Some(req.checkpoint_ns.clone()),
            ..Default::default()
        };
        let latest = self.checkpoint_rows(&q, &pending, 1).await?;
        let chosen = self
            .checkpoint_rows(
                &SearchCheckpointsRequest {
                    checkpoint_id: Some(req.checkpoint_id.clone()),
                    ..q
                },
                &pending,
                1,
            )
            .await?
            .pop()
            .ok_or_else(|| {
                EngineError::NotFound(format!(
                    "thread {thread} has no checkpoint {} in namespace {:?}",
                    req.checkpoint_id, req.checkpoint_ns
                ))
            })?;
        let at = now();
        // The fork must sort after every checkpoint of the namespace to be its latest:
        // a time-ordered id does, for LangGraph's; after ids of another form, the latest
        // id extended.
        let id = match latest.first() {
            Some(l) if l.checkpoint_id >= uuid6(at) => format!("{}.{}", l.checkpoint_id, uuid6(at)),
            _ => uuid6(at),
        };
        if validate::name("checkpoint_id", &id).is_err() {
            return Err(EngineError::Conflict(format!(
                "thread {thread}'s latest checkpoint id leaves no room for a fork's id after it"
            )));
        }
        let ts = at.to_rfc3339_opts(SecondsFormat::Micros, false);
        // What the stored checkpoint is, not the request, stands in the way: a conflict.
        let checkpoint = typed::with_id(&chosen.checkpoint, &id, &ts).ok_or_else(|| {
            EngineError::Conflict(format!(
                "checkpoint {} is not a map serialized as msgpack or json (it is {:?}), so its id cannot be rewritten for a fork",
                chosen.checkpoint_id, chosen.checkpoint.type_
            ))
        })?;
        let mut metadata = chosen.metadata.clone();
        metadata.insert("source".into(), Value::from("fork"));
        metadata.insert(
            "forked_from".into(),
            Value::from(chosen.checkpoint_id.clone()),
        );
        metadata.insert("fork_reason".into(), Value::from(req.reason));
        let put = PutThreadCheckpointRequest {
            checkpoint_ns: chosen.checkpoint_ns.clone(),
            checkpoint_id: id,
            parent_checkpoint_id: Some(chosen.checkpoint_id.clone()),
            checkpoint,
            metadata,
            channel_versions: chosen.channel_versions.clone(),
            blobs: Vec::new(),
        };
        self.put_thread_checkpoint(thread, put, durability).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_ids_are_langgraph_uuid6_and_sort_by_time() {
        let a = uuid6("2026-12-07T08:00:00Z".parse().unwrap());
        let b = uuid6("2026-12-07T08:00:00.001Z".parse().unwrap());
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "6", "version 6: {a}");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "variant: {a}");
        assert!(a < b, "{a} < {b}");
        // An id LangGraph made (uuid6) a little earlier sorts before.
        assert!("1efb4f5a-0000-6000-8000-000000000000" < a.as_str());
        assert!(check_reason(" ").is_err());
        assert!(check_reason(&"x".repeat(REASON_MAX + 1)).is_err());
        assert!(check_reason("restore after a bad tool call").is_ok());
    }
}
