//! The backlog: every change acknowledged but not yet in the backend, per agent.
//!
//! This is the "dirty set" of the write path. The flusher takes batches from it, and
//! removes what the backend acknowledged. Changes coalesce per agent: the latest state
//! wins, every transition is kept in order, a delete purges what came before it.
//!
//! Its size is bounded by `backlog_bytes_max` (the bytes of the WAL records behind it);
//! past that the engine refuses writes with 503 until the backend catches up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::model::{
    BlobKey, Checkpoint, CheckpointKey, Current, Effect, Message, Op, StateTransition, StoredBlob,
    StoredWrite, ThreadChange, ThreadCheckpoint, Tombstone, Transfer, WriteKey,
};

/// Unflushed changes to one thread's framework checkpoints, each with the LSN of the WAL
/// record that made it (an ack forgets what is at or below the flushed LSN).
///
/// A drop removes the pending puts it covers and is kept for the backend: the backend
/// applies drops before puts, so a checkpoint dropped and then put again ends up present.
#[derive(Debug, Clone, Default)]
pub struct ThreadDirt {
    pub checkpoints: BTreeMap<CheckpointKey, (u64, Arc<ThreadCheckpoint>)>,
    pub blobs: BTreeMap<BlobKey, (u64, Arc<StoredBlob>)>,
    pub writes: BTreeMap<WriteKey, (u64, Arc<StoredWrite>)>,
    pub dropped_checkpoints: BTreeMap<CheckpointKey, u64>,
    pub dropped_blobs: BTreeMap<BlobKey, u64>,
}

impl ThreadDirt {
    pub fn is_empty(&self) -> bool {
        self.checkpoints.is_empty()
            && self.blobs.is_empty()
            && self.writes.is_empty()
            && self.dropped_checkpoints.is_empty()
            && self.dropped_blobs.is_empty()
    }

    fn apply(&mut self, lsn: u64, change: &ThreadChange) {
        match change {
            ThreadChange::Put { checkpoint, blobs } => {
                self.checkpoints
                    .insert(checkpoint.key(), (lsn, Arc::new((**checkpoint).clone())));
                for b in blobs {
                    self.blobs.insert(b.key(), (lsn, Arc::new(b.clone())));
                }
            }
            ThreadChange::Writes { writes } => {
                for w in writes {
                    let key = w.key();
                    // At idx >= 0 the first write of a key wins.
                    if w.write.idx >= 0 && self.writes.contains_key(&key) {
                        continue;
                    }
                    self.writes.insert(key, (lsn, Arc::new(w.clone())));
                }
            }
            ThreadChange::Drop { checkpoints, blobs } => {
                for k in checkpoints {
                    self.checkpoints.remove(k);
                    self.writes.retain(|w, _| &w.checkpoint != k);
                    self.dropped_checkpoints.insert(k.clone(), lsn);
                }
                for b in blobs {
                    self.blobs.remove(b);
                    self.dropped_blobs.insert(b.clone(), lsn);
                }
            }
        }
    }

    /// Forgets what records up to `lsn` did.
    fn forget_upto(&mut self, lsn: u64) {
        self.checkpoints.retain(|_, (l, _)| *l > lsn);
        self.blobs.retain(|_, (l, _)| *l > lsn);
        self.writes.retain(|_, (l, _)| *l > lsn);
        self.dropped_checkpoints.retain(|_, l| *l > lsn);
        self.dropped_blobs.retain(|_, l| *l > lsn);
    }
}

/// Most bytes of changes (as WAL records) one flush batch carries, but for its first
/// agent. The flusher starts at [`FLUSH_BATCH_BYTES_MIN`], doubles its batch size after
/// each batch written and halves it after one that timed out, between the two.
pub const FLUSH_BATCH_BYTES_MAX: u64 = 4 * 1024 * 1024;
pub const FLUSH_BATCH_BYTES_MIN: u64 = 64 * 1024;

