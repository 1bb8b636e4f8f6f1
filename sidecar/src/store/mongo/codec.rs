//! Records, log entries, messages, checkpoints and transfers as BSON documents, and back.

use mongodb::bson::{self, doc, Bson, Document};
use mongodb::options::{Acknowledgment, WriteConcern};

use super::{bson_err, StoreError, StoreResult};
use crate::model::{
    AgentRecord, Checkpoint, Doc, DocMap, Message, PendingTransition, PersistedState,
    StateTransition, Transfer,
};

/// An upsert that inserts `d` if no document has its `_id`, and otherwise does nothing.
pub(super) fn set_on_insert(d: &Document) -> Document {
    let mut fields = d.clone();
    let id = fields.remove("_id").unwrap_or(Bson::Null);
    doc! { "q": { "_id": id }, "u": { "$setOnInsert": fields }, "upsert": true }
}

pub(super) fn majority() -> WriteConcern {
    WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build()
}

/// BSON dates have millisecond precision; the sidecar's timestamps are already truncated
/// to milliseconds, so nothing is lost.
pub(super) fn bson_time(t: &chrono::DateTime<chrono::Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

pub(super) fn to_bson(v: &(impl serde::Serialize + ?Sized)) -> StoreResult<Bson> {
    bson::to_bson(v).map_err(bson_err)
}

pub(super) fn opt_str(s: Option<&str>) -> Bson {
    s.map_or(Bson::Null, |s| Bson::String(s.to_string()))
}

pub(super) fn state_to_doc(s: &PersistedState) -> StoreResult<Document> {
    let pending = match &s.pending_transition {
        None => Bson::Null,
        Some(p) => Bson::Document(doc! {
            "id": &p.id,
            "from_state": &p.from_state,
            "to_state": &p.to_state,
            "trigger": &p.trigger,
            "started_at": bson_time(&p.started_at),
            "state_data": p.state_data.as_ref().map_or(Ok(Bson::Null), to_bson)?,
        }),
    };
    Ok(doc! {
        "agent_id": &s.agent_id,
        "agent_type": opt_str(s.agent_type.as_deref()),
        "state_name": &s.state_name,
        "state_data": to_bson(&s.state_data)?,
        "conversation_context": to_bson(&s.conversation_context)?,
        "created_at": bson_time(&s.created_at),
        "updated_at": bson_time(&s.updated_at),
        "version": s.version as i64,
        "metadata": bson::to_bson(&s.metadata).map_err(bson_err)?,
        "pending_transition": pending,
    })
}

pub(super) fn record_to_doc(rec: &AgentRecord) -> StoreResult<Document> {
    let mut d = doc! { "_id": &rec.state.agent_id };
    d.extend(state_to_doc(&rec.state)?);
    d.insert("transition_seq", rec.transition_seq as i64);
    d.insert("message_seq", rec.message_seq as i64);
    d.insert("lease_epoch", rec.lease_epoch as i64);
    Ok(d)
}

pub(super) fn transition_to_doc(t: &StateTransition) -> StoreResult<Document> {
    Ok(doc! {
        "_id": &t.id,
        "agent_id": &t.agent_id,
        "seq": t.seq as i64,
        "from_state": &t.from_state,
        "to_state": &t.to_state,
        "trigger": &t.trigger,
        "timestamp": bson_time(&t.timestamp),
        "success": t.success,
        "error": opt_str(t.error.as_deref()),
        "state_data": t.state_data.as_ref().map_or(Ok(Bson::Null), to_bson)?,
        "reason": opt_str(t.reason.as_deref()),
    })
}

pub(super) fn message_to_doc(agent_id: &str, m: &Message) -> StoreResult<Document> {
    Ok(doc! {
        "_id": format!("{agent_id}:{}", m.seq),
        "agent_id": agent_id,
        "seq": m.seq as i64,
        "role": &m.role,
        "content": &m.content,
        "timestamp": bson_time(&m.timestamp),
        "metadata": bson::to_bson(&m.metadata).map_err(bson_err)?,
    })
}

pub(super) fn checkpoint_to_doc(c: &Checkpoint) -> StoreResult<Document> {
    Ok(doc! {
        "_id": &c.checkpoint_id,
        "agent_id": &c.agent_id,
        "version": c.version as i64,
        "state": state_to_doc(&c.state)?,
        "transition_seq": c.transition_seq as i64,
        "message_seq": c.message_seq as i64,
        "created_at": bson_time(&c.created_at),
        "label": opt_str(c.label.as_deref()),
    })
}

pub(super) fn transfer_to_doc(t: &Transfer) -> StoreResult<Document> {
    Ok(doc! {
        "_id": &t.transfer_id,
        "from_agent": &t.from_agent,
        "to_agent": &t.to_agent,
        "trigger": &t.trigger,
        "to_trigger": opt_str(t.to_trigger.as_deref()),
        "context": to_bson(&t.context)?,
        "messages_copied": t.messages_copied as i64,
        "from_version": t.from_version as i64,
        "to_version": t.to_version as i64,
        "created_at": bson_time(&t.created_at),
    })
}

pub(super) fn bad_doc(field: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Rejected(format!("stored document has a bad `{field}`: {e}"))
}

pub(super) fn get_u64(d: &Document, field: &str) -> StoreResult<u64> {
    let v = match d.get(field) {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Double(v)) if v.fract() == 0.0 => *v as i64,
        None | Some(Bson::Null) => return Ok(0),
        Some(other) => return Err(bad_doc(field, format!("{other} is not an integer"))),
    };
    u64::try_from(v).map_err(|e| bad_doc(field, e))
}

