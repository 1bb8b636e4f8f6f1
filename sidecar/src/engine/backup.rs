//! Backup and move: agents read whole for an export, and written back as they were by
//! an import.
//!
//! An export reads through the engine like any reader, so unflushed changes are in it;
//! each agent is read as of its current version (entries logged after its record was
//! read are left out). An import is not a replay of requests: it logs [`Op::Import`]
//! records carrying the agent's record and history with their versions, sequence
//! numbers and timestamps, and they take the usual way (WAL, backlog, flush).
//!
//! Hazards:
//! - An agent already here is left alone when it is the same as the file's (importing a
//!   file twice changes nothing), refused when it differs, and with `overwrite` purged
//!   as by a delete in the first import record: the flush applies a purge before what
//!   the same agent's entry holds after it, so nothing of the old agent survives and
//!   nothing imported is purged, whatever the versions.
//! - A large agent takes several records, its history first and its record last. A
//!   crash between them leaves history without a record: invisible (reads need the
//!   record), and importing again writes all of it again (writes are idempotent by key).
//! - Imported transfers are records only: what they did is in their agents' history.
//!   A transfer record is never replaced, not even with `overwrite`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentstate_protocol::Durability;
use chrono::SubsecRound;
use serde::Serialize;

use super::{Engine, EngineError, EngineResult, PAGE_LIMIT_MAX, SEQ_MAX};
use crate::model::{
    AgentRecord, BlobKey, Checkpoint, Current, ExportedAgent, Message, Op, StateTransition,
    StoredBlob, ThreadChange, Tombstone, Transfer,
};
use crate::validate::{self, AgentTypes};

/// Bytes (as WAL record bytes) of one import record, but for a single entry larger than
/// that: well under the largest record, and a small share of the backlog.
const IMPORT_PART_BYTES_MAX: usize = 4 * 1024 * 1024;
/// How long an import waits for the flusher to make room in the backlog.
const IMPORT_ROOM_WAIT: Duration = Duration::from_secs(60);

/// What an import did, or in a dry run would do, with one agent or transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// Not here (or deleted): written.
    Added,
    /// Here at this version and different: replaced (`overwrite`).
    Replaced { version: u64 },
    /// Here and the same: left alone.
    Unchanged,
    /// A transfer here under the same id, different: kept (`overwrite`; transfer
    /// records are never replaced).
    Kept,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Replace agents here that differ from the file's, instead of refusing them.
    pub overwrite: bool,
    /// Only say what would be done.
    pub dry_run: bool,
}

impl Engine {
    /// Ids of agents greater than `after`, in order, at most `limit`: stored ones and
    /// those only in the backlog. Deleted ones may be among them (reading finds nothing).
    pub async fn agent_ids(&self, after: &str, limit: u32) -> EngineResult<Vec<String>> {
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        // The backlog before the store: an agent leaves the one only once the other has
        // it, so this order cannot miss one in transit.
        let pending = self.backlog.agent_ids(after);
        let stored = self.store.agent_ids(after, limit).await?;
        Ok(merge_by_key(stored, pending, |id| id.clone(), limit))
    }

    /// Transfers with ids greater than `after`, in order of id, at most `limit`,
    /// unflushed ones included.
    pub async fn transfers_after(&self, after: &str, limit: u32) -> EngineResult<Vec<Transfer>> {
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        let pending = self.backlog.transfers_after(after);
        let stored = self.store.transfers(after, limit).await?;
        Ok(merge_by_key(
            stored,
            pending,
            |t| t.transfer_id.clone(),
            limit,
        ))
    }

    /// Everything of `agent_id` as of its current version; `None` if there is no such
    /// agent.
    pub async fn export_agent(&self, agent_id: &str) -> EngineResult<Option<ExportedAgent>> {
        match self.read_whole(agent_id).await {
            Err(EngineError::NotFound(_)) => Ok(None),
            other => other.map(Some),
        }
    }