/// What the backend holds past the flushed watermark: each agent's changes up to an LSN,
/// and transfers by LSN. Kept beside the WAL in the flush progress (`flush_progress`), so
/// that a start replays only what the backend lacks. The watermark moves only once every agent changed below it is flushed:
/// without these, a sidecar killed again and again before it has re-flushed all that its
/// WAL replays would never get further.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FlushedMarks {
    pub agents: HashMap<String, u64>,
    pub transfers: BTreeSet<u64>,
}

impl FlushedMarks {
    /// Notes a batch the backend took (or kept aside).
    pub fn note(&mut self, batch: &FlushBatch) {
        for item in &batch.items {
            let mark = self.agents.entry(item.agent_id.clone()).or_default();
            *mark = (*mark).max(item.last_lsn);
        }
        self.transfers.extend(batch.transfers.iter().map(|t| t.lsn));
    }

    /// Forgets what the watermark covers.
    pub fn prune(&mut self, watermark: u64) {
        self.agents.retain(|_, lsn| *lsn > watermark);
        self.transfers = self.transfers.split_off(&(watermark.saturating_add(1)));
    }

    pub fn is_empty(&self) -> bool {
        self.agents.is_empty() && self.transfers.is_empty()
    }

    /// The highest LSN the marks name (0 if none): the WAL never gives it again.
    pub fn lsn_max(&self) -> u64 {
        let agents = self.agents.values().copied().max().unwrap_or(0);
        let transfers = self.transfers.last().copied().unwrap_or(0);
        agents.max(transfers)
    }

    /// Whether the backend holds `agent_id`'s change logged at `lsn`.
    fn holds(&self, agent_id: &str, lsn: u64) -> bool {
        self.agents.get(agent_id).is_some_and(|mark| lsn <= *mark)
    }
}

/// Messages removed but not yet from the backend: (LSN, first seq, last seq).
pub type MessageDrop = (u64, u64, u64);

/// Unflushed changes of one agent.
#[derive(Debug, Clone)]
struct DirtyAgent {
    /// The latest record, if an unflushed op changed it (a checkpoint alone does not).
    current: Option<Current>,
    /// Log entries and messages since the last flush, in `seq` order.
    transitions: Vec<StateTransition>,
    messages: Vec<Message>,
    checkpoints: Vec<Checkpoint>,
    /// The thread's framework checkpoints (when the agent is used as a thread).
    threads: ThreadDirt,
    message_drops: Vec<MessageDrop>,
    /// A delete to apply in the backend before anything else of this agent.
    purge: Option<Tombstone>,
    /// Oldest and newest WAL LSN whose effect is not yet in the backend.
    first_lsn: u64,
    last_lsn: u64,
    /// LSNs of the unflushed `remote` writes, in order.
    remote_lsns: Vec<u64>,
    /// Bytes of the WAL records behind this entry.
    bytes: u64,
    since: Instant,
}

/// One agent's share of a flush: a snapshot of its dirty entry.
#[derive(Debug, Clone)]
pub struct FlushItem {
    pub agent_id: String,
    pub current: Option<Current>,
    pub transitions: Vec<StateTransition>,
    pub messages: Vec<Message>,
    pub checkpoints: Vec<Checkpoint>,
    pub threads: ThreadDirt,
    pub message_drops: Vec<MessageDrop>,
    pub purge: Option<Tombstone>,
    pub last_lsn: u64,
    /// LSNs of the `remote` writes among these changes, whose callers wait for the
    /// outcome of this flush.
    pub remote_lsns: Vec<u64>,
    bytes: u64,
}

/// A transfer waiting to be flushed as one backend transaction.
#[derive(Debug, Clone)]
pub struct PendingTransfer {
    pub lsn: u64,
    /// Made at `remote` durability: its caller waits for the outcome of its flush.
    pub remote: bool,
    /// The whole `Op::Transfer`, so the backend can write every part of it at once.
    pub op: std::sync::Arc<Op>,
}

