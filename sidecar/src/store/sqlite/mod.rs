//! The embedded store: SQLite (bundled) in the data dir, for a sidecar with no MongoDB.
//!
//! Tables mirror the MongoDB collections, with JSON text columns so `sqlite3` shows them
//! readably. `synchronous=FULL`: the WAL is truncated once this store acknowledges a
//! flush, so a flush acknowledged here must survive power loss. A whole flush batch is one
//! SQLite transaction, so transfers are atomic here without further ado.
//!
//! rusqlite is blocking; every call runs on the blocking pool, one at a time behind a
//! mutex (a single writer is what SQLite wants anyway).

use std::path::Path;
use std::sync::{Arc, Mutex};

use agentstate_protocol::{AgentSummary, AgentUsage, TableUsage, ThreadSummary};
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

mod listing;
mod threads;
mod usage;

use super::{cutoff, AgentFilter, BlobRange, Retained, StoreError, StoreResult, ThreadQuery};
use crate::backlog::{FlushBatch, FlushItem};
use crate::config::RetentionPolicy;
use crate::model::{
    AgentRecord, BlobKey, Checkpoint, CheckpointKey, Current, Effect, Message, Op, PersistedState,
    StateTransition, StoredBlob, StoredWrite, ThreadCheckpoint, Transfer,
};

pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// The database file, for readers of their own (usage scans every page: on the
    /// write path's connection it would hold flushes back).
    path: std::path::PathBuf,
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
    pending_transition TEXT,
    transition_seq INTEGER NOT NULL,
    message_seq INTEGER NOT NULL DEFAULT 0
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
    state_data TEXT,
    reason TEXT,
    PRIMARY KEY (agent_id, seq)
);
CREATE TABLE IF NOT EXISTS conversation_history (
    agent_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (agent_id, seq)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    checkpoint_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_agent ON checkpoints (agent_id, created_at);
CREATE TABLE IF NOT EXISTS transfers (
    transfer_id TEXT PRIMARY KEY,
    from_agent TEXT NOT NULL,
    to_agent TEXT NOT NULL,
    created_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_from ON transfers (from_agent, transfer_id);
CREATE INDEX IF NOT EXISTS transfers_to ON transfers (to_agent, transfer_id);
CREATE INDEX IF NOT EXISTS transitions_refused ON state_transitions (agent_id) WHERE success = 0;
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

pub(super) fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn conversion(e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

pub(super) fn parse_ts(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(conversion)
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(conversion)
}

pub(super) fn to_json<T: serde::Serialize>(v: &T) -> rusqlite::Result<String> {
    serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

impl SqliteStore {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(threads::SCHEMA)?;
        threads::migrate(&conn)?;
        // Every statement of the write path stays prepared.
        conn.set_prepared_statement_cache_capacity(64);
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            path: path.to_path_buf(),
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
            let max = |table: &str| -> rusqlite::Result<u64> {
                c.query_row(
                    &format!("SELECT COALESCE(MAX(seq), 0) FROM {table} WHERE agent_id = ?1"),
                    [&id],
                    |r| r.get(0),
                )
            };
            let (max_t, max_m) = (max("state_transitions")?, max("conversation_history")?);
            c.query_row(
                "SELECT agent_type, state_name, state_data, conversation_context, created_at,
                        updated_at, version, metadata, pending_transition, transition_seq,
                        message_seq
                 FROM agent_states WHERE agent_id = ?1",
                [&id],
                |r| {
                    let pending: Option<String> = r.get(8)?;
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
                            pending_transition: pending.as_deref().map(parse_json).transpose()?,
                        },
                        transition_seq: r.get::<_, u64>(9)?.max(max_t),
                        message_seq: r.get::<_, u64>(10)?.max(max_m),
                        lease_epoch: 0,
                        encoded: Default::default(),
                    })
                },
            )
            .optional()
        })
        .await
    }

    /// Writes the whole batch in one transaction: all of it, or (with the error) none.
    pub async fn flush(&self, batch: FlushBatch) -> (FlushBatch, Vec<String>, Option<StoreError>) {
        let written = batch.clone();
        let result = self
            .with_conn(move |c| {
                let tx = c.transaction()?;
                for t in &batch.transfers {
                    write_transfer(&tx, &t.op)?;
                }
                for item in &batch.items {
                    write_item(&tx, item)?;
                }
                tx.commit()
            })
            .await;
        // One process per data dir: no other writer to be fenced off from.
        match result {
            Ok(()) => (written, Vec::new(), None),
            Err(e) => (FlushBatch::default(), Vec::new(), Some(e)),
        }
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
                "SELECT seq, id, from_state, to_state, trigger, timestamp, success, error, state_data,
                        reason
                 FROM state_transitions WHERE agent_id = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![id, after, limit], |r| {
                let data: Option<String> = r.get(8)?;
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
                    state_data: data.as_deref().map(parse_json).transpose()?,
                    reason: r.get(9)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn messages(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        let id = agent_id.to_string();
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, role, content, timestamp, metadata FROM conversation_history
                 WHERE agent_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![id, after, limit], message_row)?;
            rows.collect()
        })
        .await
    }

    pub async fn last_messages(
        &self,
        agent_id: &str,
        before: u64,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        let id = agent_id.to_string();
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, role, content, timestamp, metadata FROM conversation_history
                 WHERE agent_id = ?1 AND seq <= ?2 ORDER BY seq DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![id, before, limit], message_row)?;
            let mut out = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            out.reverse();
            Ok(out)
        })
        .await
    }

    pub async fn checkpoints(&self, agent_id: &str) -> StoreResult<Vec<Checkpoint>> {
        let id = agent_id.to_string();
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT body FROM checkpoints WHERE agent_id = ?1 ORDER BY created_at, rowid",
            )?;
            let rows = stmt.query_map([id], |r| parse_json(&r.get::<_, String>(0)?))?;
            rows.collect()
        })
        .await
    }

    pub async fn transfer(&self, transfer_id: &str) -> StoreResult<Option<Transfer>> {
        let id = transfer_id.to_string();
        self.with_conn(move |c| {
            c.query_row(
                "SELECT body FROM transfers WHERE transfer_id = ?1",
                [id],
                |r| parse_json(&r.get::<_, String>(0)?),
            )
            .optional()
        })
        .await
    }

    pub async fn agent_ids(&self, after: &str, limit: u32) -> StoreResult<Vec<String>> {
        let after = after.to_string();
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT agent_id FROM agent_states WHERE agent_id > ?1 ORDER BY agent_id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    pub async fn transfers(&self, after: &str, limit: u32) -> StoreResult<Vec<Transfer>> {
        let after = after.to_string();
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT body FROM transfers WHERE transfer_id > ?1 ORDER BY transfer_id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |r| {
                parse_json(&r.get::<_, String>(0)?)
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn retain(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
    ) -> StoreResult<Retained> {
        let policy = policy.clone();
        self.with_conn(move |c| {
            let tx = c.transaction()?;
            let mut out = Retained::default();
            // (table, time column, order column within an agent, max age, max count, counter)
            let rules = [
                ("state_transitions", "timestamp", "seq", policy.transitions_max_age_days, policy.transitions_max_count, &mut out.transitions),
                ("conversation_history", "timestamp", "seq", policy.messages_max_age_days, policy.messages_max_count, &mut out.messages),
                ("checkpoints", "created_at", "created_at", policy.checkpoints_max_age_days, policy.checkpoints_max_count, &mut out.checkpoints),
            ];
            for (table, time, order, max_age, max_count, deleted) in rules {
                if let Some(days) = max_age {
                    *deleted += tx.execute(
                        &format!("DELETE FROM {table} WHERE {time} < ?1"),
                        [ts(&cutoff(now, days))],
                    )? as u64;
                }
                if let Some(n) = max_count {
                    *deleted += tx.execute(
                        &format!(
                            "DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM (
                                 SELECT rowid, ROW_NUMBER() OVER (PARTITION BY agent_id ORDER BY {order} DESC) AS rn
                                 FROM {table}) WHERE rn > ?1)"
                        ),
                        [n],
                    )? as u64;
                }
            }
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    pub async fn thread_retention_candidates(
        &self,
        max_count: Option<u64>,
        cutoff: Option<DateTime<Utc>>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        self.with_conn(move |c| threads::retention_candidates(c, max_count, cutoff, limit))
            .await
    }

    /// Thread checkpoints matching `q` (but its metadata filter), greatest id first.
    pub async fn thread_checkpoints(&self, q: ThreadQuery) -> StoreResult<Vec<ThreadCheckpoint>> {
        self.with_conn(move |c| threads::checkpoints(c, &q)).await
    }

    pub async fn thread_blobs(
        &self,
        thread: &str,
        keys: Vec<BlobKey>,
    ) -> StoreResult<Vec<StoredBlob>> {
        let thread = thread.to_string();
        self.with_conn(move |c| threads::blobs(c, &thread, &keys))
            .await
    }

    pub async fn agent_summaries(
        &self,
        filter: AgentFilter,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<AgentSummary>> {
        let after = after.to_string();
        self.with_conn(move |c| listing::agents(c, &filter, &after, limit))
            .await
    }

    pub async fn with_failures(&self, ids: Vec<String>) -> StoreResult<Vec<String>> {
        self.with_conn(move |c| listing::with_failures(c, &ids))
            .await
    }

    pub async fn thread_summaries(
        &self,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<ThreadSummary>> {
        let (prefix, after) = (prefix.to_string(), after.to_string());
        self.with_conn(move |c| listing::threads(c, &prefix, &after, limit))
            .await
    }

    pub async fn transfers_of(
        &self,
        agent: &str,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<Transfer>> {
        let (agent, after) = (agent.to_string(), after.to_string());
        self.with_conn(move |c| listing::transfers_of(c, &agent, &after, limit))
            .await
    }

    pub async fn usage(&self) -> StoreResult<Vec<TableUsage>> {
        self.with_reader(usage::tables).await
    }

    pub async fn largest_agents(&self, top: u32) -> StoreResult<Vec<AgentUsage>> {
        self.with_reader(move |c| usage::largest(c, top)).await
    }

    /// Runs `f` on a read-only connection of its own (WAL mode: it never blocks the
    /// writer, nor the writer it).
    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> StoreResult<T> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let c = Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            f(&c)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("usage reader failed: {e}")))?
        .map_err(sql_err)
    }

    pub async fn thread_blob_range(
        &self,
        thread: &str,
        range: BlobRange,
    ) -> StoreResult<Vec<StoredBlob>> {
        let thread = thread.to_string();
        self.with_conn(move |c| threads::blob_range(c, &thread, &range))
            .await
    }

    pub async fn thread_writes(
        &self,
        thread: &str,
        keys: Vec<CheckpointKey>,
    ) -> StoreResult<Vec<StoredWrite>> {
        let thread = thread.to_string();
        self.with_conn(move |c| threads::writes(c, &thread, &keys))
            .await
    }

    pub async fn thread_write_ids_after(
        &self,
        thread: &str,
        ns: &str,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let (thread, ns, after) = (thread.to_string(), ns.to_string(), after.to_string());
        self.with_conn(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT checkpoint_id FROM thread_writes
                 WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND checkpoint_id > ?3 LIMIT ?4",
            )?;
            let rows = stmt.query_map(params![thread, ns, after, limit], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }

    pub async fn ping(&self) -> StoreResult<()> {
        self.with_conn(|c| c.query_row("SELECT 1", [], |_| Ok(())))
            .await
    }
}

fn message_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        seq: r.get(0)?,
        role: r.get(1)?,
        content: r.get(2)?,
        timestamp: parse_ts(&r.get::<_, String>(3)?)?,
        metadata: parse_json(&r.get::<_, String>(4)?)?,
    })
}

/// Every part of a transfer (inside the batch's transaction).
fn write_transfer(tx: &Transaction<'_>, op: &Op) -> rusqlite::Result<()> {
    let Op::Transfer { transfer, .. } = op else {
        return Ok(());
    };
    let mut result = Ok(());
    op.for_each_effect(&mut |e| {
        if result.is_err() {
            return;
        }
        result = match e {
            Effect::Record(r) => upsert_record(tx, r),
            Effect::Transition(t) => insert_transition(tx, t),
            Effect::Message(agent, m) => insert_message(tx, agent, m),
            Effect::Delete(..)
            | Effect::Checkpoint(_)
            | Effect::Thread(..)
            | Effect::DropMessages(..) => Ok(()),
        };
    });
    result?;
    tx.prepare_cached(
        "INSERT OR IGNORE INTO transfers (transfer_id, from_agent, to_agent, created_at, body)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        transfer.transfer_id,
        transfer.from_agent,
        transfer.to_agent,
        ts(&transfer.created_at),
        to_json(transfer)?,
    ])?;
    Ok(())
}

