//! What the sidecar keeps per agent, and the operations it logs in the WAL.
//!
//! An [`Op`] records the *effect* of one logical operation (new records, log entries with
//! their assigned sequence numbers), never the request: replay re-applies effects without
//! re-validating, so it is deterministic, and applying one twice changes nothing. One
//! operation is one WAL record, so a crash never leaves half of one.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use agentstate_protocol as wire;
use agentstate_protocol::{Codec, CodecError, ThreadBlob, ThreadWrite, Typed};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::doc::{Doc, DocMap};

// The protocol's types with documents as bytes ([`Doc`]): what requests decode into and
// what the sidecar keeps, logs and answers with. Same wire form as the clients' types.
pub type PersistedState = wire::PersistedState<Doc, DocMap>;
pub type PendingTransition = wire::PendingTransition<Doc>;
pub type StateTransition = wire::StateTransition<Doc>;
pub type Message = wire::Message<DocMap>;
pub type NewMessage = wire::NewMessage<DocMap>;
pub type Checkpoint = wire::Checkpoint<Doc, DocMap>;
pub type Transfer = wire::Transfer<Doc>;
pub type SaveStateRequest = wire::SaveStateRequest<Doc, DocMap>;
pub type TransitionRequest = wire::TransitionRequest<Doc>;
pub type CompleteTransitionRequest = wire::CompleteTransitionRequest<Doc>;
pub type TransferRequest = wire::TransferRequest<Doc>;
pub type AppendMessagesRequest = wire::AppendMessagesRequest<DocMap>;
pub type BatchOperation = wire::BatchOperation<Doc, DocMap>;
pub type BatchRequest = wire::BatchRequest<Doc, DocMap>;
pub type TransitionResponse = wire::TransitionResponse<Doc>;
pub type BeginTransitionResponse = wire::BeginTransitionResponse<Doc>;
pub type ReplayResponse = wire::ReplayResponse<Doc, DocMap>;
pub type TransitionsPage = wire::TransitionsPage<Doc>;
pub type MessagesPage = wire::MessagesPage<DocMap>;
pub type CheckpointsPage = wire::CheckpointsPage<Doc, DocMap>;
pub type PopMessageResponse = wire::PopMessageResponse<DocMap>;

/// An agent's stored record: the public state plus the counters the sidecar needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub state: PersistedState,
    /// Sequence number of the last transition logged for this agent.
    #[serde(default)]
    pub transition_seq: u64,
    /// Sequence number of the last message of its conversation.
    #[serde(default)]
    pub message_seq: u64,
    /// The ownership lease epoch this sidecar held when it wrote the record (MongoDB
    /// only; 0 without leases). A flush never overwrites a document written under a
    /// newer epoch: that is how a sidecar that lost its lease is fenced off.
    #[serde(default)]
    pub lease_epoch: u64,
    /// The state as `GET` bodies, per codec, encoded on first use.
    #[serde(skip)]
    pub encoded: EncodedState,
}

impl AgentRecord {
    /// The state as a `GET` body in `codec`: encoded once per record and codec, then
    /// shared (a cache hit costs no clone and no serialisation).
    pub fn state_body(&self, codec: Codec) -> Result<Bytes, CodecError> {
        let slot = &self.encoded.0.get_or_init(Box::default)[match codec {
            Codec::MsgPack => 0,
            Codec::Json => 1,
        }];
        if let Some(b) = slot.get() {
            return Ok(b.clone());
        }
        let body = Bytes::from(codec.encode(&self.state)?);
        Ok(slot.get_or_init(|| body).clone())
    }
}

impl AgentRecord {
    /// What the record takes in memory, near enough for a cache bound: itself, its
    /// strings and documents, and as much again for an encoded `GET` body (built on the
    /// first read, so not there yet when the cache weighs the entry).
    pub fn memory_bytes(&self) -> usize {
        let s = &self.state;
        let pending = s.pending_transition.as_ref().map_or(0, |p| {
            std::mem::size_of::<PendingTransition>()
                + p.id.len()
                + p.from_state.len()
                + p.to_state.len()
                + p.trigger.len()
                + p.state_data.as_ref().map_or(0, Doc::len)
        });
        let payload = s.agent_id.len()
            + s.agent_type.as_ref().map_or(0, String::len)
            + s.state_name.len()
            + s.state_data.len()
            + s.conversation_context.len()
            + s.metadata.doc().len()
            + pending;
        // A body adds field names and timestamps to the payload: about 200 bytes.
        std::mem::size_of::<AgentRecord>() + 2 * payload + 200
    }
}