impl PendingTransfer {
    pub fn transfer(&self) -> &Transfer {
        match &*self.op {
            Op::Transfer { transfer, .. } => transfer,
            _ => unreachable!("pending transfers hold Op::Transfer"),
        }
    }
}

/// What one flush writes.
#[derive(Debug, Clone, Default)]
pub struct FlushBatch {
    /// Written first, each atomically.
    pub transfers: Vec<PendingTransfer>,
    pub items: Vec<FlushItem>,
}

impl FlushBatch {
    pub fn is_empty(&self) -> bool {
        self.transfers.is_empty() && self.items.is_empty()
    }
}

/// The agent's dirty entry, created if needed, with `lsn` accounted.
fn dirty_entry<'m>(
    agents: &'m mut HashMap<String, DirtyAgent>,
    agent_id: &str,
    lsn: u64,
    remote: bool,
    bytes_left: &mut u64,
) -> &'m mut DirtyAgent {
    let e = agents
        .entry(agent_id.to_string())
        .or_insert_with(|| DirtyAgent {
            current: None,
            transitions: Vec::new(),
            messages: Vec::new(),
            checkpoints: Vec::new(),
            threads: ThreadDirt::default(),
            message_drops: Vec::new(),
            purge: None,
            first_lsn: lsn,
            last_lsn: lsn,
            remote_lsns: Vec::new(),
            bytes: 0,
            since: Instant::now(),
        });
    e.last_lsn = e.last_lsn.max(lsn);
    e.first_lsn = e.first_lsn.min(lsn);
    if remote && e.remote_lsns.last() != Some(&lsn) {
        e.remote_lsns.push(lsn);
    }
    e.bytes += std::mem::take(bytes_left);
    e
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
    /// Unflushed transfers by LSN, and their ids for idempotent retries.
    transfers: BTreeMap<u64, PendingTransfer>,
    transfer_ids: HashMap<String, u64>,
    bytes: u64,
    /// Bytes of changes being logged, held by their [`Room`]s.
    reserved: u64,
}

/// Room in the backlog held for a change while it is logged, so that writers logging at
/// once cannot together go past the bound. Given back when dropped (by then
/// [`Backlog::apply`] has counted the change itself).
pub struct Room<'a> {
    backlog: &'a Backlog,
    bytes: u64,
}

