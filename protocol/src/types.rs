//! The data model and the bodies of the HTTP API (v1).
//!
//! Field names are the wire contract (DESIGN.md): MessagePack maps and JSON objects carry
//! exactly these names. Timestamps are RFC 3339 UTC in JSON and strings in MessagePack too,
//! so a reader in any language sees the same value.
//!
//! Types that carry JSON documents take them as type parameters: `D` for a document
//! (`state_data`, `conversation_context`, a transfer's `context`) and `M` for a metadata
//! map. Clients use the defaults, `serde_json::Value` and [`Metadata`]; the sidecar
//! keeps documents as encoded bytes of its own type, with the same wire form.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Free-form key/value data attached to states and messages.
pub type Metadata = Map<String, Value>;

/// An agent's current state as the sidecar stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default, M: Deserialize<'de> + Default"))]
pub struct PersistedState<D = Value, M = Metadata> {
    pub agent_id: String,
    /// The agent type the state is validated against; absent for untyped agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    pub state_name: String,
    #[serde(default)]
    pub state_data: D,
    /// Context carried across transfers between agents (see `POST /v1/transfers`).
    #[serde(default)]
    pub conversation_context: D,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Starts at 1 and grows by one with every change; the `ETag` of the agent.
    pub version: u64,
    #[serde(default)]
    pub metadata: M,
    /// A multi-step transition begun and neither completed nor aborted. An agent that
    /// finds one on restore decides: `complete` or `abort` it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_transition: Option<PendingTransition<D>>,
}

/// A transition in progress (`POST .../transitions/begin`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default"))]
pub struct PendingTransition<D = Value> {
    pub id: String,
    pub from_state: String,
    pub to_state: String,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    /// Data to set when it completes, unless `complete` brings its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_data: Option<D>,
}

/// One entry of an agent's transition log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default"))]
pub struct StateTransition<D = Value> {
    pub id: String,
    /// Position in the agent's log, strictly increasing from 1; the paging key (`after`).
    pub seq: u64,
    pub agent_id: String,
    pub from_state: String,
    pub to_state: String,
    pub trigger: String,
    pub timestamp: DateTime<Utc>,
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The `state_data` the transition set, if it set one; replay re-applies it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_data: Option<D>,
    /// Why an operator made it (a rollback or abort from the inspector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One message of an agent's conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "M: Deserialize<'de> + Default"))]
pub struct Message<M = Metadata> {
    /// Strictly increasing per agent, starting at 1.
    pub seq: u64,
    pub role: String,
    pub content: String,
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub metadata: M,
}

/// Body of `PUT /v1/agents/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default, M: Deserialize<'de> + Default"))]
pub struct SaveStateRequest<D = Value, M = Metadata> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    pub state_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_data: Option<D>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<M>,
}

/// Body of `POST /v1/agents/{id}/transitions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default"))]
pub struct TransitionRequest<D = Value> {
    pub to_state: String,
    pub trigger: String,
    /// Replaces the agent's `state_data` when the transition succeeds; kept when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_data: Option<D>,
}

/// Answer to a successful transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default"))]
pub struct TransitionResponse<D = Value> {
    pub transition: StateTransition<D>,
    pub version: u64,
}

/// A page of the transition log (`GET /v1/agents/{id}/transitions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default"))]
pub struct TransitionsPage<D = Value> {
    pub transitions: Vec<StateTransition<D>>,
}

/// Body of `POST .../transitions/{id}/complete`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default"))]
pub struct CompleteTransitionRequest<D = Value> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_data: Option<D>,
}

/// Body of `POST .../transitions/{id}/abort`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortTransitionRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Answer to `begin`: the pending transition and the agent's version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default"))]
pub struct BeginTransitionResponse<D = Value> {
    pub pending_transition: PendingTransition<D>,
    pub version: u64,
}

/// A message as an agent sends it; the sidecar assigns `seq` and `timestamp`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "M: Deserialize<'de> + Default"))]
pub struct NewMessage<M = Metadata> {
    pub role: String,
    pub content: String,
    #[serde(default, deserialize_with = "crate::strict::map")]
    pub metadata: M,
}