/// Encoded bodies of a record's state. Hazard: they are right only while the state is
/// unchanged; a record is immutable once shared (`Arc`), and a clone (how a new version
/// starts) starts empty, so they never go stale. Boxed on first use: records in ops stay
/// small.
#[derive(Default)]
pub struct EncodedState(OnceLock<Box<[OnceLock<Bytes>; 2]>>);

impl Clone for EncodedState {
    fn clone(&self) -> Self {
        EncodedState::default()
    }
}

impl PartialEq for EncodedState {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for EncodedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncodedState")
    }
}

/// What is known about an agent: live, or deleted at some version.
#[derive(Debug, Clone, PartialEq)]
pub enum Current {
    Live(Arc<AgentRecord>),
    /// Deleted. Versions and sequence numbers keep counting from here if the agent is
    /// created again, so an older document can never look newer than the new one.
    Deleted(Tombstone),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub version: u64,
    pub transition_seq: u64,
    #[serde(default)]
    pub message_seq: u64,
}

impl Current {
    pub fn version(&self) -> u64 {
        match self {
            Current::Live(r) => r.state.version,
            Current::Deleted(t) => t.version,
        }
    }

    pub fn transition_seq(&self) -> u64 {
        match self {
            Current::Live(r) => r.transition_seq,
            Current::Deleted(t) => t.transition_seq,
        }
    }

    pub fn message_seq(&self) -> u64 {
        match self {
            Current::Live(r) => r.message_seq,
            Current::Deleted(t) => t.message_seq,
        }
    }

    pub fn live(&self) -> Option<&Arc<AgentRecord>> {
        match self {
            Current::Live(r) => Some(r),
            Current::Deleted(_) => None,
        }
    }
}

/// One WAL record's operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// The agent's record after a save (also: begin of a multi-step transition).
    Put { record: Arc<AgentRecord> },
    /// The agent and its history were deleted.
    Delete {
        agent_id: String,
        tombstone: Tombstone,
        at: DateTime<Utc>,
    },
    /// A transition and its log entry, applied together. For a refused transition the
    /// record keeps its version and only its `transition_seq` moves.
    Transition {
        record: Arc<AgentRecord>,
        transition: StateTransition,
    },
    /// Messages appended to the conversation, and the record that counts them.
    Messages {
        record: Arc<AgentRecord>,
        messages: Vec<Message>,
    },
    /// A checkpoint taken; the agent's record does not change.
    Checkpoint { checkpoint: Checkpoint },
    /// A hand-over between two agents: both records, their log entries, the messages
    /// copied to the target, and the transfer's own record. All or nothing. An imported
    /// transfer comes alone, with no records, entries or messages: those came with its
    /// agents.
    Transfer {
        transfer: Transfer,
        records: Vec<Arc<AgentRecord>>,
        transitions: Vec<StateTransition>,
        /// Appended to the target's conversation.
        messages: Vec<Message>,
    },
    /// Several operations on several agents, all or nothing.
    Batch { ops: Vec<Op> },
    /// Changes to a thread's framework checkpoints (the thread is the agent), and the
    /// record that counts them.
    Thread {
        record: Arc<AgentRecord>,
        changes: Vec<ThreadChange>,
    },
    /// Messages `from_seq..=to_seq` removed from the conversation.
    DropMessages {
        record: Arc<AgentRecord>,
        from_seq: u64,
        to_seq: u64,
    },
    /// An agent imported from an export file as it was: versions, sequence numbers and
    /// timestamps kept. An agent too large for one record takes several, its history
    /// first and its record in the last, so an agent whose record is there is there whole.
    Import {
        agent_id: String,
        /// The agent this one replaces (`import --overwrite`): purged first, as by a
        /// delete.
        #[serde(default)]
        replaces: Option<Tombstone>,
        #[serde(default)]
        transitions: Vec<StateTransition>,
        #[serde(default)]
        messages: Vec<Message>,
        #[serde(default)]
        checkpoints: Vec<Checkpoint>,
        /// A thread's framework checkpoints, blobs and writes, as they were stored.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        threads: Vec<ThreadChange>,
        /// In the last record of an import only.
        #[serde(default)]
        record: Option<Arc<AgentRecord>>,
    },
}

