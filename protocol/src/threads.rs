//! Bodies of the threads API: checkpoints shaped for framework checkpointers
//! (LangGraph's `BaseCheckpointSaver`), stored beside an agent's own state.
//!
//! A thread is an agent. Its checkpoints live in namespaces, are ordered by id and link
//! to their parents; their payloads are opaque bytes the framework serialised
//! ([`Typed`]), carried as bytes end to end and never decoded here. Channel values are
//! stored once per (namespace, channel, version) as [`ThreadBlob`]s, so a checkpoint
//! whose channels did not change costs no new blob. Metadata stays a JSON map, so it can
//! be filtered by key and value.
//!
//! Bytes travel as MessagePack `bin` and, in JSON, as base64 strings.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Opaque bytes: `bin` in MessagePack, a base64 string in JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Payload(pub Bytes);

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        if s.is_human_readable() {
            s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Payload;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes (MessagePack bin, or a base64 string in JSON)")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload(Bytes::copy_from_slice(v)))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(Bytes::from(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Payload, E> {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(v)
                    .map(|b| Payload(Bytes::from(b)))
                    .map_err(|e| E::custom(format!("invalid base64: {e}")))
            }
        }
        if d.is_human_readable() {
            d.deserialize_str(Visit)
        } else {
            d.deserialize_bytes(Visit)
        }
    }
}

/// A value as the framework serialised it: its type tag and bytes (LangGraph's
/// `serde.dumps_typed`). A blob of type `empty` stands for "no value".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Typed {
    #[serde(rename = "type")]
    pub type_: String,
    pub data: Payload,
}

impl Typed {
    pub fn len(&self) -> usize {
        self.type_.len() + self.data.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One channel's value at one version, stored once for the thread and namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadBlob {
    pub channel: String,
    /// The channel version as a string (the framework's version, `str()`-ed).
    pub version: String,
    pub value: Typed,
    /// A delta: the version of the same channel this value extends. `value` is then a
    /// MessagePack array of the items added after the base's, and the value it stands
    /// for is the base's array followed by them. Only in puts: every read answers whole
    /// values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
}

/// A write a task made against a checkpoint (LangGraph's pending writes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadWrite {
    pub task_id: String,
    #[serde(default)]
    pub task_path: String,
    /// Position within the task's writes. At or above 0 the first write of
    /// `(task_id, idx)` wins; below 0 (special channels) a later one replaces it.
    pub idx: i64,
    pub channel: String,
    pub value: Typed,
}

/// Body of `POST /v1/threads/{id}/checkpoints`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutThreadCheckpointRequest {
    #[serde(default)]
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    #[serde(default)]
    pub parent_checkpoint_id: Option<String>,
    /// The checkpoint without its channel values.
    pub checkpoint: Typed,
    #[serde(default, deserialize_with = "crate::strict::map")]
    pub metadata: Map<String, Value>,
    /// Every channel's version in this checkpoint: which blobs make up its values.
    #[serde(default)]
    pub channel_versions: BTreeMap<String, String>,
    /// Blobs of the channels that changed.
    #[serde(default)]
    pub blobs: Vec<ThreadBlob>,
}

/// Answer to a checkpoint put.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutThreadCheckpointResponse {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    /// The thread's (agent's) version after the put.
    pub version: u64,
}

/// One write of a `POST /v1/threads/{id}/writes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewThreadWrite {
    #[serde(deserialize_with = "crate::integral::deserialize")]
    pub idx: i64,
    pub channel: String,
    pub value: Typed,
}

/// Body of `POST /v1/threads/{id}/writes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutThreadWritesRequest {
    #[serde(default)]
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub task_id: String,
    #[serde(default)]
    pub task_path: String,
    pub writes: Vec<NewThreadWrite>,
}

