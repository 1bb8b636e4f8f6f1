//! The embedded store: SQLite (bundled) in the data dir, for a sidecar with no MongoDB.
//!
//! Tables mirror the MongoDB collections, with JSON text columns so `sqlite3` shows them
//! readably. `synchronous=FULL`: the WAL is truncated once this store acknowledges a
//! flush, so a flush acknowledged here must survive power loss.
//!
//! rusqlite is blocking; every call runs on the blocking pool, one at a time behind a
//! mutex (a single writer is what SQLite wants anyway).

use std::path::Path;
use std::sync::{Arc, Mutex};

use agentstate_protocol::{PersistedState, StateTransition};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::{StoreError, StoreResult};
use crate::backlog::FlushItem;
use crate::model::{AgentRecord, Current};

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agent_states (
    agent_id TEXT PRIMARY KEY,
    agent_type TEXT,
    state_name TEXT NOT NULL,
    state_data TEXT NOT NULL,
    conversation_context TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL,
    metadata TEXT NOT NULL,
    transition_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS state_transitions (
    agent_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    trigger TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    success INTEGER NOT NULL,
    error TEXT,
    PRIMARY KEY (agent_id, seq)
);
";

fn sql_err(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        e => StoreError::Rejected(e.to_string()),
    }
}

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_ts(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })
}

fn parse_json<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
    })
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with_conn<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard).map_err(sql_err)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("sqlite task failed: {e}")))?
    }

    pub async fn load(&self, agent_id: &str) -> StoreResult<Option<AgentRecord>> {
        let id = agent_id.to_string();
        self.with_conn(move |c| {
            let max_seq: u64 = c.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM state_transitions WHERE agent_id = ?1",
                [&id],
                |r| r.get(0),
            )?;
            c.query_row(
                "SELECT agent_type, state_name, state_data, conversation_context, created_at,
                        updated_at, version, metadata, transition_seq
                 FROM agent_states WHERE agent_id = ?1",
                [&id],
                |r| {
                    let seq: u64 = r.get(8)?;
                    Ok(AgentRecord {
                        state: PersistedState {
                            agent_id: id.clone(),
                            agent_type: r.get(0)?,
                            state_name: r.get(1)?,
                            state_data: parse_json(&r.get::<_, String>(2)?)?,
                            conversation_context: parse_json(&r.get::<_, String>(3)?)?,
                            created_at: parse_ts(&r.get::<_, String>(4)?)?,
                            updated_at: parse_ts(&r.get::<_, String>(5)?)?,
                            version: r.get(6)?,
                            metadata: parse_json(&r.get::<_, String>(7)?)?,
                        },
                        transition_seq: seq.max(max_seq),
                    })
                },
            )
            .optional()
        })
        .await
    }

    pub async fn flush(&self, items: &[FlushItem]) -> StoreResult<()> {
        let items = items.to_vec();
        self.with_conn(move |c| {
            let tx = c.transaction()?;
            for item in &items {
                if let Some(t) = item.purge {
                    tx.execute(
                        "DELETE FROM agent_states WHERE agent_id = ?1 AND version < ?2",
                        params![item.agent_id, t.version],
                    )?;
                    tx.execute(
                        "DELETE FROM state_transitions WHERE agent_id = ?1 AND seq <= ?2",
                        params![item.agent_id, t.transition_seq],
                    )?;
                }
                if let Current::Live(rec) = &item.current {
                    let s = &rec.state;
                    tx.execute(
                        "INSERT INTO agent_states (agent_id, agent_type, state_name, state_data,
                             conversation_context, created_at, updated_at, version, metadata,
                             transition_seq)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                         ON CONFLICT (agent_id) DO UPDATE SET
                             agent_type = excluded.agent_type, state_name = excluded.state_name,
                             state_data = excluded.state_data,
                             conversation_context = excluded.conversation_context,
                             created_at = excluded.created_at, updated_at = excluded.updated_at,
                             version = excluded.version, metadata = excluded.metadata,
                             transition_seq = excluded.transition_seq
                         WHERE excluded.version > agent_states.version",
                        params![
                            s.agent_id,
                            s.agent_type,
                            s.state_name,
                            s.state_data.to_string(),
                            s.conversation_context.to_string(),
                            ts(&s.created_at),
                            ts(&s.updated_at),
                            s.version,
                            serde_json::Value::Object(s.metadata.clone()).to_string(),
                            rec.transition_seq,
                        ],
                    )?;
                }
                for t in &item.transitions {
                    tx.execute(
                        "INSERT OR IGNORE INTO state_transitions
                             (agent_id, seq, id, from_state, to_state, trigger, timestamp, success, error)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        params![
                            t.agent_id,
                            t.seq,
                            t.id,
                            t.from_state,
                            t.to_state,
                            t.trigger,
                            ts(&t.timestamp),
                            t.success,
                            t.error,
                        ],
                    )?;
                }
            }
            tx.commit()
        })
        .await
    }

    pub async fn transitions(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<StateTransition>> {
        let id = agent_id.to_string();
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, id, from_state, to_state, trigger, timestamp, success, error
                 FROM state_transitions WHERE agent_id = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![id, after, limit], |r| {
                Ok(StateTransition {
                    agent_id: id.clone(),
                    seq: r.get(0)?,
                    id: r.get(1)?,
                    from_state: r.get(2)?,
                    to_state: r.get(3)?,
                    trigger: r.get(4)?,
                    timestamp: parse_ts(&r.get::<_, String>(5)?)?,
                    success: r.get(6)?,
                    error: r.get(7)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn ping(&self) -> StoreResult<()> {
        self.with_conn(|c| c.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }
}
