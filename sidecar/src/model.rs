//! What the sidecar keeps per agent, and the operations it logs in the WAL.
//!
//! An [`Op`] records the *effect* of one logical operation (the new state, the log entry
//! with its assigned sequence number), never the request: replay re-applies effects
//! without re-validating, so it is deterministic, and applying one twice changes nothing.

use std::sync::Arc;

use agentstate_protocol::{PersistedState, StateTransition};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An agent's stored record: the public state plus the counters the sidecar needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub state: PersistedState,
    /// Sequence number of the last transition logged for this agent.
    #[serde(default)]
    pub transition_seq: u64,
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
    /// The agent's record after a save.
    Put { record: AgentRecord },
    /// The agent and its history were deleted.
    Delete {
        agent_id: String,
        tombstone: Tombstone,
        at: DateTime<Utc>,
    },
    /// A transition and its log entry, applied together. For a refused transition the
    /// record keeps its version and only its `transition_seq` moves.
    Transition {
        record: AgentRecord,
        transition: StateTransition,
    },
}

impl Op {
    pub fn agent_id(&self) -> &str {
        match self {
            Op::Put { record } | Op::Transition { record, .. } => &record.state.agent_id,
            Op::Delete { agent_id, .. } => agent_id,
        }
    }

    /// What the agent is after this op.
    pub fn resulting(&self) -> Current {
        match self {
            Op::Put { record } | Op::Transition { record, .. } => {
                Current::Live(Arc::new(record.clone()))
            }
            Op::Delete { tombstone, .. } => Current::Deleted(*tombstone),
        }
    }

    /// MessagePack with field names: readable by `agentstate dump` and other languages.
    pub fn encode(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ops_round_trip_through_msgpack() {
        let now = Utc::now();
        let record = AgentRecord {
            state: PersistedState {
                agent_id: "a".into(),
                agent_type: None,
                state_name: "idle".into(),
                state_data: json!({"x": [1, 2]}),
                conversation_context: json!(null),
                created_at: now,
                updated_at: now,
                version: 2,
                metadata: Default::default(),
            },
            transition_seq: 1,
        };
        let ops = [
            Op::Put {
                record: record.clone(),
            },
            Op::Delete {
                agent_id: "a".into(),
                tombstone: Tombstone {
                    version: 3,
                    transition_seq: 1,
                },
                at: now,
            },
            Op::Transition {
                record,
                transition: StateTransition {
                    id: "t".into(),
                    seq: 1,
                    agent_id: "a".into(),
                    from_state: "idle".into(),
                    to_state: "busy".into(),
                    trigger: "go".into(),
                    timestamp: now,
                    success: true,
                    error: None,
                },
            },
        ];
        for op in ops {
            assert_eq!(Op::decode(&op.encode().unwrap()).unwrap(), op);
        }
    }
}