/// A checkpoint with what makes it whole: its channel blobs and pending writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadCheckpointTuple {
    pub thread_id: String,
    pub checkpoint_ns: String,
    pub checkpoint_id: String,
    pub parent_checkpoint_id: Option<String>,
    pub checkpoint: Typed,
    pub metadata: Map<String, Value>,
    pub channel_versions: BTreeMap<String, String>,
    /// The stored blobs of `channel_versions`.
    pub blobs: Vec<ThreadBlob>,
    /// Sorted by `(task_path, task_id, idx)`: the order a run applies them in.
    pub writes: Vec<ThreadWrite>,
}

/// Body of `POST /v1/checkpoints/search`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchCheckpointsRequest {
    /// `None`: every thread.
    #[serde(default)]
    pub thread_id: Option<String>,
    /// `None`: every namespace.
    #[serde(default)]
    pub checkpoint_ns: Option<String>,
    #[serde(default)]
    pub checkpoint_id: Option<String>,
    /// Only checkpoints whose id sorts before this one.
    #[serde(default)]
    pub before: Option<String>,
    /// Metadata keys and the values they must have.
    #[serde(default)]
    pub filter: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "crate::integral::option")]
    pub limit: Option<u32>,
}

/// Answer to a search: newest (greatest id) first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThreadCheckpointsPage {
    pub checkpoints: Vec<ThreadCheckpointTuple>,
}

/// Body of `POST /v1/threads/{id}/copy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyThreadRequest {
    pub target_thread_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyThreadResponse {
    pub checkpoints_copied: u64,
}

/// How `POST /v1/checkpoints/prune` prunes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PruneStrategy {
    /// Keep the latest checkpoint of each namespace (with its writes and blobs).
    KeepLatest,
    /// Delete every checkpoint.
    Delete,
}

/// By name only: MessagePack could otherwise give a variant's index.
impl<'de> Deserialize<'de> for PruneStrategy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = crate::strict::variant_name(d, &["keep_latest", "delete"])?;
        Ok(if name == "delete" {
            PruneStrategy::Delete
        } else {
            PruneStrategy::KeepLatest
        })
    }
}

/// Body of `POST /v1/checkpoints/prune`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    pub thread_ids: Vec<String>,
    pub strategy: PruneStrategy,
}

/// Body of `POST /v1/checkpoints/delete_for_runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteForRunsRequest {
    pub run_ids: Vec<String>,
}

/// Answer to a prune or a delete for runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointsDeletedResponse {
    pub checkpoints_deleted: u64,
}

/// Body of `POST /v1/threads/{id}/delta_history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaHistoryRequest {
    #[serde(default)]
    pub checkpoint_ns: String,
    /// `None`: the latest checkpoint of the namespace.
    #[serde(default)]
    pub checkpoint_id: Option<String>,
    pub channels: Vec<String>,
}

/// What one channel contributed along a checkpoint's ancestors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelHistory {
    /// The channel's writes, oldest first.
    pub writes: Vec<ThreadWrite>,
    /// The value stored at the nearest ancestor that has one.
    pub seed: Option<Typed>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeltaHistoryResponse {
    pub channels: BTreeMap<String, ChannelHistory>,
}

/// Answer to `DELETE /v1/agents/{id}/messages/last`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "M: Deserialize<'de> + Default"))]
pub struct PopMessageResponse<M = crate::Metadata> {
    pub message: Option<crate::Message<M>>,
    pub version: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_bin_in_msgpack_and_base64_in_json() {
        let t = Typed {
            type_: "msgpack".into(),
            data: Payload(Bytes::from_static(b"\x00\xffhi")),
        };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"type":"msgpack","data":"AP9oaQ=="}"#);
        assert_eq!(serde_json::from_str::<Typed>(&json).unwrap(), t);
        let mp = rmp_serde::to_vec_named(&t).unwrap();
        // bin 8 marker, length 4.
        assert!(mp.windows(2).any(|w| w == [0xc4, 4]));
        assert_eq!(rmp_serde::from_slice::<Typed>(&mp).unwrap(), t);
        assert!(serde_json::from_str::<Typed>(r#"{"type":"x","data":"%%"}"#).is_err());
    }
}