/// Body of `POST /v1/agents/{id}/messages`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "M: Deserialize<'de> + Default"))]
pub struct AppendMessagesRequest<M = Metadata> {
    pub messages: Vec<NewMessage<M>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendMessagesResponse {
    pub seqs: Vec<u64>,
    pub version: u64,
}

/// A page of the conversation (`GET /v1/agents/{id}/messages`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "M: Deserialize<'de> + Default"))]
pub struct MessagesPage<M = Metadata> {
    pub messages: Vec<Message<M>>,
}

/// A snapshot of an agent to roll back or replay from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default, M: Deserialize<'de> + Default"))]
pub struct Checkpoint<D = Value, M = Metadata> {
    pub checkpoint_id: String,
    pub agent_id: String,
    /// The agent's version when the checkpoint was taken.
    pub version: u64,
    pub state: PersistedState<D, M>,
    /// The transition log up to this `seq` is reflected in `state`.
    pub transition_seq: u64,
    /// The conversation up to this `seq` had happened.
    pub message_seq: u64,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Body of `POST /v1/agents/{id}/checkpoints` (may be empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointResponse {
    pub checkpoint_id: String,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default, M: Deserialize<'de> + Default"))]
pub struct CheckpointsPage<D = Value, M = Metadata> {
    pub checkpoints: Vec<Checkpoint<D, M>>,
}

/// Body of `POST /v1/agents/{id}/rollback`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub checkpoint_id: String,
}

/// Body of `POST /v1/agents/{id}/replay`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub checkpoint_id: String,
    /// Make the recomputed state current (a new version); otherwise a dry run.
    #[serde(default)]
    pub apply: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default, M: Deserialize<'de> + Default"))]
pub struct ReplayResponse<D = Value, M = Metadata> {
    /// The state recomputed from the checkpoint and the log.
    pub state: PersistedState<D, M>,
    /// Successful transitions re-applied on top of the checkpoint.
    pub transitions_applied: u64,
    pub applied: bool,
    /// The agent's version after the call (unchanged on a dry run).
    pub version: u64,
}

/// Body of `POST /v1/transfers`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default"))]
pub struct TransferRequest<D = Value> {
    /// Chosen by the caller; the same id again returns the first result.
    pub transfer_id: String,
    pub from_agent: String,
    pub to_agent: String,
    /// Transition of the source agent (validated against its type).
    pub trigger: String,
    /// Transition of the target agent, if it should move too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_trigger: Option<String>,
    /// Type of the target when it does not exist yet: it is created in the type's
    /// initial state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_agent_type: Option<String>,
    /// The context handed over; default: the source's `state_data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<D>,
    /// Copy at most this many of the latest messages (default: all, up to the limit).
    #[serde(
        default,
        deserialize_with = "crate::integral::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub messages_max: Option<u32>,
}

/// A transfer's record (`GET /v1/transfers/{id}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default"))]
pub struct Transfer<D = Value> {
    pub transfer_id: String,
    pub from_agent: String,
    pub to_agent: String,
    pub trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_trigger: Option<String>,
    pub context: D,
    pub messages_copied: u64,
    /// Versions of both agents right after the transfer.
    pub from_version: u64,
    pub to_version: u64,
    pub created_at: DateTime<Utc>,
}

/// One operation of `POST /v1/batch`, tagged by `op`. Read through
/// [`RawBatchOperation`], so that `op` is a name (never a variant index) and each
/// operation takes its own fields only.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum BatchOperation<D = Value, M = Metadata> {
    Put {
        agent_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        if_match: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_type: Option<String>,
        state_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state_data: Option<D>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<M>,
    },
    Delete {
        agent_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        if_match: Option<u64>,
    },
    Transition {
        agent_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        if_match: Option<u64>,
        to_state: String,
        trigger: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state_data: Option<D>,
    },
    Messages {
        agent_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        if_match: Option<u64>,
        messages: Vec<NewMessage<M>>,
    },
}

/// Every field any batch operation has; which are allowed depends on `op`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default, M: Deserialize<'de> + Default"))]
struct RawBatchOperation<D, M> {
    #[serde(deserialize_with = "batch_op_name")]
    op: String,
    agent_id: String,
    #[serde(default, deserialize_with = "crate::integral::option")]
    if_match: Option<u64>,
    #[serde(default)]
    agent_type: Option<String>,
    #[serde(default)]
    state_name: Option<String>,
    #[serde(default)]
    state_data: Option<D>,
    #[serde(default)]
    metadata: Option<M>,
    #[serde(default)]
    to_state: Option<String>,
    #[serde(default)]
    trigger: Option<String>,
    #[serde(default)]
    messages: Option<Vec<NewMessage<M>>>,
}

const BATCH_OPS: &[&str] = &["put", "delete", "transition", "messages"];

fn batch_op_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    crate::strict::variant_name(d, BATCH_OPS)
}

impl<D, M> TryFrom<RawBatchOperation<D, M>> for BatchOperation<D, M> {
    type Error = String;

