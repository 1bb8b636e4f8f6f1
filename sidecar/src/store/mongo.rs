//! The MongoDB backend, on the official driver.
//!
//! Collections (database `--database`, default `agentstate`): `agent_states` (one document
//! per agent, `_id` = agent id) and `state_transitions` (one document per log entry,
//! unique on `agent_id, seq`). Documents are native BSON (dates as BSON dates, state data
//! as embedded documents) so operators can query and index them with mongosh.
//!
//! Flushes use the plain `delete`/`update`/`insert` commands with many statements each and
//! `ordered: false`: one round trip per kind per batch, and they work on any MongoDB
//! version. Writes use `w: "majority", j: true`, because the WAL is truncated once a flush
//! is acknowledged: an acknowledgement that a failover could roll back would lose data.
//!
//! Idempotence: a state is written with filter `{_id, version: {$lt: v}}` and upsert; when
//! the stored version is already `v` or newer the filter misses and the upsert collides
//! on `_id` (duplicate key, 11000), which here means "already there" and is not an error.

use std::time::Duration;

use agentstate_protocol::{PersistedState, StateTransition};
use mongodb::bson::{self, doc, Bson, Document};
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use tokio::sync::OnceCell;

use super::{StoreError, StoreResult};
use crate::backlog::FlushItem;
use crate::model::{AgentRecord, Current};

pub const AGENT_STATES: &str = "agent_states";
pub const STATE_TRANSITIONS: &str = "state_transitions";

const DUPLICATE_KEY: i32 = 11000;

pub struct MongoStore {
    db: Database,
    /// Indexes are created on the first successful contact, so a sidecar can start while
    /// MongoDB is down.
    schema: OnceCell<()>,
}