pub(super) fn get_str(d: &Document, field: &str) -> StoreResult<String> {
    d.get_str(field)
        .map(str::to_string)
        .map_err(|e| bad_doc(field, e))
}

pub(super) fn get_opt_str(d: &Document, field: &str) -> Option<String> {
    d.get_str(field).ok().map(str::to_string)
}

pub(super) fn get_time(d: &Document, field: &str) -> StoreResult<chrono::DateTime<chrono::Utc>> {
    let t = d.get_datetime(field).map_err(|e| bad_doc(field, e))?;
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis())
        .ok_or_else(|| bad_doc(field, "date out of range"))
}

pub(super) fn get_json(d: &Document, field: &str) -> serde_json::Value {
    d.get(field)
        .cloned()
        .map_or(serde_json::Value::Null, Bson::into_relaxed_extjson)
}

pub(super) fn get_map(d: &Document, field: &str) -> serde_json::Map<String, serde_json::Value> {
    match get_json(d, field) {
        serde_json::Value::Object(m) => m,
        _ => Default::default(),
    }
}

/// A document field as bytes; absent or `null` is `None`.
pub(super) fn get_opt_doc(d: &Document, field: &str) -> StoreResult<Option<Doc>> {
    match d.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(b) => bson::from_bson(b.clone())
            .map(Some)
            .map_err(|e| bad_doc(field, e)),
    }
}

pub(super) fn get_doc(d: &Document, field: &str) -> StoreResult<Doc> {
    Ok(get_opt_doc(d, field)?.unwrap_or_default())
}

pub(super) fn get_doc_map(d: &Document, field: &str) -> StoreResult<DocMap> {
    match d.get(field) {
        None | Some(Bson::Null) => Ok(DocMap::default()),
        Some(b) => bson::from_bson(b.clone()).map_err(|e| bad_doc(field, e)),
    }
}

pub(super) fn state_from_doc(agent_id: &str, d: &Document) -> StoreResult<PersistedState> {
    let pending_transition = match d.get_document("pending_transition") {
        Ok(p) => Some(PendingTransition {
            id: get_str(p, "id")?,
            from_state: get_str(p, "from_state")?,
            to_state: get_str(p, "to_state")?,
            trigger: get_str(p, "trigger")?,
            started_at: get_time(p, "started_at")?,
            state_data: get_opt_doc(p, "state_data")?,
        }),
        Err(_) => None,
    };
    Ok(PersistedState {
        agent_id: agent_id.to_string(),
        agent_type: get_opt_str(d, "agent_type"),
        state_name: get_str(d, "state_name")?,
        state_data: get_doc(d, "state_data")?,
        conversation_context: get_doc(d, "conversation_context")?,
        created_at: get_time(d, "created_at")?,
        updated_at: get_time(d, "updated_at")?,
        version: get_u64(d, "version")?,
        metadata: get_doc_map(d, "metadata")?,
        pending_transition,
    })
}

pub(super) fn record_from_doc(agent_id: &str, d: &Document) -> StoreResult<AgentRecord> {
    Ok(AgentRecord {
        state: state_from_doc(agent_id, d)?,
        transition_seq: get_u64(d, "transition_seq")?,
        message_seq: get_u64(d, "message_seq")?,
        lease_epoch: get_u64(d, "lease_epoch")?,
        encoded: Default::default(),
    })
}

pub(super) fn transition_from_doc(d: &Document) -> StoreResult<StateTransition> {
    Ok(StateTransition {
        id: get_str(d, "_id")?,
        seq: get_u64(d, "seq")?,
        agent_id: get_str(d, "agent_id")?,
        from_state: get_str(d, "from_state")?,
        to_state: get_str(d, "to_state")?,
        trigger: get_str(d, "trigger")?,
        timestamp: get_time(d, "timestamp")?,
        success: d.get_bool("success").map_err(|e| bad_doc("success", e))?,
        error: get_opt_str(d, "error"),
        state_data: get_opt_doc(d, "state_data")?,
        reason: get_opt_str(d, "reason"),
    })
}

pub(super) fn message_from_doc(d: &Document) -> StoreResult<Message> {
    Ok(Message {
        seq: get_u64(d, "seq")?,
        role: get_str(d, "role")?,
        content: get_str(d, "content")?,
        timestamp: get_time(d, "timestamp")?,
        metadata: get_doc_map(d, "metadata")?,
    })
}

pub(super) fn checkpoint_from_doc(d: &Document) -> StoreResult<Checkpoint> {
    let agent_id = get_str(d, "agent_id")?;
    let state = d.get_document("state").map_err(|e| bad_doc("state", e))?;
    Ok(Checkpoint {
        checkpoint_id: get_str(d, "_id")?,
        version: get_u64(d, "version")?,
        state: state_from_doc(&agent_id, state)?,
        agent_id,
        transition_seq: get_u64(d, "transition_seq")?,
        message_seq: get_u64(d, "message_seq")?,
        created_at: get_time(d, "created_at")?,
        label: get_opt_str(d, "label"),
    })
}

pub(super) fn transfer_from_doc(d: &Document) -> StoreResult<Transfer> {
    Ok(Transfer {
        transfer_id: get_str(d, "_id")?,
        from_agent: get_str(d, "from_agent")?,
        to_agent: get_str(d, "to_agent")?,
        trigger: get_str(d, "trigger")?,
        to_trigger: get_opt_str(d, "to_trigger"),
        context: get_doc(d, "context")?,
        messages_copied: get_u64(d, "messages_copied")?,
        from_version: get_u64(d, "from_version")?,
        to_version: get_u64(d, "to_version")?,
        created_at: get_time(d, "created_at")?,
    })
}
