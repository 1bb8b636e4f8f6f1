//! The MongoDB backend, on the official driver.
//!
//! Collections (database `--database`, default `agentstate`):
//! - `agent_states`: one document per agent, `_id` = agent id;
//! - `state_transitions`: one per log entry, unique on `agent_id, seq`;
//! - `conversation_history`: one per message (`_id` = `<agent>:<seq>`, unique on
//!   `agent_id, seq`): a conversation never grows a document, so no 16 MB limit, and an
//!   append writes only its own messages;
//! - `checkpoints` (`_id` = checkpoint id) and `transfers` (`_id` = transfer id).
//!
//! Documents are native BSON (dates as BSON dates, data as embedded documents) so
//! operators can query and index them with mongosh.
//!
//! A flush is one multi-document transaction of a few multi-statement commands (one round
//! trip per kind per batch), and each transfer one of its own. Its last statement marks
//! the lease document of every agent it writes, matching this sidecar's `{owner, epoch}`:
//! a flush that outlasts its lease writes nothing, and a take-over waits for a flush
//! already committing. Transactions commit with `w: "majority", j: true`, because the
//! WAL is truncated once a flush is acknowledged: an acknowledgement that a failover
//! could roll back would lose data. Transactions need a replica set (a single-node one
//! will do). A transaction aborted on a write conflict (another sidecar's flush, a lease
//! renewal) runs again at once, a few times, before the flusher's backoff takes over.
//!
//! Idempotence: a duplicate key would abort a transaction, so nothing written may
//! collide. The stored `(lease epoch, version)` of each record is read first and only
//! older ones are replaced; log entries, messages and checkpoints are `$setOnInsert`
//! upserts on their `_id`, which do nothing when the document is already there. A
//! re-flush after a crash is then a no-op.
//!
//! By concern: this file holds the connection, the schema and the reads; `flush` the
//! write path and its fencing by lease epoch; `leases` the ownership leases; `retention`,
//! `usage` and `listing` what their names say; `threads` the framework checkpoints;
//! `codec` the documents.

use std::path::PathBuf;
use std::time::Duration;

use mongodb::bson::{doc, Bson, Document};
use mongodb::options::ClientOptions;
use mongodb::{Client, ClientSession, Database};
use tokio::sync::OnceCell;

mod codec;
mod flush;
mod leases;
mod listing;
mod retention;
mod threads;
mod usage;

use codec::{
    checkpoint_from_doc, get_str, get_u64, message_from_doc, record_from_doc, transfer_from_doc,
    transition_from_doc,
};
pub use leases::Lease;

use super::{BlobRange, StoreError, StoreResult, ThreadQuery};
use crate::model::{
    AgentRecord, BlobKey, Checkpoint, CheckpointKey, Message, StateTransition, StoredBlob,
    StoredWrite, ThreadCheckpoint, Transfer,
};
pub use threads::{THREAD_BLOBS, THREAD_CHECKPOINTS, THREAD_WRITES};

pub const AGENT_STATES: &str = "agent_states";
pub const STATE_TRANSITIONS: &str = "state_transitions";
pub const CONVERSATION_HISTORY: &str = "conversation_history";
pub const CHECKPOINTS: &str = "checkpoints";
pub const TRANSFERS: &str = "transfers";
pub const AGENT_LEASES: &str = "agent_leases";
/// Records a fenced sidecar could not write: kept, never silently dropped.
pub const AGENT_STATE_CONFLICTS: &str = "agent_state_conflicts";

/// MongoDB's code for a duplicate key.
const DUPLICATE_KEY: i32 = 11000;

pub struct MongoStore {
    client: Client,
    db: Database,
    /// Indexes are created on the first successful contact, so a sidecar can start while
    /// MongoDB is down.
    schema: OnceCell<()>,
    /// The one session transfers' transactions run in. Its id is kept in
    /// `session_file`, so that after a crash the next run can end the transaction the
    /// dead one left open (MongoDB would otherwise hold its documents, and refuse their
    /// re-flush with WriteConflict, for up to its transaction lifetime limit, 60 s).
    txn_session: tokio::sync::Mutex<Option<ClientSession>>,
    /// `None` for admin commands beside a running sidecar: they must not end its session.
    session_file: Option<PathBuf>,
}