    fn try_from(raw: RawBatchOperation<D, M>) -> Result<Self, String> {
        let RawBatchOperation {
            op,
            agent_id,
            if_match,
            agent_type,
            state_name,
            state_data,
            metadata,
            to_state,
            trigger,
            messages,
        } = raw;
        // The fields present that `op` does not take, by name.
        let present = [
            ("agent_type", agent_type.is_some()),
            ("state_name", state_name.is_some()),
            ("state_data", state_data.is_some()),
            ("metadata", metadata.is_some()),
            ("to_state", to_state.is_some()),
            ("trigger", trigger.is_some()),
            ("messages", messages.is_some()),
        ];
        let only = |allowed: &[&str]| match present
            .iter()
            .find(|(name, set)| *set && !allowed.contains(name))
        {
            Some((name, _)) => Err(format!("unknown field `{name}` in a `{op}` operation")),
            None => Ok(()),
        };
        let required = |name: &str, v: Option<String>| {
            v.ok_or_else(|| format!("missing field `{name}` in a `{op}` operation"))
        };
        Ok(match op.as_str() {
            "put" => {
                only(&["agent_type", "state_name", "state_data", "metadata"])?;
                BatchOperation::Put {
                    agent_id,
                    if_match,
                    agent_type,
                    state_name: required("state_name", state_name)?,
                    state_data,
                    metadata,
                }
            }
            "delete" => {
                only(&[])?;
                BatchOperation::Delete { agent_id, if_match }
            }
            "transition" => {
                only(&["to_state", "trigger", "state_data"])?;
                BatchOperation::Transition {
                    agent_id,
                    if_match,
                    to_state: required("to_state", to_state)?,
                    trigger: required("trigger", trigger)?,
                    state_data,
                }
            }
            _ => {
                only(&["messages"])?;
                BatchOperation::Messages {
                    agent_id,
                    if_match,
                    messages: messages
                        .ok_or_else(|| format!("missing field `messages` in a `{op}` operation"))?,
                }
            }
        })
    }
}

impl<'de, T, M> Deserialize<'de> for BatchOperation<T, M>
where
    T: Deserialize<'de> + Default,
    M: Deserialize<'de> + Default,
{
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RawBatchOperation::<T, M>::deserialize(d)?
            .try_into()
            .map_err(serde::de::Error::custom)
    }
}

/// Body of `POST /v1/batch`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default, M: Deserialize<'de> + Default"))]
pub struct BatchRequest<D = Value, M = Metadata> {
    pub operations: Vec<BatchOperation<D, M>>,
}

/// Per operation, in order: the agent and its version after the batch step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchResult {
    pub agent_id: String,
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchResponse {
    pub results: Vec<BatchResult>,
}

/// Answer to a mutating call: the agent's version after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    pub version: u64,
}

/// How durable a write must be before the sidecar acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// Acknowledged once the WAL record is fsync'ed (group commit). The default.
    #[default]
    Local,
    /// Acknowledged once the backend (MongoDB or the embedded store) has the write.
    Remote,
    /// Acknowledged before the fsync: fastest, may be lost if the process crashes.
    Memory,
}

impl Durability {
    pub const HEADER: &'static str = "agentstate-durability";

    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Local => "local",
            Durability::Remote => "remote",
            Durability::Memory => "memory",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "local" => Some(Durability::Local),
            "remote" => Some(Durability::Remote),
            "memory" => Some(Durability::Memory),
            _ => None,
        }
    }
}

/// Body of `GET /v1/status`: what an operator looks at first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResponse {
    pub ready: bool,
    /// `"mongodb"` or `"sqlite"`.
    pub backend: String,
    pub backend_reachable: bool,
    pub wal_segments: u64,
    pub wal_bytes: u64,
    /// Highest LSN written to the WAL.
    pub wal_last_lsn: u64,
    /// Every WAL record at or below this LSN is in the backend.
    pub flushed_lsn: u64,
    /// Agents with changes not yet in the backend.
    pub backlog_agents: u64,
    pub backlog_bytes: u64,
    pub backlog_bytes_max: u64,
    /// Age of the oldest change not yet in the backend.
    pub backlog_oldest_age_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_flush_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_flush_error: Option<String>,
    pub cache_entries: u64,
    /// Bytes of agent states held in the cache.
    #[serde(default)]
    pub cache_bytes: u64,
    /// Ownership leases this sidecar holds (MongoDB; 0 on the embedded store).
    #[serde(default)]
    pub leases_held: u64,
}

/// What one table (SQLite) or collection (MongoDB) of the backend holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableUsage {
    pub name: String,
    /// Rows, or documents.
    pub rows: u64,
    /// The bytes of the rows themselves (SQLite: their payload; MongoDB: `size`).
    pub data_bytes: u64,
    /// The bytes the table takes on disk, free space in its pages included.
    pub storage_bytes: u64,
    /// The bytes its indexes take.
    pub index_bytes: u64,
}

/// An agent (or thread) and the bytes the backend holds of it, in every table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentUsage {
    pub agent_id: String,
    pub bytes: u64,
}

/// Body of `GET /v1/usage`: what the backend holds, as it holds it (changes not yet
/// flushed are not counted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageResponse {
    /// `"mongodb"` or `"sqlite"`.
    pub backend: String,
    pub tables: Vec<TableUsage>,
    /// The agents holding the most bytes, most first.
    pub largest: Vec<AgentUsage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_names_round_trip() {
        for d in [Durability::Local, Durability::Remote, Durability::Memory] {
            assert_eq!(Durability::parse(d.as_str()), Some(d));
        }
        assert_eq!(Durability::parse("disk"), None);
    }
}
