//! Bodies of the listing and inspection routes the web inspector reads (`GET
//! /v1/agents`, `/v1/threads`, `/v1/transfers`, an agent's timeline, a thread's history
//! and decoded view) and of its writes under `/v1/inspector`, which the sidecar answers
//! only when started with `--ui-writes`.
//!
//! Lists are paged by a cursor: pass a page's `next_cursor` back as `cursor=`; it is
//! absent on the last page. A cursor is opaque to clients.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Checkpoint, Message, Metadata, StateTransition, Transfer};

/// One row of `GET /v1/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSummary {
    pub agent_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_type: Option<String>,
    pub state_name: String,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A multi-step transition is begun and neither completed nor aborted.
    pub pending: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentsPage {
    pub agents: Vec<AgentSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One row of `GET /v1/threads`: a thread with framework checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadSummary {
    pub thread_id: String,
    /// Checkpoints of every namespace.
    pub checkpoints: u64,
    /// The greatest checkpoint id (the latest, for LangGraph's time-ordered ids).
    pub latest_checkpoint_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadsPage {
    pub threads: Vec<ThreadSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /v1/transfers`, in order of transfer id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default"))]
pub struct TransfersPage<D = Value> {
    pub transfers: Vec<Transfer<D>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What a timeline entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    /// A logged transition: made, refused (`success: false`), aborted, or a rollback or
    /// replay (triggers `rollback`, `replay`).
    Transition,
    Message,
    Checkpoint,
    /// A transfer from or to the agent.
    Transfer,
}

/// One thing that happened to an agent; exactly the field named by `kind` is present.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default, M: Deserialize<'de> + Default"))]
pub struct TimelineEntry<D = Value, M = Metadata> {
    pub kind: TimelineKind,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition: Option<StateTransition<D>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message<M>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint<D, M>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer<D>>,
}

/// `GET /v1/agents/{id}/timeline`: oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de> + Default, M: Deserialize<'de> + Default"))]
pub struct TimelinePage<D = Value, M = Metadata> {
    pub entries: Vec<TimelineEntry<D, M>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// One checkpoint of `GET /v1/threads/{id}/history`, without its values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadCheckpointSummary {
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    #[serde(default)]
    pub parent_checkpoint_id: Option<String>,
    pub metadata: Map<String, Value>,
}

/// `GET /v1/threads/{id}/history`: greatest checkpoint id first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadHistoryPage {
    pub checkpoints: Vec<ThreadCheckpointSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A serialized value as the inspector shows it: decoded where the sidecar knows the
/// serializer (`json`, LangGraph's `msgpack`, `null`), else its size and first bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderedValue {
    /// The serializer's type tag.
    #[serde(rename = "type")]
    pub type_: String,
    pub decoded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    pub bytes: u64,
    /// The first bytes, in hex, when not decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelView {
    pub version: String,
    pub value: RenderedValue,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteView {
    pub task_id: String,
    pub task_path: String,
    pub idx: i64,
    pub channel: String,
    pub value: RenderedValue,
}

/// `GET /v1/threads/{id}/view`: one checkpoint, its channel values and pending writes
/// decoded for reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadView {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    #[serde(default)]
    pub parent_checkpoint_id: Option<String>,
    pub metadata: Map<String, Value>,
    pub checkpoint: RenderedValue,
    pub channels: BTreeMap<String, ChannelView>,
    pub writes: Vec<WriteView>,
}

/// `GET /v1/inspector`: what the inspector may do here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InspectorInfo {
    /// Rollback, abort and fork are allowed (`--ui-writes`).
    pub ui_writes: bool,
    pub version: String,
}

/// Body of `POST /v1/inspector/agents/{id}/rollback`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectorRollbackRequest {
    pub checkpoint_id: String,
    /// Why, as the operator typed it; kept in the transition log.
    pub reason: String,
}

/// Body of `POST /v1/inspector/agents/{id}/transitions/{tid}/abort`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectorAbortRequest {
    pub reason: String,
}

/// Body of `POST /v1/inspector/threads/{id}/fork`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectorForkRequest {
    #[serde(default)]
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub reason: String,
}