fn driver_err(e: mongodb::error::Error) -> StoreError {
    use mongodb::error::ErrorKind;
    if e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR) {
        // The server answered (a WriteConflict, a transaction it no longer knows): run
        // the transaction again. Otherwise the connection failed under it.
        return match *e.kind {
            ErrorKind::Command(_) => StoreError::Conflict(e.to_string()),
            _ => StoreError::Unavailable(e.to_string()),
        };
    }
    match *e.kind {
        ErrorKind::Command(_) | ErrorKind::Write(_) | ErrorKind::InvalidArgument { .. } => {
            StoreError::Rejected(e.to_string())
        }
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    matches!(&*e.kind, ErrorKind::Write(WriteFailure::WriteError(w)) if w.code == DUPLICATE_KEY)
}

fn bson_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Rejected(format!("cannot convert to BSON: {e}"))
}

impl MongoStore {
    /// Connects lazily: this only parses the URI and sets timeouts. `session_file` (in the
    /// data dir, given only by the process that owns it) remembers the transaction
    /// session across restarts.
    pub async fn connect(
        uri: &str,
        database: &str,
        timeout: Duration,
        session_file: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let mut opts = ClientOptions::parse(uri).await?;
        opts.app_name
            .get_or_insert_with(|| "agentstate".to_string());
        opts.server_selection_timeout = Some(timeout);
        opts.connect_timeout = Some(timeout);
        let client = Client::with_options(opts)?;
        Ok(MongoStore {
            db: client.database(database),
            client,
            schema: OnceCell::new(),
            txn_session: tokio::sync::Mutex::new(None),
            session_file,
        })
    }