fn write_item(tx: &Transaction<'_>, item: &FlushItem) -> rusqlite::Result<()> {
    if let Some(t) = item.purge {
        tx.prepare_cached("DELETE FROM agent_states WHERE agent_id = ?1 AND version < ?2")?
            .execute(params![item.agent_id, t.version])?;
        tx.prepare_cached("DELETE FROM state_transitions WHERE agent_id = ?1 AND seq <= ?2")?
            .execute(params![item.agent_id, t.transition_seq])?;
        tx.prepare_cached("DELETE FROM conversation_history WHERE agent_id = ?1 AND seq <= ?2")?
            .execute(params![item.agent_id, t.message_seq])?;
        tx.prepare_cached("DELETE FROM checkpoints WHERE agent_id = ?1 AND version < ?2")?
            .execute(params![item.agent_id, t.version])?;
        threads::purge(tx, &item.agent_id, t.version)?;
    }
    for (_, from, to) in &item.message_drops {
        tx.prepare_cached(
            "DELETE FROM conversation_history WHERE agent_id = ?1 AND seq >= ?2 AND seq <= ?3",
        )?
        .execute(params![item.agent_id, from, to])?;
    }
    threads::write(tx, &item.agent_id, &item.threads)?;
    if let Some(Current::Live(rec)) = &item.current {
        upsert_record(tx, rec)?;
    }
    for t in &item.transitions {
        insert_transition(tx, t)?;
    }
    for m in &item.messages {
        insert_message(tx, &item.agent_id, m)?;
    }
    for c in &item.checkpoints {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO checkpoints (checkpoint_id, agent_id, version, created_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![
            c.checkpoint_id,
            c.agent_id,
            c.version,
            ts(&c.created_at),
            to_json(c)?
        ])?;
    }
    Ok(())
}