impl Drop for Room<'_> {
    fn drop(&mut self) {
        self.backlog.lock().reserved -= self.bytes;
    }
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
        let inner = self.lock();
        inner
            .bytes
            .saturating_add(inner.reserved)
            .saturating_add(bytes)
            > self.bytes_max
    }

    /// Holds room for a change of `bytes` about to be logged, or `None` if that would
    /// take the backlog past its bound.
    pub fn reserve(&self, bytes: u64) -> Option<Room<'_>> {
        let mut inner = self.lock();
        if inner
            .bytes
            .saturating_add(inner.reserved)
            .saturating_add(bytes)
            > self.bytes_max
        {
            return None;
        }
        inner.reserved += bytes;
        Some(Room {
            backlog: self,
            bytes,
        })
    }

    /// The agent's latest unflushed record, if it has one.
    pub fn get(&self, agent_id: &str) -> Option<Current> {
        self.lock()
            .agents
            .get(agent_id)
            .and_then(|d| d.current.clone())
    }

    /// The pending purge of the agent, if a delete is not yet flushed.
    pub fn purge(&self, agent_id: &str) -> Option<Tombstone> {
        self.lock().agents.get(agent_id).and_then(|d| d.purge)
    }

    /// Unflushed transitions of the agent with `seq > after`.
    pub fn transitions(&self, agent_id: &str, after: u64) -> Vec<StateTransition> {
        let inner = self.lock();
        inner.agents.get(agent_id).map_or_else(Vec::new, |d| {
            d.transitions
                .iter()
                .filter(|t| t.seq > after)
                .cloned()
                .collect()
        })
    }

    /// Unflushed messages of the agent with `seq > after`.
    pub fn messages(&self, agent_id: &str, after: u64) -> Vec<Message> {
        let inner = self.lock();
        inner.agents.get(agent_id).map_or_else(Vec::new, |d| {
            d.messages
                .iter()
                .filter(|m| m.seq > after)
                .cloned()
                .collect()
        })
    }

    /// Unflushed checkpoints of the agent.
    pub fn checkpoints(&self, agent_id: &str) -> Vec<Checkpoint> {
        let inner = self.lock();
        inner
            .agents
            .get(agent_id)
            .map_or_else(Vec::new, |d| d.checkpoints.clone())
    }

    /// The agent's unflushed thread changes and pending purge, if it has either.
    pub fn thread(&self, agent_id: &str) -> Option<(ThreadDirt, Option<Tombstone>)> {
        let inner = self.lock();
        let d = inner.agents.get(agent_id)?;
        if d.threads.is_empty() && d.purge.is_none() {
            return None;
        }
        Some((d.threads.clone(), d.purge))
    }

    /// Every agent's unflushed thread changes and pending purge.
    pub fn threads(&self) -> Vec<(String, ThreadDirt, Option<Tombstone>)> {
        let inner = self.lock();
        inner
            .agents
            .iter()
            .filter(|(_, d)| !d.threads.is_empty() || d.purge.is_some())
            .map(|(id, d)| (id.clone(), d.threads.clone(), d.purge))
            .collect()
    }

    /// Seq ranges of the agent's messages removed but not yet from the backend.
    pub fn message_drops(&self, agent_id: &str) -> Vec<(u64, u64)> {
        let inner = self.lock();
        inner.agents.get(agent_id).map_or_else(Vec::new, |d| {
            d.message_drops.iter().map(|(_, f, t)| (*f, *t)).collect()
        })
    }

    /// An unflushed transfer by id.
    pub fn transfer(&self, transfer_id: &str) -> Option<Transfer> {
        let inner = self.lock();
        let lsn = inner.transfer_ids.get(transfer_id)?;
        inner.transfers.get(lsn).map(|p| p.transfer().clone())
    }

    /// Ids of the agents with unflushed changes greater than `after`, in order.
    pub fn agent_ids(&self, after: &str) -> Vec<String> {
        let inner = self.lock();
        let mut ids: Vec<String> = inner
            .agents
            .keys()
            .filter(|id| id.as_str() > after)
            .cloned()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Unflushed transfers with ids greater than `after`, in order of id.
    pub fn transfers_after(&self, after: &str) -> Vec<Transfer> {
        let inner = self.lock();
        let mut out: Vec<Transfer> = inner
            .transfer_ids
            .iter()
            .filter(|(id, _)| id.as_str() > after)
            .filter_map(|(_, lsn)| inner.transfers.get(lsn).map(|p| p.transfer().clone()))
            .collect();
        out.sort_unstable_by(|a, b| a.transfer_id.cmp(&b.transfer_id));
        out
    }

    /// Records the effect of `op` (WAL record `lsn`, `bytes` long); `remote`: its caller
    /// waits for its flush.
    pub fn apply(&self, lsn: u64, op: &Op, bytes: u64, remote: bool) {
        self.apply_unflushed(lsn, op, bytes, remote, None);
    }

    /// Applies a record the WAL replays, but for what `flushed` says the backend holds.
    pub fn replay(&self, lsn: u64, op: &Op, bytes: u64, flushed: &FlushedMarks) {
        self.apply_unflushed(lsn, op, bytes, false, Some(flushed));
    }

    fn apply_unflushed(
        &self,
        lsn: u64,
        op: &Op,
        bytes: u64,
        remote: bool,
        flushed: Option<&FlushedMarks>,
    ) {
        let held = |agent: &str| flushed.is_some_and(|f| f.holds(agent, lsn));
        let mut guard = self.lock();
        let inner = &mut *guard;
        // The record's bytes are charged to the first agent it touches.
        let mut bytes_left = bytes;
        let agents = &mut inner.agents;
        op.for_each_effect(&mut |effect| match effect {
            _ if held(effect.agent_id()) => {}
            Effect::Record(r) => {
                let e = dirty_entry(agents, &r.state.agent_id, lsn, remote, &mut bytes_left);
                e.current = Some(Current::Live(Arc::clone(r)));
            }
            Effect::Delete(id, t) => {
                let e = dirty_entry(agents, id, lsn, remote, &mut bytes_left);
                e.current = Some(Current::Deleted(t));
                // Everything logged before the delete goes with it.
                e.transitions.clear();
                e.messages.clear();
                e.checkpoints.clear();
                e.threads = ThreadDirt::default();
                e.message_drops.clear();
                e.purge = Some(t);
            }
            Effect::Thread(id, change) => {
                dirty_entry(agents, id, lsn, remote, &mut bytes_left)
                    .threads
                    .apply(lsn, change);
            }
            Effect::DropMessages(id, from, to) => {
                let e = dirty_entry(agents, id, lsn, remote, &mut bytes_left);
                e.messages.retain(|m| m.seq < from || m.seq > to);
                e.message_drops.push((lsn, from, to));
            }
            Effect::Transition(t) => {
                dirty_entry(agents, &t.agent_id, lsn, remote, &mut bytes_left)
                    .transitions
                    .push(t.clone());
            }
            Effect::Message(id, m) => {
                dirty_entry(agents, id, lsn, remote, &mut bytes_left)
                    .messages
                    .push(m.clone());
            }
            Effect::Checkpoint(c) => {
                dirty_entry(agents, &c.agent_id, lsn, remote, &mut bytes_left)
                    .checkpoints
                    .push(c.clone());
            }
        });
        inner.bytes += bytes - bytes_left;
        if let Op::Transfer { transfer, .. } = op {
            if flushed.is_some_and(|f| f.transfers.contains(&lsn)) {
                return;
            }
            inner.transfer_ids.insert(transfer.transfer_id.clone(), lsn);
            inner.transfers.insert(
                lsn,
                PendingTransfer {
                    lsn,
                    remote,
                    op: std::sync::Arc::new(op.clone()),
                },
            );
        }
    }

    /// Snapshots up to `max` agents, those waiting longest first, stopping once their
    /// changes reach `bytes_max` (one agent always goes, however large), and the transfers
    /// logged before the oldest agent left out (the oldest transfer always goes): a batch
    /// must finish within the backend's timeout, or the same batch would be retried
    /// forever, and small batches go through the log in order (see [`FlushedMarks`]).
    ///
    /// A transfer is written before (or with) its agents' other changes, never after: the
    /// agents of transfers left for a later batch are left out of this one too.
    pub fn take_batch(&self, max: usize, bytes_max: u64) -> FlushBatch {
        let inner = self.lock();
        let mut oldest: Vec<(&String, &DirtyAgent)> = inner.agents.iter().collect();
        if oldest.len() > max {
            oldest.select_nth_unstable_by_key(max, |(_, d)| d.first_lsn);
        }
        let (chosen, rest) = oldest.split_at_mut(max.min(inner.agents.len()));
        chosen.sort_unstable_by_key(|(_, d)| d.first_lsn);
        let mut bytes = 0u64;
        let fits = chosen
            .iter()
            .enumerate()
            .take_while(|(i, (_, d))| {
                bytes += d.bytes;
                *i == 0 || bytes <= bytes_max
            })
            .count();
        // The first change of the oldest agent left for a later batch.
        let frontier = chosen[fits..]
            .iter()
            .chain(rest.iter())
            .map(|(_, d)| d.first_lsn)
            .min()
            .unwrap_or(u64::MAX);
        oldest.truncate(fits);
        let transfers: Vec<PendingTransfer> = inner
            .transfers
            .values()
            .enumerate()
            .take_while(|(i, t)| *i == 0 || t.lsn < frontier)
            .take(max)
            .map(|(_, t)| t.clone())
            .collect();
        let waiting: std::collections::HashSet<&str> = inner
            .transfers
            .values()
            .skip(transfers.len())
            .flat_map(|t| t.op.agents())
            .collect();
        oldest.retain(|(id, _)| !waiting.contains(id.as_str()));
        FlushBatch {
            transfers,
            items: oldest
                .into_iter()
                .map(|(id, d)| FlushItem {
                    agent_id: id.clone(),
                    current: d.current.clone(),
                    transitions: d.transitions.clone(),
                    messages: d.messages.clone(),
                    checkpoints: d.checkpoints.clone(),
                    threads: d.threads.clone(),
                    message_drops: d.message_drops.clone(),
                    purge: d.purge,
                    last_lsn: d.last_lsn,
                    remote_lsns: d.remote_lsns.clone(),
                    bytes: d.bytes,
                })
                .collect(),
        }
    }

    /// Forgets what `batch` held, now that the backend has it. Changes made after the
    /// snapshot stay.
    pub fn ack(&self, batch: &FlushBatch) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        for t in &batch.transfers {
            inner.transfers.remove(&t.lsn);
            inner.transfer_ids.remove(&t.transfer().transfer_id);
        }
        let mut freed = 0;
        for item in &batch.items {
            let Some(d) = inner.agents.get_mut(&item.agent_id) else {
                continue;
            };
            if d.last_lsn == item.last_lsn {
                freed += d.bytes;
                inner.agents.remove(&item.agent_id);
                continue;
            }
            // Changed since the snapshot: keep what is newer.
            if d.purge == item.purge {
                d.purge = None;
                let t_seq = item.transitions.last().map_or(0, |t| t.seq);
                let m_seq = item.messages.last().map_or(0, |m| m.seq);
                d.transitions.retain(|t| t.seq > t_seq);
                d.messages.retain(|m| m.seq > m_seq);
                d.checkpoints.retain(|c| {
                    !item
                        .checkpoints
                        .iter()
                        .any(|f| f.checkpoint_id == c.checkpoint_id)
                });
                d.threads.forget_upto(item.last_lsn);
                d.message_drops.retain(|(l, ..)| *l > item.last_lsn);
            }
            if d.current == item.current {
                // Still the same record; the backend has it now.
                d.current = None;
            }
            d.remote_lsns.retain(|l| *l > item.last_lsn);
            d.first_lsn = item.last_lsn + 1;
            d.bytes -= item.bytes.min(d.bytes);
            d.since = Instant::now();
            freed += item.bytes;
        }
        inner.bytes -= freed.min(inner.bytes);
    }

    /// The oldest LSN not yet in the backend, if any.
    pub fn oldest_lsn(&self) -> Option<u64> {
        let inner = self.lock();
        let agents = inner.agents.values().map(|d| d.first_lsn).min();
        let transfers = inner.transfers.keys().next().copied();
        match (agents, transfers) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// Dirty agents held (cheap: no walk over them, unlike `stats`).
    pub fn agents(&self) -> u64 {
        self.lock().agents.len() as u64
    }

    /// Bytes held (cheap).
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
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
    use crate::model::tests::record;

    fn put(agent: &str, version: u64) -> Op {
        Op::Put {
            record: record(agent, version).into(),
        }
    }

    #[test]
    fn latest_state_wins_and_bytes_are_accounted() {
        let b = Backlog::new(1 << 20);
        for (lsn, v) in [(1, 1), (2, 2), (3, 3)] {
            b.apply(lsn, &put("a", v), 100, false);
        }
        b.apply(4, &put("b", 1), 50, false);
        assert_eq!(b.get("a").unwrap().version(), 3);
        let s = b.stats();
        assert_eq!((s.agents, s.bytes), (2, 350));
        assert_eq!(b.oldest_lsn(), Some(1));

        let batch = b.take_batch(10, FLUSH_BATCH_BYTES_MAX);
        assert_eq!(batch.items.len(), 2);
        b.ack(&batch);
        assert_eq!((b.stats().agents, b.stats().bytes), (0, 0));
        assert_eq!(b.oldest_lsn(), None);
    }

    #[test]
    fn changes_after_a_snapshot_survive_its_ack() {
        let b = Backlog::new(1 << 20);
        b.apply(1, &put("a", 1), 100, false);
        let batch = b.take_batch(10, FLUSH_BATCH_BYTES_MAX);
        b.apply(2, &put("a", 2), 100, false);
        b.ack(&batch);
        assert_eq!(b.get("a").unwrap().version(), 2, "v2 still dirty");
        assert!(b.take_batch(10, FLUSH_BATCH_BYTES_MAX).items[0]
            .current
            .is_some());
        assert_eq!(b.oldest_lsn(), Some(2));
        assert_eq!(b.stats().bytes, 100);
    }

    #[test]
    fn remote_writes_travel_with_their_flush() {
        let b = Backlog::new(1 << 20);
        b.apply(1, &put("a", 1), 100, true);
        b.apply(2, &put("a", 2), 100, false);
        let batch = b.take_batch(10, FLUSH_BATCH_BYTES_MAX);
        assert_eq!(batch.items[0].remote_lsns, [1]);
        b.apply(3, &put("a", 3), 100, true);
        b.ack(&batch);
        let batch = b.take_batch(10, FLUSH_BATCH_BYTES_MAX);
        assert_eq!(
            batch.items[0].remote_lsns,
            [3],
            "what the first flush took is gone"
        );
    }

    #[test]
    fn batches_stop_at_the_byte_bound_but_always_take_one_agent() {
        let b = Backlog::new(1 << 40);
        let big = FLUSH_BATCH_BYTES_MAX / 2 + 1;
        for i in 0..4u64 {
            b.apply(i + 1, &put(&format!("a{i}"), 1), big, false);
        }
        let batch = b.take_batch(100, FLUSH_BATCH_BYTES_MAX);
        assert_eq!(batch.items.len(), 1, "two would pass the bound");
        assert_eq!(batch.items[0].agent_id, "a0", "the oldest first");
        b.ack(&batch);
        let b = Backlog::new(1 << 40);
        b.apply(1, &put("huge", 1), FLUSH_BATCH_BYTES_MAX * 3, false);
        assert_eq!(b.take_batch(100, FLUSH_BATCH_BYTES_MAX).items.len(), 1);
    }

    /// A transfer from `from` to `to`, with both agents' records.
    fn transfer(id: &str, from: &str, to: &str) -> Op {
        Op::Transfer {
            transfer: crate::model::Transfer {
                transfer_id: id.into(),
                from_agent: from.into(),
                to_agent: to.into(),
                trigger: "handoff".into(),
                to_trigger: None,
                context: crate::model::Doc::null(),
                messages_copied: 0,
                from_version: 2,
                to_version: 2,
                created_at: chrono::Utc::now(),
            },
            records: vec![record(from, 2).into(), record(to, 2).into()],
            transitions: Vec::new(),
            messages: Vec::new(),
        }
    }

    #[test]
    fn a_replay_skips_what_the_flushed_marks_say_the_backend_holds() {
        let records = [
            (1, put("a", 1)),
            (2, put("b", 1)),
            (3, transfer("t1", "a", "c")),
            (4, put("a", 3)),
        ];
        let b = Backlog::new(1 << 20);
        for (lsn, op) in &records {
            b.apply(*lsn, op, 100, false);
        }
        // a, c and the transfer are written, b is not: the watermark stays at 1.
        let mut written = b.take_batch(10, FLUSH_BATCH_BYTES_MAX);
        written.items.retain(|i| i.agent_id != "b");
        let mut marks = FlushedMarks::default();
        marks.note(&written);
        marks.prune(1);
        let loaded: FlushedMarks =
            serde_json::from_slice(&serde_json::to_vec(&marks).unwrap()).unwrap();
        assert_eq!(loaded, marks);
        assert_eq!(loaded.agents.len(), 2, "a and c: {loaded:?}");

        let replayed = Backlog::new(1 << 20);
        for (lsn, op) in &records[1..] {
            replayed.replay(*lsn, op, 100, &loaded);
        }
        let s = replayed.stats();
        assert_eq!((s.agents, s.bytes), (1, 100), "only b's change is left");
        assert!(replayed.get("b").is_some());
        assert!(replayed.transfers_after("").is_empty());
        assert_eq!(replayed.oldest_lsn(), Some(2));

        // What the watermark covers is forgotten.
        marks.prune(4);
        assert!(marks.is_empty());
    }

    #[test]
    fn small_batches_move_the_watermark_through_transfers_in_order() {
        let b = Backlog::new(1 << 20);
        b.apply(1, &put("a", 1), 100, false);
        b.apply(2, &transfer("t1", "b", "c"), 100, false);
        b.apply(3, &put("d", 1), 100, false);
        b.apply(4, &transfer("t2", "d", "e"), 100, false);
        b.apply(5, &put("a", 2), 100, false);
        let mut flushed = Vec::new();
        let mut watermarks = Vec::new();
        while b.oldest_lsn().is_some() {
            // Room for one agent a batch: the smallest steps there are.
            let batch = b.take_batch(10, 1);
            assert!(!batch.is_empty(), "every batch makes progress");
            for t in &batch.transfers {
                let agents = t.op.agents();
                assert!(
                    !flushed
                        .iter()
                        .any(|a: &String| agents.contains(&a.as_str())),
                    "transfer {} after its agents' later changes",
                    t.transfer().transfer_id
                );
            }
            flushed.extend(batch.items.iter().map(|i| i.agent_id.clone()));
            b.ack(&batch);
            watermarks.push(b.oldest_lsn());
        }
        assert_eq!(
            watermarks,
            [Some(2), Some(2), Some(3), Some(4), None],
            "each batch frees the oldest change (b and c share LSN 2)"
        );
    }

    #[test]
    fn a_transfer_past_the_bound_holds_back_its_agents_not_the_batch() {
        let b = Backlog::new(1 << 20);
        b.apply(1, &put("a", 1), 100, false);
        b.apply(2, &put("b", 1), 100, false);
        b.apply(3, &transfer("t0", "b", "x"), 100, false);
        b.apply(4, &transfer("t1", "a", "c"), 100, false);
        // Room for one agent: "a" is the oldest, but waits for t1, which is past "b".
        let batch = b.take_batch(10, 1);
        assert!(batch.items.is_empty(), "a waits for t1");
        let ids: Vec<&str> = batch
            .transfers
            .iter()
            .map(|t| t.transfer().transfer_id.as_str())
            .collect();
        assert_eq!(ids, ["t0"], "the oldest transfer always goes");
        b.ack(&batch);
        let batch = b.take_batch(10, 1);
        assert_eq!(batch.items[0].agent_id, "a");
        assert_eq!(batch.transfers[0].transfer().transfer_id, "t1", "with a");
    }

    #[test]
    fn batches_take_the_oldest_first_and_respect_the_bound() {
        let b = Backlog::new(1000);
        for i in 0..10u64 {
            b.apply(10 - i, &put(&format!("a{i}"), 1), 10, false);
        }
        let batch = b.take_batch(3, FLUSH_BATCH_BYTES_MAX);
        let mut lsns: Vec<u64> = batch.items.iter().map(|i| i.last_lsn).collect();
        lsns.sort();
        assert_eq!(lsns, [1, 2, 3]);
        assert!(!b.would_overflow(900));
        assert!(b.would_overflow(901));
        // Room held for changes being logged counts against the bound until given back.
        let room = b.reserve(600).expect("room for 600 bytes");
        assert!(b.reserve(301).is_none());
        assert!(b.would_overflow(301));
        drop(room);
        assert!(b.reserve(900).is_some());
    }
}