    /// Ends the transaction session of a previous run, if it left one.
    async fn end_previous_session(&self) {
        let Some(file) = &self.session_file else {
            return;
        };
        let Ok(text) = std::fs::read_to_string(file) else {
            return;
        };
        let lsid = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| Bson::try_from(v).ok());
        let Some(Bson::Document(lsid)) = lsid else {
            tracing::warn!(file = %file.display(), "ignoring an unreadable session file");
            return;
        };
        match self
            .client
            .database("admin")
            .run_command(doc! { "killSessions": [lsid] })
            .await
        {
            Ok(_) => tracing::info!("ended the previous run's transaction session"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot end the previous run's transaction session")
            }
        }
    }

    /// The transfer session, started (and its id recorded) on first use.
    async fn transaction_session(
        &self,
    ) -> StoreResult<tokio::sync::MutexGuard<'_, Option<ClientSession>>> {
        let mut guard = self.txn_session.lock().await;
        if guard.is_none() {
            let session = self.client.start_session().await.map_err(driver_err)?;
            if let Some(file) = &self.session_file {
                let lsid = Bson::Document(session.id().clone()).into_relaxed_extjson();
                crate::durable::replace(file, lsid.to_string().as_bytes()).map_err(|e| {
                    StoreError::Unavailable(format!("record the transaction session: {e}"))
                })?;
            }
            *guard = Some(session);
        }
        Ok(guard)
    }

    /// First contact, once: ends the previous run's transaction session (the transaction
    /// a killed run left open would hold what it wrote, lease documents among them, for
    /// up to MongoDB's transaction lifetime), then creates the indexes. Every write,
    /// lease requests included, comes here first.
    async fn ensure_schema(&self) -> StoreResult<()> {
        self.schema
            .get_or_try_init(|| async {
                self.end_previous_session().await;
                let unique_seq = |name: &str| {
                    doc! { "key": { "agent_id": 1, "seq": 1 }, "name": name, "unique": true }
                };
                for (collection, index) in [
                    (STATE_TRANSITIONS, unique_seq("agent_seq")),
                    (CONVERSATION_HISTORY, unique_seq("agent_seq")),
                    (
                        CHECKPOINTS,
                        doc! { "key": { "agent_id": 1, "created_at": 1 }, "name": "agent_created" },
                    ),
                    (
                        STATE_TRANSITIONS,
                        doc! { "key": { "agent_id": 1, "success": 1 }, "name": "agent_success" },
                    ),
                    (
                        TRANSFERS,
                        doc! { "key": { "from_agent": 1, "_id": 1 }, "name": "from_agent" },
                    ),
                    (
                        TRANSFERS,
                        doc! { "key": { "to_agent": 1, "_id": 1 }, "name": "to_agent" },
                    ),
                ]
                .into_iter()
                .chain(threads::indexes())
                {
                    self.db
                        .run_command(doc! { "createIndexes": collection, "indexes": [index] })
                        .await
                        .map_err(driver_err)?;
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    pub async fn load(&self, agent_id: &str) -> StoreResult<Option<AgentRecord>> {
        let Some(d) = self
            .db
            .collection::<Document>(AGENT_STATES)
            .find_one(doc! { "_id": agent_id })
            .await
            .map_err(driver_err)?
        else {
            return Ok(None);
        };
        let mut record = record_from_doc(agent_id, &d)?;
        record.transition_seq = record
            .transition_seq
            .max(self.max_seq(STATE_TRANSITIONS, agent_id).await?);
        record.message_seq = record
            .message_seq
            .max(self.max_seq(CONVERSATION_HISTORY, agent_id).await?);
        Ok(Some(record))
    }

    async fn max_seq(&self, collection: &str, agent_id: &str) -> StoreResult<u64> {
        let last = self
            .db
            .collection::<Document>(collection)
            .find_one(doc! { "agent_id": agent_id })
            .sort(doc! { "seq": -1 })
            .projection(doc! { "seq": 1 })
            .await
            .map_err(driver_err)?;
        last.map_or(Ok(0), |t| get_u64(&t, "seq"))
    }

    async fn find_many(
        &self,
        collection: &str,
        filter: Document,
        sort: Document,
        limit: Option<i64>,
    ) -> StoreResult<Vec<Document>> {
        let coll = self.db.collection::<Document>(collection);
        let mut find = coll.find(filter).sort(sort);
        if let Some(l) = limit {
            find = find.limit(l);
        }
        let mut cursor = find.await.map_err(driver_err)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(driver_err)? {
            out.push(cursor.deserialize_current().map_err(driver_err)?);
        }
        Ok(out)
    }

    pub async fn transitions(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<StateTransition>> {
        self.find_many(
            STATE_TRANSITIONS,
            doc! { "agent_id": agent_id, "seq": { "$gt": after as i64 } },
            doc! { "seq": 1 },
            Some(i64::from(limit)),
        )
        .await?
        .iter()
        .map(transition_from_doc)
        .collect()
    }

    pub async fn messages(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        self.find_many(
            CONVERSATION_HISTORY,
            doc! { "agent_id": agent_id, "seq": { "$gt": after as i64 } },
            doc! { "seq": 1 },
            Some(i64::from(limit)),
        )
        .await?
        .iter()
        .map(message_from_doc)
        .collect()
    }

    pub async fn last_messages(
        &self,
        agent_id: &str,
        before: u64,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        let mut out = self
            .find_many(
                CONVERSATION_HISTORY,
                doc! { "agent_id": agent_id, "seq": { "$lte": before as i64 } },
                doc! { "seq": -1 },
                Some(i64::from(limit)),
            )
            .await?
            .iter()
            .map(message_from_doc)
            .collect::<StoreResult<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    pub async fn checkpoints(&self, agent_id: &str) -> StoreResult<Vec<Checkpoint>> {
        self.find_many(
            CHECKPOINTS,
            doc! { "agent_id": agent_id },
            doc! { "created_at": 1, "version": 1 },
            None,
        )
        .await?
        .iter()
        .map(checkpoint_from_doc)
        .collect()
    }

    pub async fn transfer(&self, transfer_id: &str) -> StoreResult<Option<Transfer>> {
        self.db
            .collection::<Document>(TRANSFERS)
            .find_one(doc! { "_id": transfer_id })
            .await
            .map_err(driver_err)?
            .as_ref()
            .map(transfer_from_doc)
            .transpose()
    }

    pub async fn agent_ids(&self, after: &str, limit: u32) -> StoreResult<Vec<String>> {
        let coll = self.db.collection::<Document>(AGENT_STATES);
        let mut cursor = coll
            .find(doc! { "_id": { "$gt": after } })
            .sort(doc! { "_id": 1 })
            .projection(doc! { "_id": 1 })
            .limit(i64::from(limit))
            .await
            .map_err(driver_err)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(driver_err)? {
            out.push(get_str(
                &cursor.deserialize_current().map_err(driver_err)?,
                "_id",
            )?);
        }
        Ok(out)
    }

    pub async fn transfers(&self, after: &str, limit: u32) -> StoreResult<Vec<Transfer>> {
        self.find_many(
            TRANSFERS,
            doc! { "_id": { "$gt": after } },
            doc! { "_id": 1 },
            Some(i64::from(limit)),
        )
        .await?
        .iter()
        .map(transfer_from_doc)
        .collect()
    }

    /// Thread checkpoints matching `q`, greatest id first.
    pub async fn thread_checkpoints(&self, q: ThreadQuery) -> StoreResult<Vec<ThreadCheckpoint>> {
        let (filter, sort) = threads::query(&q)?;
        self.find_many(THREAD_CHECKPOINTS, filter, sort, Some(q.limit as i64))
            .await?
            .iter()
            .map(threads::checkpoint_from_doc)
            .collect()
    }

    pub async fn thread_blobs(
        &self,
        thread: &str,
        keys: Vec<BlobKey>,
    ) -> StoreResult<Vec<StoredBlob>> {
        self.find_many(
            THREAD_BLOBS,
            threads::blob_filter(thread, &keys),
            doc! {},
            None,
        )
        .await?
        .iter()
        .map(threads::blob_from_doc)
        .collect()
    }

    pub async fn thread_blob_range(
        &self,
        thread: &str,
        range: BlobRange,
    ) -> StoreResult<Vec<StoredBlob>> {
        let coll = self.db.collection::<Document>(THREAD_BLOBS);
        let mut find = coll.find(threads::blob_range_filter(thread, &range));
        if !range.values {
            find = find.projection(doc! { "data": 0 });
        }
        let mut cursor = find.await.map_err(driver_err)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(driver_err)? {
            let mut d: Document = cursor.deserialize_current().map_err(driver_err)?;
            if !range.values {
                d.insert(
                    "data",
                    threads::binary(&agentstate_protocol::Payload::default()),
                );
            }
            out.push(threads::blob_from_doc(&d)?);
        }
        Ok(out)
    }

    pub async fn thread_writes(
        &self,
        thread: &str,
        keys: Vec<CheckpointKey>,
    ) -> StoreResult<Vec<StoredWrite>> {
        self.find_many(
            THREAD_WRITES,
            threads::writes_filter(thread, &keys),
            doc! {},
            None,
        )
        .await?
        .iter()
        .map(threads::write_from_doc)
        .collect()
    }

    pub async fn thread_write_ids_after(
        &self,
        thread: &str,
        ns: &str,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let filter =
            doc! { "thread_id": thread, "checkpoint_ns": ns, "checkpoint_id": { "$gt": after } };
        let mut ids: Vec<String> = self
            .find_many(
                THREAD_WRITES,
                filter,
                doc! { "checkpoint_id": 1 },
                Some(limit as i64),
            )
            .await?
            .iter()
            .map(|d| get_str(d, "checkpoint_id"))
            .collect::<StoreResult<_>>()?;
        ids.dedup();
        Ok(ids)
    }

    pub async fn ping(&self) -> StoreResult<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(driver_err)?;
        self.ensure_schema().await
    }
}