/// Writes the record unless the stored one is as new or newer.
fn upsert_record(tx: &Transaction<'_>, rec: &AgentRecord) -> rusqlite::Result<()> {
    let s = &rec.state;
    let pending = s.pending_transition.as_ref().map(to_json).transpose()?;
    tx.prepare_cached(
        "INSERT INTO agent_states (agent_id, agent_type, state_name, state_data,
             conversation_context, created_at, updated_at, version, metadata,
             pending_transition, transition_seq, message_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (agent_id) DO UPDATE SET
             agent_type = excluded.agent_type, state_name = excluded.state_name,
             state_data = excluded.state_data,
             conversation_context = excluded.conversation_context,
             created_at = excluded.created_at, updated_at = excluded.updated_at,
             version = excluded.version, metadata = excluded.metadata,
             pending_transition = excluded.pending_transition,
             transition_seq = excluded.transition_seq, message_seq = excluded.message_seq
         WHERE excluded.version > agent_states.version",
    )?
    .execute(params![
        s.agent_id,
        s.agent_type,
        s.state_name,
        to_json(&s.state_data)?,
        to_json(&s.conversation_context)?,
        ts(&s.created_at),
        ts(&s.updated_at),
        s.version,
        to_json(&s.metadata)?,
        pending,
        rec.transition_seq,
        rec.message_seq,
    ])?;
    Ok(())
}

fn insert_transition(tx: &Transaction<'_>, t: &StateTransition) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO state_transitions
             (agent_id, seq, id, from_state, to_state, trigger, timestamp, success, error, state_data,
              reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
            t.agent_id,
            t.seq,
            t.id,
            t.from_state,
            t.to_state,
            t.trigger,
            ts(&t.timestamp),
            t.success,
            t.error,
            t.state_data.as_ref().map(to_json).transpose()?,
            t.reason,
        ],
    )?;
    Ok(())
}

fn insert_message(tx: &Transaction<'_>, agent_id: &str, m: &Message) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO conversation_history (agent_id, seq, role, content, timestamp, metadata)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
            agent_id,
            m.seq,
            m.role,
            m.content,
            ts(&m.timestamp),
            to_json(&m.metadata)?,
        ],
    )?;
    Ok(())
}