    async fn read_whole(&self, agent_id: &str) -> EngineResult<ExportedAgent> {
        let record = self.read_live(agent_id).await?;
        let mut transitions: Vec<StateTransition> = Vec::new();
        let mut after = 0;
        while after < record.transition_seq {
            let page = self.transitions(agent_id, after, PAGE_LIMIT_MAX).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            transitions.extend(page.into_iter().filter(|t| t.seq <= record.transition_seq));
        }
        let mut messages: Vec<Message> = Vec::new();
        let mut after = 0;
        while after < record.message_seq {
            let page = self.messages(agent_id, after, PAGE_LIMIT_MAX).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            messages.extend(page.into_iter().filter(|m| m.seq <= record.message_seq));
        }
        let checkpoints = self
            .checkpoints(agent_id)
            .await?
            .into_iter()
            .filter(|c| c.version <= record.state.version)
            .collect();
        let thread = self
            .thread_as_stored(agent_id, record.state.version)
            .await?;
        let mut record = (*record).clone();
        // A lease epoch means something only in the database it was taken in.
        record.lease_epoch = 0;
        Ok(ExportedAgent {
            record,
            transitions,
            messages,
            checkpoints,
            thread,
        })
    }

    /// Imports one agent as it was (see the module's doc), or in a dry run says what
    /// that would do. An agent here that differs is a `Conflict` unless `overwrite`.
    pub async fn import_agent(
        self: &Arc<Self>,
        mut agent: ExportedAgent,
        opts: ImportOptions,
    ) -> EngineResult<Imported> {
        normalize(&mut agent);
        check_agent(&self.types, &agent)?;
        let part_bytes_max = IMPORT_PART_BYTES_MAX
            .min(self.opts.limits.record_bytes_max / 2)
            .min((self.backlog.bytes_max() / 4) as usize);
        let engine = self.clone();
        self.critical(Durability::Local, async move {
            let id = agent.record.state.agent_id.clone();
            let _g = engine.lock(&[&id]).await;
            let current = engine.current_to_change(&id).await?;
            let (imported, replaces) = plan(&agent.record, current.as_ref(), opts.overwrite)?;
            if imported == Imported::Unchanged || opts.dry_run {
                return Ok((imported, None));
            }
            // The first records of a large agent carry no record to stamp with a lease.
            engine.hold_lease(&id).await?;
            let mut lsn = None;
            for (mut op, bytes) in parts(agent, replaces, part_bytes_max)? {
                engine.wait_for_room(bytes).await?;
                lsn = Some(engine.log(&mut op, Durability::Local).await?);
            }
            Ok((imported, lsn))
        })
        .await
    }

    /// Imports a transfer's record, or in a dry run says what that would do. A
    /// different transfer here under the same id is a `Conflict`, or with `overwrite`
    /// kept as it is.
    pub async fn import_transfer(
        self: &Arc<Self>,
        mut transfer: Transfer,
        opts: ImportOptions,
    ) -> EngineResult<Imported> {
        transfer.created_at = transfer.created_at.trunc_subsecs(3);
        check_transfer(&transfer)?;
        let engine = self.clone();
        self.critical(Durability::Local, async move {
            let id = transfer.transfer_id.clone();
            let _g = engine.lock(&[&format!("transfer:{id}")]).await;
            let here = match engine.backlog.transfer(&id) {
                Some(t) => Some(t),
                None => engine.store.transfer(&id).await?,
            };
            let imported = match here {
                None => Imported::Added,
                Some(h) if h == transfer => Imported::Unchanged,
                Some(_) if opts.overwrite => Imported::Kept,
                Some(h) => {
                    return Err(EngineError::Conflict(format!(
                        "transfer {id} is here ({} -> {} at {}) and differs from the file's ({} -> {} at {})",
                        h.from_agent, h.to_agent, h.created_at, transfer.from_agent, transfer.to_agent, transfer.created_at
                    )))
                }
            };
            if imported != Imported::Added || opts.dry_run {
                return Ok((imported, None));
            }
            let mut op = Op::Transfer {
                transfer,
                records: Vec::new(),
                transitions: Vec::new(),
                messages: Vec::new(),
            };
            let lsn = engine.log(&mut op, Durability::Local).await?;
            Ok((imported, Some(lsn)))
        })
        .await
    }