/// Everything an export holds of one agent, as it was: its record, transition log,
/// conversation and checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedAgent {
    pub record: AgentRecord,
    /// In `seq` order, as are the messages.
    pub transitions: Vec<StateTransition>,
    pub messages: Vec<Message>,
    /// Oldest first.
    pub checkpoints: Vec<Checkpoint>,
    /// Its framework checkpoints if it is a thread (empty otherwise).
    pub thread: ExportedThread,
}

/// A thread's framework checkpoints as stored: deltas stay deltas, each blob once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportedThread {
    /// Oldest first.
    pub checkpoints: Vec<ThreadCheckpoint>,
    pub blobs: Vec<StoredBlob>,
    pub writes: Vec<StoredWrite>,
}

/// A framework checkpoint of a thread, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadCheckpoint {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub parent_checkpoint_id: Option<String>,
    pub checkpoint: Typed,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub channel_versions: BTreeMap<String, String>,
    /// The thread's version when written: a delete of the thread purges what is older.
    pub version: u64,
    /// When the sidecar received it (what age-based retention goes by).
    #[serde(default)]
    pub created_at: DateTime<Utc>,
    /// For each channel whose value is a delta ([`crate::delta`]): the whole value its
    /// chain stands on, and how deep.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub delta_roots: BTreeMap<String, DeltaRoot>,
}

/// Where a delta's chain starts: the version of the whole value under it, and how many
/// deltas up from there it is (1: it extends the whole value itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaRoot {
    pub root: String,
    pub depth: u32,
}

impl ThreadCheckpoint {
    pub fn key(&self) -> CheckpointKey {
        CheckpointKey {
            ns: self.checkpoint_ns.clone(),
            id: self.checkpoint_id.clone(),
        }
    }

    /// The blobs its channel values are, each channel's at its version (a delta also
    /// needs the chain under it: [`crate::delta`]).
    pub fn blob_keys(&self) -> impl Iterator<Item = BlobKey> + '_ {
        self.channel_versions.iter().map(|(c, v)| BlobKey {
            ns: self.checkpoint_ns.clone(),
            channel: c.clone(),
            version: v.clone(),
        })
    }
}

/// A blob of a thread, in a namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBlob {
    pub checkpoint_ns: String,
    pub blob: ThreadBlob,
    pub version: u64,
    /// A delta's root (its `blob.extends` names the version under it); `None` for a
    /// whole value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<DeltaRoot>,
}

impl StoredBlob {
    pub fn key(&self) -> BlobKey {
        BlobKey {
            ns: self.checkpoint_ns.clone(),
            channel: self.blob.channel.clone(),
            version: self.blob.version.clone(),
        }
    }
}

/// A pending write of a thread's checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredWrite {
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub write: ThreadWrite,
    pub version: u64,
}

impl StoredWrite {
    pub fn key(&self) -> WriteKey {
        WriteKey {
            checkpoint: CheckpointKey {
                ns: self.checkpoint_ns.clone(),
                id: self.checkpoint_id.clone(),
            },
            task_id: self.write.task_id.clone(),
            idx: self.write.idx,
        }
    }
}

/// A checkpoint within a thread.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CheckpointKey {
    pub ns: String,
    pub id: String,
}

/// A blob within a thread.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BlobKey {
    pub ns: String,
    pub channel: String,
    pub version: String,
}

/// A write within a thread.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WriteKey {
    pub checkpoint: CheckpointKey,
    pub task_id: String,
    pub idx: i64,
}

/// One change to a thread's checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThreadChange {
    /// A checkpoint (replacing one with the same key) and the blobs of the channels that
    /// changed (a blob already stored under its key is the same blob).
    Put {
        checkpoint: Box<ThreadCheckpoint>,
        blobs: Vec<StoredBlob>,
    },
    /// Writes against checkpoints: at `idx >= 0` the first of a key wins, below 0 the
    /// last.
    Writes { writes: Vec<StoredWrite> },
    /// Checkpoints removed with their writes, and blobs no remaining checkpoint uses.
    Drop {
        checkpoints: Vec<CheckpointKey>,
        blobs: Vec<BlobKey>,
    },
}

