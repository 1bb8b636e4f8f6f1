//! The data model and the bodies of the HTTP API (v1).
//!
//! Field names are the wire contract (DESIGN.md): MessagePack maps and JSON objects carry
//! exactly these names. Timestamps are RFC 3339 UTC in JSON and strings in MessagePack too,
//! so a reader in any language sees the same value.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Free-form key/value data attached to states and messages.
pub type Metadata = Map<String, Value>;

/// An agent's current state as the sidecar stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersistedState {
    pub agent_id: String,
    /// The agent type the state is validated against; absent for untyped agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    pub state_name: String,
    #[serde(default)]
    pub state_data: Value,
    /// Context carried across transfers between agents (see `POST /v1/transfers`).
    #[serde(default)]
    pub conversation_context: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Starts at 1 and grows by one with every change; the `ETag` of the agent.
    pub version: u64,
    #[serde(default)]
    pub metadata: Metadata,
}

/// One entry of an agent's transition log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateTransition {
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
}

/// One message of an agent's conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Strictly increasing per agent, starting at 1.
    pub seq: u64,
    pub role: String,
    pub content: String,
    pub timestamp: DateTime<Utc>,
    #[serde(default)]
    pub metadata: Metadata,
}

/// Body of `PUT /v1/agents/{id}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaveStateRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    pub state_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_data: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

/// Body of `POST /v1/agents/{id}/transitions`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionRequest {
    pub to_state: String,
    pub trigger: String,
    /// Replaces the agent's `state_data` when the transition succeeds; kept when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_data: Option<Value>,
}

/// Answer to a successful transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionResponse {
    pub transition: StateTransition,
    pub version: u64,
}

/// A page of the transition log (`GET /v1/agents/{id}/transitions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransitionsPage {
    pub transitions: Vec<StateTransition>,
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