fn driver_err(e: mongodb::error::Error) -> StoreError {
    use mongodb::error::ErrorKind;
    match *e.kind {
        ErrorKind::Command(_) | ErrorKind::Write(_) | ErrorKind::InvalidArgument { .. } => {
            StoreError::Rejected(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn bson_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Rejected(format!("cannot convert to BSON: {e}"))
}

impl MongoStore {
    /// Connects lazily: this only parses the URI and sets timeouts.
    pub async fn connect(uri: &str, database: &str, timeout: Duration) -> anyhow::Result<Self> {
        let mut opts = ClientOptions::parse(uri).await?;
        opts.app_name
            .get_or_insert_with(|| "agentstate".to_string());
        opts.server_selection_timeout = Some(timeout);
        opts.connect_timeout = Some(timeout);
        let client = Client::with_options(opts)?;
        Ok(MongoStore {
            db: client.database(database),
            schema: OnceCell::new(),
        })
    }

    async fn ensure_schema(&self) -> StoreResult<()> {
        self.schema
            .get_or_try_init(|| async {
                self.db
                    .run_command(doc! {
                        "createIndexes": STATE_TRANSITIONS,
                        "indexes": [
                            { "key": { "agent_id": 1, "seq": 1 }, "name": "agent_seq", "unique": true },
                        ],
                    })
                    .await
                    .map_err(driver_err)?;
                Ok(())
            })
            .await
            .map(|_| ())
    }

    pub async fn load(&self, agent_id: &str) -> StoreResult<Option<AgentRecord>> {
        let states = self.db.collection::<Document>(AGENT_STATES);
        let Some(d) = states
            .find_one(doc! { "_id": agent_id })
            .await
            .map_err(driver_err)?
        else {
            return Ok(None);
        };
        let last = self
            .db
            .collection::<Document>(STATE_TRANSITIONS)
            .find_one(doc! { "agent_id": agent_id })
            .sort(doc! { "seq": -1 })
            .projection(doc! { "seq": 1 })
            .await
            .map_err(driver_err)?;
        let max_seq = last.map_or(Ok(0), |t| get_u64(&t, "seq"))?;
        let mut record = record_from_doc(agent_id, &d)?;
        record.transition_seq = record.transition_seq.max(max_seq);
        Ok(Some(record))
    }

    pub async fn flush(&self, items: &[FlushItem]) -> StoreResult<()> {
        self.ensure_schema().await?;
        let wc = doc! { "w": "majority", "j": true };

        let mut purge_states = Vec::new();
        let mut purge_log = Vec::new();
        let mut upserts = Vec::new();
        let mut inserts = Vec::new();
        for item in items {
            if let Some(t) = item.purge {
                purge_states.push(doc! {
                    "q": { "_id": &item.agent_id, "version": { "$lt": t.version as i64 } },
                    "limit": 1,
                });
                purge_log.push(doc! {
                    "q": { "agent_id": &item.agent_id, "seq": { "$lte": t.transition_seq as i64 } },
                    "limit": 0,
                });
            }
            if let Current::Live(rec) = &item.current {
                upserts.push(doc! {
                    "q": { "_id": &item.agent_id, "version": { "$lt": rec.state.version as i64 } },
                    "u": record_to_doc(rec)?,
                    "upsert": true,
                });
            }
            for t in &item.transitions {
                inserts.push(transition_to_doc(t));
            }
        }
        // Purges first: a delete followed by a re-creation in one batch must leave the
        // new incarnation.
        if !purge_states.is_empty() {
            self.write("delete", AGENT_STATES, "deletes", purge_states, &wc)
                .await?;
            self.write("delete", STATE_TRANSITIONS, "deletes", purge_log, &wc)
                .await?;
        }
        if !upserts.is_empty() {
            self.write("update", AGENT_STATES, "updates", upserts, &wc)
                .await?;
        }
        if !inserts.is_empty() {
            self.write("insert", STATE_TRANSITIONS, "documents", inserts, &wc)
                .await?;
        }
        Ok(())
    }

    /// Runs one multi-statement write command; duplicate keys count as success.
    async fn write(
        &self,
        command: &str,
        collection: &str,
        field: &str,
        statements: Vec<Document>,
        wc: &Document,
    ) -> StoreResult<()> {
        let mut cmd = Document::new();
        cmd.insert(command, collection);
        cmd.insert(field, statements);
        cmd.insert("ordered", false);
        cmd.insert("writeConcern", wc.clone());
        let reply = self.db.run_command(cmd).await.map_err(driver_err)?;
        if let Ok(errors) = reply.get_array("writeErrors") {
            for e in errors {
                let code = e.as_document().and_then(|d| d.get_i32("code").ok());
                if code != Some(DUPLICATE_KEY) {
                    return Err(StoreError::Rejected(format!(
                        "{command} on {collection}: {e}"
                    )));
                }
            }
        }
        if let Ok(wce) = reply.get_document("writeConcernError") {
            return Err(StoreError::Unavailable(format!(
                "{command} on {collection}: write concern not met: {wce}"
            )));
        }
        Ok(())
    }

    pub async fn transitions(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<StateTransition>> {
        let mut cursor = self
            .db
            .collection::<Document>(STATE_TRANSITIONS)
            .find(doc! { "agent_id": agent_id, "seq": { "$gt": after as i64 } })
            .sort(doc! { "seq": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(driver_err)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(driver_err)? {
            let d = cursor.deserialize_current().map_err(driver_err)?;
            out.push(transition_from_doc(&d)?);
        }
        Ok(out)
    }

    pub async fn ping(&self) -> StoreResult<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(driver_err)?;
        self.ensure_schema().await
    }
}

fn record_to_doc(rec: &AgentRecord) -> StoreResult<Document> {
    let s = &rec.state;
    Ok(doc! {
        "_id": &s.agent_id,
        "agent_id": &s.agent_id,
        "agent_type": s.agent_type.as_deref().map_or(Bson::Null, |t| Bson::String(t.to_string())),
        "state_name": &s.state_name,
        "state_data": bson::to_bson(&s.state_data).map_err(bson_err)?,
        "conversation_context": bson::to_bson(&s.conversation_context).map_err(bson_err)?,
        "created_at": bson_time(&s.created_at),
        "updated_at": bson_time(&s.updated_at),
        "version": s.version as i64,
        "metadata": bson::to_bson(&s.metadata).map_err(bson_err)?,
        "transition_seq": rec.transition_seq as i64,
    })
}

/// BSON dates have millisecond precision; the sidecar's timestamps are already truncated
/// to milliseconds, so nothing is lost.
fn bson_time(t: &chrono::DateTime<chrono::Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

fn transition_to_doc(t: &StateTransition) -> Document {
    doc! {
        "_id": &t.id,
        "agent_id": &t.agent_id,
        "seq": t.seq as i64,
        "from_state": &t.from_state,
        "to_state": &t.to_state,
        "trigger": &t.trigger,
        "timestamp": bson_time(&t.timestamp),
        "success": t.success,
        "error": t.error.as_deref().map_or(Bson::Null, |e| Bson::String(e.to_string())),
    }
}

fn bad_doc(field: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Rejected(format!("stored document has a bad `{field}`: {e}"))
}

fn get_u64(d: &Document, field: &str) -> StoreResult<u64> {
    let v = match d.get(field) {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Double(v)) if v.fract() == 0.0 => *v as i64,
        None => return Ok(0),
        Some(other) => return Err(bad_doc(field, format!("{other} is not an integer"))),
    };
    u64::try_from(v).map_err(|e| bad_doc(field, e))
}

fn get_str(d: &Document, field: &str) -> StoreResult<String> {
    d.get_str(field)
        .map(str::to_string)
        .map_err(|e| bad_doc(field, e))
}

fn get_time(d: &Document, field: &str) -> StoreResult<chrono::DateTime<chrono::Utc>> {
    let t = d.get_datetime(field).map_err(|e| bad_doc(field, e))?;
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis())
        .ok_or_else(|| bad_doc(field, "date out of range"))
}

fn get_json(d: &Document, field: &str) -> serde_json::Value {
    d.get(field)
        .cloned()
        .map_or(serde_json::Value::Null, Bson::into_relaxed_extjson)
}

fn record_from_doc(agent_id: &str, d: &Document) -> StoreResult<AgentRecord> {
    let metadata = match get_json(d, "metadata") {
        serde_json::Value::Object(m) => m,
        _ => Default::default(),
    };
    Ok(AgentRecord {
        state: PersistedState {
            agent_id: agent_id.to_string(),
            agent_type: d.get_str("agent_type").ok().map(str::to_string),
            state_name: get_str(d, "state_name")?,
            state_data: get_json(d, "state_data"),
            conversation_context: get_json(d, "conversation_context"),
            created_at: get_time(d, "created_at")?,
            updated_at: get_time(d, "updated_at")?,
            version: get_u64(d, "version")?,
            metadata,
        },
        transition_seq: get_u64(d, "transition_seq")?,
    })
}

fn transition_from_doc(d: &Document) -> StoreResult<StateTransition> {
    Ok(StateTransition {
        id: get_str(d, "_id")?,
        seq: get_u64(d, "seq")?,
        agent_id: get_str(d, "agent_id")?,
        from_state: get_str(d, "from_state")?,
        to_state: get_str(d, "to_state")?,
        trigger: get_str(d, "trigger")?,
        timestamp: get_time(d, "timestamp")?,
        success: d.get_bool("success").map_err(|e| bad_doc("success", e))?,
        error: d.get_str("error").ok().map(str::to_string),
    })
}