/// One piece of an operation's effect, on one agent (or, for a transfer record, none).
#[derive(Debug, Clone, Copy)]
pub enum Effect<'a> {
    Record(&'a Arc<AgentRecord>),
    Delete(&'a str, Tombstone),
    Transition(&'a StateTransition),
    /// A message of the given agent.
    Message(&'a str, &'a Message),
    Checkpoint(&'a Checkpoint),
    /// A change to the given thread's framework checkpoints.
    Thread(&'a str, &'a ThreadChange),
    /// Messages of the given agent removed, by `seq` range (inclusive).
    DropMessages(&'a str, u64, u64),
}

impl<'a> Effect<'a> {
    /// The agent this effect changes.
    pub fn agent_id(&self) -> &'a str {
        match *self {
            Effect::Record(r) => r.state.agent_id.as_str(),
            Effect::Delete(id, _)
            | Effect::Message(id, _)
            | Effect::Thread(id, _)
            | Effect::DropMessages(id, ..) => id,
            Effect::Transition(t) => t.agent_id.as_str(),
            Effect::Checkpoint(c) => c.agent_id.as_str(),
        }
    }
}

impl Op {
    /// Calls `f` with every effect, in the order they must be applied.
    pub fn for_each_effect<'a>(&'a self, f: &mut impl FnMut(Effect<'a>)) {
        match self {
            Op::Put { record } => f(Effect::Record(record)),
            Op::Delete {
                agent_id,
                tombstone,
                ..
            } => f(Effect::Delete(agent_id, *tombstone)),
            Op::Transition { record, transition } => {
                f(Effect::Record(record));
                f(Effect::Transition(transition));
            }
            Op::Messages { record, messages } => {
                f(Effect::Record(record));
                for m in messages {
                    f(Effect::Message(&record.state.agent_id, m));
                }
            }
            Op::Checkpoint { checkpoint } => f(Effect::Checkpoint(checkpoint)),
            Op::Transfer {
                transfer,
                records,
                transitions,
                messages,
            } => {
                for r in records {
                    f(Effect::Record(r));
                }
                for t in transitions {
                    f(Effect::Transition(t));
                }
                for m in messages {
                    f(Effect::Message(&transfer.to_agent, m));
                }
            }
            Op::Batch { ops } => ops.iter().for_each(|op| op.for_each_effect(f)),
            Op::Thread { record, changes } => {
                f(Effect::Record(record));
                for c in changes {
                    f(Effect::Thread(&record.state.agent_id, c));
                }
            }
            Op::DropMessages {
                record,
                from_seq,
                to_seq,
            } => {
                f(Effect::Record(record));
                f(Effect::DropMessages(
                    &record.state.agent_id,
                    *from_seq,
                    *to_seq,
                ));
            }
            Op::Import {
                agent_id,
                replaces,
                transitions,
                messages,
                checkpoints,
                threads,
                record,
            } => {
                if let Some(t) = replaces {
                    f(Effect::Delete(agent_id, *t));
                }
                for t in transitions {
                    f(Effect::Transition(t));
                }
                for m in messages {
                    f(Effect::Message(agent_id, m));
                }
                for c in checkpoints {
                    f(Effect::Checkpoint(c));
                }
                for change in threads {
                    f(Effect::Thread(agent_id, change));
                }
                if let Some(r) = record {
                    f(Effect::Record(r));
                }
            }
        }
    }

    /// The records this op writes, to stamp them with their lease epoch (before the op
    /// is logged, while they are not shared).
    pub fn records_mut(&mut self) -> Vec<&mut Arc<AgentRecord>> {
        match self {
            Op::Put { record }
            | Op::Transition { record, .. }
            | Op::Messages { record, .. }
            | Op::Thread { record, .. }
            | Op::DropMessages { record, .. }
            | Op::Import {
                record: Some(record),
                ..
            } => vec![record],
            Op::Transfer { records, .. } => records.iter_mut().collect(),
            Op::Batch { ops } => ops.iter_mut().flat_map(Op::records_mut).collect(),
            Op::Delete { .. } | Op::Checkpoint { .. } | Op::Import { record: None, .. } => {
                Vec::new()
            }
        }
    }

    /// Agents this op changes, in order of first appearance.
    pub fn agents(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        self.for_each_effect(&mut |e| {
            let id = e.agent_id();
            if !out.contains(&id) {
                out.push(id);
            }
        });
        out
    }

    /// What `agent_id` is after this op, if the op changes its record.
    pub fn resulting(&self, agent_id: &str) -> Option<Current> {
        let mut last = None;
        self.for_each_effect(&mut |e| match e {
            Effect::Record(r) if r.state.agent_id == agent_id => {
                last = Some(Current::Live(Arc::clone(r)))
            }
            Effect::Delete(id, t) if id == agent_id => last = Some(Current::Deleted(t)),
            _ => {}
        });
        last
    }

    /// MessagePack with field names: readable by other languages and debugging tools.
    /// Documents go in as their bytes ([`crate::doc::raw`]).
    pub fn encode(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        crate::doc::raw(|| rmp_serde::to_vec_named(self))
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        crate::doc::raw(|| rmp_serde::from_slice(bytes))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_state_body_is_encoded_once_and_never_outlives_its_version() {
        let r = Arc::new(record("a", 1));
        let first = r.state_body(Codec::MsgPack).unwrap();
        let again = r.state_body(Codec::MsgPack).unwrap();
        assert_eq!(
            first.as_ptr(),
            again.as_ptr(),
            "the same bytes, not a new encoding"
        );
        let json = r.state_body(Codec::Json).unwrap();
        let decoded: PersistedState = serde_json::from_slice(&json).unwrap();
        assert_eq!(decoded, r.state);
        // The next version starts from a clone: its body is its own.
        let mut next = (*r).clone();
        next.state.version = 2;
        let body = next.state_body(Codec::MsgPack).unwrap();
        let decoded: PersistedState = rmp_serde::from_slice(&body).unwrap();
        assert_eq!(decoded.version, 2);
    }

    pub(crate) fn record(agent: &str, version: u64) -> AgentRecord {
        let now = Utc::now();
        AgentRecord {
            state: PersistedState {
                agent_id: agent.into(),
                agent_type: None,
                state_name: "idle".into(),
                state_data: Doc::from_value(&json!({"x": [1, 2]})),
                conversation_context: Doc::null(),
                created_at: now,
                updated_at: now,
                version,
                metadata: Default::default(),
                pending_transition: None,
            },
            transition_seq: 1,
            message_seq: 0,
            lease_epoch: 0,
            encoded: Default::default(),
        }
    }

    #[test]
    fn ops_round_trip_through_msgpack() {
        let now = Utc::now();
        let rec = record("a", 2);
        let transition = StateTransition {
            id: "t".into(),
            seq: 1,
            agent_id: "a".into(),
            from_state: "idle".into(),
            to_state: "busy".into(),
            trigger: "go".into(),
            timestamp: now,
            success: true,
            error: None,
            state_data: Some(Doc::from_value(&json!({"k": 1}))),
            reason: Some("why".into()),
        };
        let message = Message {
            seq: 1,
            role: "user".into(),
            content: "hi".into(),
            timestamp: now,
            metadata: Default::default(),
        };
        let ops = vec![
            Op::Put {
                record: rec.clone().into(),
            },
            Op::Delete {
                agent_id: "a".into(),
                tombstone: Tombstone {
                    version: 3,
                    transition_seq: 1,
                    message_seq: 0,
                },
                at: now,
            },
            Op::Transition {
                record: rec.clone().into(),
                transition: transition.clone(),
            },
            Op::Messages {
                record: rec.clone().into(),
                messages: vec![message.clone()],
            },
            Op::Import {
                agent_id: "a".into(),
                replaces: Some(Tombstone {
                    version: 5,
                    transition_seq: 3,
                    message_seq: 2,
                }),
                transitions: vec![transition.clone()],
                messages: vec![message.clone()],
                checkpoints: Vec::new(),
                threads: Vec::new(),
                record: Some(rec.clone().into()),
            },
        ];
        let batch = Op::Batch { ops: ops.clone() };
        for op in ops.into_iter().chain([batch]) {
            assert_eq!(Op::decode(&op.encode().unwrap()).unwrap(), op);
            // A WAL written before documents were kept as bytes holds them as values.
            let older = rmp_serde::to_vec_named(&op).unwrap();
            if !matches!(op, Op::Delete { .. }) {
                assert_ne!(older, op.encode().unwrap(), "documents as bytes");
            }
            assert_eq!(Op::decode(&older).unwrap(), op);
        }
    }

    #[test]
    fn effects_name_their_agents() {
        let op = Op::Batch {
            ops: vec![
                Op::Put {
                    record: record("a", 1).into(),
                },
                Op::Put {
                    record: record("b", 1).into(),
                },
                Op::Put {
                    record: record("a", 2).into(),
                },
            ],
        };
        assert_eq!(op.agents(), ["a", "b"]);
        assert_eq!(op.resulting("a").unwrap().version(), 2);
        assert!(op.resulting("c").is_none());
    }
}
