//! The backlog: every change acknowledged but not yet in the backend, per agent.
//!
//! This is the "dirty set" of the write path. The flusher takes batches from it, and
//! removes what the backend acknowledged. Changes coalesce per agent: the latest state
//! wins, every transition is kept in order, a delete purges what came before it.
//!
//! Its size is bounded by `backlog_bytes_max` (the bytes of the WAL records behind it);
//! past that the engine refuses writes with 503 until the backend catches up.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use agentstate_protocol::StateTransition;

use crate::model::{Current, Op, Tombstone};

/// Unflushed changes of one agent.
#[derive(Debug, Clone)]
struct DirtyAgent {
    current: Current,
    /// Transitions logged since the last flush, in `seq` order.
    transitions: Vec<StateTransition>,
    /// A delete to apply in the backend before anything else of this agent.
    purge: Option<Tombstone>,
    /// Oldest and newest WAL LSN whose effect is not yet in the backend.
    first_lsn: u64,
    last_lsn: u64,
    /// Bytes of the WAL records behind this entry.
    bytes: u64,
    since: Instant,
}

/// One agent's share of a flush: a snapshot of its dirty entry.
#[derive(Debug, Clone)]
pub struct FlushItem {
    pub agent_id: String,
    pub current: Current,
    pub transitions: Vec<StateTransition>,
    pub purge: Option<Tombstone>,
    pub last_lsn: u64,
    bytes: u64,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct BacklogStats {
    pub agents: u64,
    pub bytes: u64,
    pub oldest_age: Duration,
}

#[derive(Default)]
struct Inner {
    agents: HashMap<String, DirtyAgent>,
    bytes: u64,
}

pub struct Backlog {
    inner: Mutex<Inner>,
    bytes_max: u64,
}

impl Backlog {
    pub fn new(bytes_max: u64) -> Self {
        Backlog {
            inner: Mutex::default(),
            bytes_max,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Held only for map operations that cannot panic midway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn bytes_max(&self) -> u64 {
        self.bytes_max
    }

    /// Whether a write of `bytes` more would pass the bound.
    pub fn would_overflow(&self, bytes: u64) -> bool {
        self.lock().bytes.saturating_add(bytes) > self.bytes_max
    }

    /// The agent's latest unflushed state, if it has one.
    pub fn get(&self, agent_id: &str) -> Option<Current> {
        self.lock().agents.get(agent_id).map(|d| d.current.clone())
    }

    /// Unflushed transitions of the agent with `seq > after`, and the purge pending for it.
    pub fn transitions(
        &self,
        agent_id: &str,
        after: u64,
    ) -> (Vec<StateTransition>, Option<Tombstone>) {
        let inner = self.lock();
        match inner.agents.get(agent_id) {
            None => (Vec::new(), None),
            Some(d) => (
                d.transitions
                    .iter()
                    .filter(|t| t.seq > after)
                    .cloned()
                    .collect(),
                d.purge,
            ),
        }
    }

    /// Records the effect of `op` (WAL record `lsn`, `bytes` long).
    pub fn apply(&self, lsn: u64, op: &Op, bytes: u64) {
        let mut inner = self.lock();
        inner.bytes += bytes;
        let agent_id = op.agent_id();
        let current = op.resulting();
        let (purge, transition) = match op {
            Op::Put { .. } => (None, None),
            Op::Delete { tombstone, .. } => (Some(*tombstone), None),
            Op::Transition { transition, .. } => (None, Some(transition.clone())),
        };
        let entry = inner
            .agents
            .entry(agent_id.to_string())
            .or_insert_with(|| DirtyAgent {
                current: current.clone(),
                transitions: Vec::new(),
                purge: None,
                first_lsn: lsn,
                last_lsn: lsn,
                bytes: 0,
                since: Instant::now(),
            });
        entry.current = current;
        entry.last_lsn = entry.last_lsn.max(lsn);
        entry.first_lsn = entry.first_lsn.min(lsn);
        entry.bytes += bytes;
        if let Some(t) = purge {
            // Everything logged before the delete goes with it.
            entry.transitions.clear();
            entry.purge = Some(t);
        }
        if let Some(t) = transition {
            entry.transitions.push(t);
        }
    }

    /// Snapshots up to `max` agents, those waiting longest first.
    pub fn take_batch(&self, max: usize) -> Vec<FlushItem> {
        let inner = self.lock();
        let mut oldest: Vec<(&String, &DirtyAgent)> = inner.agents.iter().collect();
        if oldest.len() > max {
            oldest.select_nth_unstable_by_key(max, |(_, d)| d.first_lsn);
            oldest.truncate(max);
        }
        oldest
            .into_iter()
            .map(|(id, d)| FlushItem {
                agent_id: id.clone(),
                current: d.current.clone(),
                transitions: d.transitions.clone(),
                purge: d.purge,
                last_lsn: d.last_lsn,
                bytes: d.bytes,
            })
            .collect()
    }

    /// Forgets what `items` held, now that the backend has it. Changes made after the
    /// snapshot stay.
    pub fn ack(&self, items: &[FlushItem]) {
        let mut inner = self.lock();
        let mut freed = 0;
        for item in items {
            let Some(d) = inner.agents.get_mut(&item.agent_id) else {
                continue;
            };
            if d.last_lsn == item.last_lsn {
                freed += d.bytes;
                inner.agents.remove(&item.agent_id);
                continue;
            }
            // Changed since the snapshot: keep what is newer.
            let flushed_seq = item.transitions.last().map_or(0, |t| t.seq);
            if d.purge == item.purge {
                d.purge = None;
                d.transitions.retain(|t| t.seq > flushed_seq);
            }
            d.first_lsn = item.last_lsn + 1;
            d.bytes -= item.bytes.min(d.bytes);
            d.since = Instant::now();
            freed += item.bytes;
        }
        inner.bytes -= freed.min(inner.bytes);
    }

    /// The oldest LSN not yet in the backend, if any.
    pub fn oldest_lsn(&self) -> Option<u64> {
        self.lock().agents.values().map(|d| d.first_lsn).min()
    }

    pub fn stats(&self) -> BacklogStats {
        let inner = self.lock();
        BacklogStats {
            agents: inner.agents.len() as u64,
            bytes: inner.bytes,
            oldest_age: inner
                .agents
                .values()
                .map(|d| d.since.elapsed())
                .max()
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AgentRecord;
    use agentstate_protocol::PersistedState;
    use chrono::Utc;

    fn put(agent: &str, version: u64) -> Op {
        let now = Utc::now();
        Op::Put {
            record: AgentRecord {
                state: PersistedState {
                    agent_id: agent.into(),
                    agent_type: None,
                    state_name: "s".into(),
                    state_data: serde_json::Value::Null,
                    conversation_context: serde_json::Value::Null,
                    created_at: now,
                    updated_at: now,
                    version,
                    metadata: Default::default(),
                },
                transition_seq: 0,
            },
        }
    }

    #[test]
    fn latest_state_wins_and_bytes_are_accounted() {
        let b = Backlog::new(1 << 20);
        for (lsn, v) in [(1, 1), (2, 2), (3, 3)] {
            b.apply(lsn, &put("a", v), 100);
        }
        b.apply(4, &put("b", 1), 50);
        assert_eq!(b.get("a").unwrap().version(), 3);
        let s = b.stats();
        assert_eq!((s.agents, s.bytes), (2, 350));
        assert_eq!(b.oldest_lsn(), Some(1));

        let batch = b.take_batch(10);
        assert_eq!(batch.len(), 2);
        b.ack(&batch);
        assert_eq!((b.stats().agents, b.stats().bytes), (0, 0));
        assert_eq!(b.oldest_lsn(), None);
    }

    #[test]
    fn changes_after_a_snapshot_survive_its_ack() {
        let b = Backlog::new(1 << 20);
        b.apply(1, &put("a", 1), 100);
        let batch = b.take_batch(10);
        b.apply(2, &put("a", 2), 100);
        b.ack(&batch);
        assert_eq!(b.get("a").unwrap().version(), 2, "v2 still dirty");
        assert_eq!(b.oldest_lsn(), Some(2));
        assert_eq!(b.stats().bytes, 100);
    }

    #[test]
    fn batches_take_the_oldest_first_and_respect_the_bound() {
        let b = Backlog::new(1000);
        for i in 0..10u64 {
            b.apply(10 - i, &put(&format!("a{i}"), 1), 10);
        }
        let batch = b.take_batch(3);
        let mut lsns: Vec<u64> = batch.iter().map(|i| i.last_lsn).collect();
        lsns.sort();
        assert_eq!(lsns, [1, 2, 3]);
        assert!(!b.would_overflow(900));
        assert!(b.would_overflow(901));
    }
}