    /// Waits (waking the flusher) until the backlog has room for `bytes` more, or is
    /// empty: an import writes faster than any backend takes it.
    async fn wait_for_room(&self, bytes: u64) -> EngineResult<()> {
        let deadline = Instant::now() + IMPORT_ROOM_WAIT;
        while self.backlog.bytes() > 0 && self.backlog.would_overflow(bytes) {
            if Instant::now() > deadline {
                return Err(EngineError::Unavailable(format!(
                    "no room in the backlog for {bytes} bytes after {} s: the backend does not keep up",
                    IMPORT_ROOM_WAIT.as_secs()
                )));
            }
            self.flush_now.notify_one();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

/// Timestamps to the millisecond, as everything here keeps them (see `now`), and no
/// lease epoch: so that a stored copy compares equal to the file's.
fn normalize(agent: &mut ExportedAgent) {
    let s = &mut agent.record.state;
    s.created_at = s.created_at.trunc_subsecs(3);
    s.updated_at = s.updated_at.trunc_subsecs(3);
    if let Some(p) = &mut s.pending_transition {
        p.started_at = p.started_at.trunc_subsecs(3);
    }
    agent.record.lease_epoch = 0;
    for t in &mut agent.transitions {
        t.timestamp = t.timestamp.trunc_subsecs(3);
    }
    for m in &mut agent.messages {
        m.timestamp = m.timestamp.trunc_subsecs(3);
    }
    for c in &mut agent.checkpoints {
        c.created_at = c.created_at.trunc_subsecs(3);
        c.state.created_at = c.state.created_at.trunc_subsecs(3);
        c.state.updated_at = c.state.updated_at.trunc_subsecs(3);
    }
    for c in &mut agent.thread.checkpoints {
        c.created_at = c.created_at.trunc_subsecs(3);
    }
}

/// What importing `file` does given what is here, and the tombstone that purges the
/// agent here when it is replaced.
fn plan(
    file: &AgentRecord,
    current: Option<&Current>,
    overwrite: bool,
) -> EngineResult<(Imported, Option<Tombstone>)> {
    let Some(here) = current.and_then(Current::live) else {
        return Ok((Imported::Added, None));
    };
    let same = here.state == file.state
        && here.transition_seq == file.transition_seq
        && here.message_seq == file.message_seq;
    if same {
        return Ok((Imported::Unchanged, None));
    }
    let (v_here, v_file) = (here.state.version, file.state.version);
    if overwrite {
        let tombstone = Tombstone {
            version: v_here + 1,
            transition_seq: here.transition_seq,
            message_seq: here.message_seq,
        };
        return Ok((Imported::Replaced { version: v_here }, Some(tombstone)));
    }
    let id = &file.state.agent_id;
    Err(EngineError::Conflict(if v_here == v_file {
        format!("agent {id} is at version {v_here} here and in the file, with different contents")
    } else {
        format!("agent {id} is at version {v_here} here and at version {v_file} in the file")
    }))
}

/// Checks an exported agent as a save checks a state (shape, and the agent type's rules
/// for its current state), and its history for shape and order.
fn check_agent(types: &AgentTypes, a: &ExportedAgent) -> EngineResult<()> {
    let s = &a.record.state;
    validate::agent_id(&s.agent_id).map_err(EngineError::Malformed)?;
    let id = &s.agent_id;
    let bad = |m: String| EngineError::Malformed(format!("agent {id}: {m}"));
    validate::name("state_name", &s.state_name).map_err(bad)?;
    if let Some(t) = &s.agent_type {
        validate::name("agent_type", t).map_err(bad)?;
    }
    validate::document("state_data", &s.state_data).map_err(bad)?;
    validate::document("conversation_context", &s.conversation_context).map_err(bad)?;
    validate::document("metadata", s.metadata.doc()).map_err(bad)?;
    if let Some(p) = &s.pending_transition {
        for (field, v) in [
            ("pending_transition.id", &p.id),
            ("pending_transition.from_state", &p.from_state),
            ("pending_transition.to_state", &p.to_state),
            ("pending_transition.trigger", &p.trigger),
        ] {
            validate::name(field, v).map_err(bad)?;
        }
        if let Some(d) = &p.state_data {
            validate::document("pending_transition.state_data", d).map_err(bad)?;
        }
    }
    let r = &a.record;
    if s.version == 0
        || [s.version, r.transition_seq, r.message_seq]
            .iter()
            .any(|v| *v > SEQ_MAX)
    {
        return Err(bad(format!(
            "version {} and sequence numbers {} and {} must be 1 (0 for sequence numbers) to {SEQ_MAX}",
            s.version, r.transition_seq, r.message_seq
        )));
    }
    types
        .check_save(s.agent_type.as_deref(), &s.state_name, &s.state_data)
        .map_err(|e| EngineError::Validation(format!("agent {id}: {e}")))?;

    let mut prev = 0;
    for t in &a.transitions {
        if t.agent_id != *id {
            return Err(bad(format!(
                "transition #{} is of agent {}",
                t.seq, t.agent_id
            )));
        }
        if t.seq <= prev || t.seq > r.transition_seq {
            return Err(bad(format!(
                "transition #{} is out of order (after #{prev}, up to #{})",
                t.seq, r.transition_seq
            )));
        }
        prev = t.seq;
        let at = |m: String| bad(format!("transition #{}: {m}", t.seq));
        validate::name("id", &t.id).map_err(at)?;
        validate::name("from_state", &t.from_state).map_err(at)?;
        validate::name("to_state", &t.to_state).map_err(at)?;
        validate::name("trigger", &t.trigger).map_err(at)?;
        if let Some(d) = &t.state_data {
            validate::document("state_data", d).map_err(at)?;
        }
    }
    let mut prev = 0;
    for m in &a.messages {
        if m.seq <= prev || m.seq > r.message_seq {
            return Err(bad(format!(
                "message #{} is out of order (after #{prev}, up to #{})",
                m.seq, r.message_seq
            )));
        }
        prev = m.seq;
        let at = |e: String| bad(format!("message #{}: {e}", m.seq));
        validate::name("role", &m.role).map_err(at)?;
        validate::document("metadata", m.metadata.doc()).map_err(at)?;
    }
    for c in &a.checkpoints {
        let at = |e: String| bad(format!("checkpoint {}: {e}", c.checkpoint_id));
        validate::agent_id(&c.checkpoint_id).map_err(at)?;
        if c.agent_id != *id || c.state.agent_id != *id {
            return Err(at(format!("is of agent {}", c.agent_id)));
        }
        if c.version == 0 || c.version > s.version {
            return Err(at(format!(
                "version {} is not one the agent had (1 to {})",
                c.version, s.version
            )));
        }
        if let Some(l) = &c.label {
            validate::name("label", l).map_err(at)?;
        }
        validate::name("state.state_name", &c.state.state_name).map_err(at)?;
        validate::document("state.state_data", &c.state.state_data).map_err(at)?;
        validate::document("state.conversation_context", &c.state.conversation_context)
            .map_err(at)?;
        validate::document("state.metadata", c.state.metadata.doc()).map_err(at)?;
    }
    check_thread(a).map_err(bad)
}

/// A thread's rows must be the agent's, within its versions, with valid names.
fn check_thread(a: &ExportedAgent) -> Result<(), String> {
    let s = &a.record.state;
    let within = |what: String, v: u64| {
        if v == 0 || v > s.version {
            return Err(format!(
                "{what}: version {v} is not one the thread had (1 to {})",
                s.version
            ));
        }
        Ok(())
    };
    for c in &a.thread.checkpoints {
        let what = format!(
            "thread checkpoint {:?}/{}",
            c.checkpoint_ns, c.checkpoint_id
        );
        if c.thread_id != s.agent_id {
            return Err(format!("{what} is of thread {}", c.thread_id));
        }
        within(what.clone(), c.version)?;
        let at = |m: String| format!("{what}: {m}");
        validate::name("checkpoint_id", &c.checkpoint_id).map_err(at)?;
        for (channel, version) in &c.channel_versions {
            validate::name("channel", channel).map_err(at)?;
            validate::name("channel version", version).map_err(at)?;
        }
    }
    for b in &a.thread.blobs {
        let what = format!("thread blob {}@{}", b.blob.channel, b.blob.version);
        within(what.clone(), b.version)?;
        validate::name("channel", &b.blob.channel).map_err(|m| format!("{what}: {m}"))?;
        validate::name("version", &b.blob.version).map_err(|m| format!("{what}: {m}"))?;
        if b.blob.extends.is_some() != b.root.is_some() {
            return Err(format!("{what}: a delta needs both extends and root"));
        }
    }
    for w in &a.thread.writes {
        within(format!("thread write of {}", w.checkpoint_id), w.version)?;
    }
    Ok(())
}

fn check_transfer(t: &Transfer) -> EngineResult<()> {
    let bad = |m: String| EngineError::Malformed(format!("transfer {}: {m}", t.transfer_id));
    validate::agent_id(&t.transfer_id)
        .map_err(|e| EngineError::Malformed(format!("transfer_id: {e}")))?;
    validate::agent_id(&t.from_agent).map_err(bad)?;
    validate::agent_id(&t.to_agent).map_err(bad)?;
    validate::name("trigger", &t.trigger).map_err(bad)?;
    if let Some(to) = &t.to_trigger {
        validate::name("to_trigger", to).map_err(bad)?;
    }
    validate::document("context", &t.context).map_err(bad)?;
    if [t.messages_copied, t.from_version, t.to_version]
        .iter()
        .any(|v| *v > SEQ_MAX)
    {
        return Err(bad(format!(
            "counts and versions must be at most {SEQ_MAX}"
        )));
    }
    Ok(())
}

/// Its size as part of a WAL record.
fn encoded_len(value: &impl Serialize) -> EngineResult<usize> {
    crate::doc::raw(|| rmp_serde::to_vec_named(value))
        .map(|v| v.len())
        .map_err(|e| EngineError::Internal(format!("encode an import record: {e}")))
}

/// The import records of `agent`, each with its size: its history in parts of about
/// `part_bytes_max` bytes, in `seq` order, the purge of what it replaces in the first
/// and its record in the last.
fn parts(
    agent: ExportedAgent,
    mut replaces: Option<Tombstone>,
    part_bytes_max: usize,
) -> EngineResult<Vec<(Op, u64)>> {
    #[derive(Default)]
    struct Part {
        transitions: Vec<StateTransition>,
        messages: Vec<Message>,
        checkpoints: Vec<Checkpoint>,
        threads: Vec<ThreadChange>,
        bytes: usize,
    }
    let id = agent.record.state.agent_id.clone();
    let mut out = Vec::new();
    let mut part = Part::default();
    let mut close = |part: Part, record: Option<AgentRecord>, out: &mut Vec<(Op, u64)>| {
        out.push((
            Op::Import {
                agent_id: id.clone(),
                replaces: replaces.take(),
                transitions: part.transitions,
                messages: part.messages,
                checkpoints: part.checkpoints,
                threads: part.threads,
                record: record.map(Arc::new),
            },
            part.bytes as u64,
        ));
    };
    // Room for one more entry of `size` bytes, closing the part if it is full.
    macro_rules! room {
        ($size:expr) => {
            let size = $size;
            if part.bytes > 0 && part.bytes + size > part_bytes_max {
                close(std::mem::take(&mut part), None, &mut out);
            }
            part.bytes += size;
        };
    }
    for t in agent.transitions {
        room!(encoded_len(&t)?);
        part.transitions.push(t);
    }
    for m in agent.messages {
        room!(encoded_len(&m)?);
        part.messages.push(m);
    }
    for c in agent.checkpoints {
        room!(encoded_len(&c)?);
        part.checkpoints.push(c);
    }
    // A thread's checkpoints, oldest first, each with the blobs it names; blobs only a
    // chain stands on (their checkpoints pruned) go with the first.
    let thread = agent.thread;
    let named: BTreeSet<BlobKey> = thread
        .checkpoints
        .iter()
        .flat_map(|c| c.blob_keys())
        .collect();
    let mut blobs: BTreeMap<BlobKey, StoredBlob> =
        thread.blobs.into_iter().map(|b| (b.key(), b)).collect();
    let mut bases: Vec<StoredBlob> = Vec::new();
    blobs.retain(|k, b| {
        if named.contains(k) {
            return true;
        }
        bases.push(b.clone());
        false
    });
    for c in thread.checkpoints {
        let mut own: Vec<StoredBlob> = std::mem::take(&mut bases);
        own.extend(c.blob_keys().filter_map(|k| blobs.remove(&k)));
        let mut size = encoded_len(&c)?;
        for b in &own {
            size += encoded_len(b)?;
        }
        room!(size);
        part.threads.push(ThreadChange::Put {
            checkpoint: Box::new(c),
            blobs: own,
        });
    }
    for w in thread.writes {
        room!(encoded_len(&w)?);
        match part.threads.last_mut() {
            Some(ThreadChange::Writes { writes }) => writes.push(w),
            _ => part.threads.push(ThreadChange::Writes { writes: vec![w] }),
        }
    }
    room!(encoded_len(&agent.record)?);
    close(part, Some(agent.record), &mut out);
    Ok(out)
}

/// One page of a listing: stored entries with unflushed ones merged in by key. When
/// the stored page is full, unflushed entries past its end belong to a later page.
pub(super) fn merge_by_key<T, K: Ord>(
    stored: Vec<T>,
    pending: Vec<T>,
    key: impl Fn(&T) -> K,
    limit: u32,
) -> Vec<T> {
    let full = stored.len() >= limit as usize;
    let last = stored.last().map(&key);
    let mut all = stored;
    all.extend(
        pending
            .into_iter()
            .filter(|p| !full || last.as_ref().is_some_and(|l| key(p) <= *l)),
    );
    all.sort_by_key(&key);
    all.dedup_by(|a, b| key(a) == key(b));
    all.truncate(limit as usize);
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::record;
    use crate::model::Doc;
    use crate::model::Effect;

    fn agent(messages: u64, content_bytes: usize) -> ExportedAgent {
        let mut record = record("a", 7);
        record.message_seq = messages;
        let at = record.state.updated_at;
        ExportedAgent {
            transitions: Vec::new(),
            messages: (1..=messages)
                .map(|seq| Message {
                    seq,
                    role: "user".into(),
                    content: "x".repeat(content_bytes),
                    timestamp: at,
                    metadata: Default::default(),
                })
                .collect(),
            checkpoints: Vec::new(),
            record,
            thread: Default::default(),
        }
    }

    #[test]
    fn a_large_agent_is_imported_in_parts_history_first_record_last() {
        let t = Tombstone {
            version: 10,
            transition_seq: 4,
            message_seq: 4,
        };
        let parts = parts(agent(10, 1000), Some(t), 3500).unwrap();
        assert_eq!(
            parts.len(),
            4,
            "three messages of ~1 KB a part, the record last"
        );
        let mut seqs = Vec::new();
        for (i, (op, bytes)) in parts.iter().enumerate() {
            let Op::Import {
                replaces,
                messages,
                record,
                ..
            } = op
            else {
                panic!("{op:?}")
            };
            assert_eq!(replaces.is_some(), i == 0, "the purge in the first part");
            assert_eq!(record.is_some(), i == 3, "the record in the last");
            assert!(*bytes as usize <= 3500);
            let encoded = op.encode().unwrap().len() as u64;
            assert!(
                encoded >= *bytes && encoded < bytes + 200,
                "{encoded} vs {bytes}"
            );
            seqs.extend(messages.iter().map(|m| m.seq));
        }
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        // Applied in order, the purge comes before everything imported.
        let mut effects = Vec::new();
        for (op, _) in &parts {
            op.for_each_effect(&mut |e| {
                effects.push(match e {
                    Effect::Delete(..) => "delete",
                    Effect::Message(..) => "message",
                    Effect::Record(_) => "record",
                    _ => "other",
                })
            });
        }
        assert_eq!(effects.first(), Some(&"delete"));
        assert_eq!(effects.last(), Some(&"record"));
        // A small agent is one record: all or nothing.
        assert_eq!(parts_of_small().len(), 1);
    }

    fn parts_of_small() -> Vec<(Op, u64)> {
        parts(agent(3, 10), None, IMPORT_PART_BYTES_MAX).unwrap()
    }

    #[test]
    fn what_is_here_decides() {
        let file = record("a", 3);
        let live = |r: AgentRecord| Some(Current::Live(Arc::new(r)));
        assert_eq!(plan(&file, None, false).unwrap(), (Imported::Added, None));
        let deleted = Some(Current::Deleted(Tombstone {
            version: 9,
            transition_seq: 1,
            message_seq: 0,
        }));
        assert_eq!(
            plan(&file, deleted.as_ref(), false).unwrap().0,
            Imported::Added
        );
        assert_eq!(
            plan(&file, live(file.clone()).as_ref(), false).unwrap().0,
            Imported::Unchanged
        );
        let mut newer = file.clone();
        newer.state.version = 5;
        newer.transition_seq = 6;
        let e = plan(&file, live(newer.clone()).as_ref(), false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "agent a is at version 5 here and at version 3 in the file"
        );
        let mut same_version = file.clone();
        same_version.state.state_data = Doc::from_value(&serde_json::json!({"other": 1}));
        let e = plan(&file, live(same_version).as_ref(), false).unwrap_err();
        assert!(e.to_string().contains("different contents"), "{e}");
        assert_eq!(
            plan(&file, live(newer).as_ref(), true).unwrap(),
            (
                Imported::Replaced { version: 5 },
                Some(Tombstone {
                    version: 6,
                    transition_seq: 6,
                    message_seq: 0
                })
            )
        );
    }

    #[test]
    fn pages_merge_stored_and_unflushed_ids() {
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let page = merge_by_key(ids(&["a", "c"]), ids(&["b", "c", "z"]), |s| s.clone(), 3);
        assert_eq!(page, ids(&["a", "b", "c"]));
        // A full stored page leaves later unflushed ids for the next page.
        let page = merge_by_key(ids(&["a", "c"]), ids(&["b", "z"]), |s| s.clone(), 2);
        assert_eq!(page, ids(&["a", "b"]));
        let page = merge_by_key(ids(&[]), ids(&["b", "z"]), |s| s.clone(), 2);
        assert_eq!(page, ids(&["b", "z"]));
    }
}
