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
//! Flushes use the plain `delete`/`update`/`insert` commands with many statements each and
//! `ordered: false`: one round trip per kind per batch, on any MongoDB version. Writes use
//! `w: "majority", j: true`, because the WAL is truncated once a flush is acknowledged: an
//! acknowledgement that a failover could roll back would lose data. A transfer is written
//! in one multi-document transaction.
//!
//! Idempotence: a state is written with filter `{_id, version: {$lt: v}}` and upsert; when
//! the stored version is already `v` or newer the filter misses and the upsert collides
//! on `_id` (duplicate key, 11000), which here means "already there" and is not an error.
//! Log entries and messages collide the same way when inserted twice.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use mongodb::bson::{self, doc, Bson, Document};
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use mongodb::{Client, ClientSession, Database};
use tokio::sync::OnceCell;

mod listing;
mod threads;

use super::{cutoff, BlobRange, Retained, StoreError, StoreResult, ThreadQuery};
use crate::backlog::{FlushBatch, FlushItem};
use crate::config::RetentionPolicy;
use crate::model::{
    AgentRecord, BlobKey, Checkpoint, CheckpointKey, Current, Doc, DocMap, Effect, Message, Op,
    PendingTransition, PersistedState, StateTransition, StoredBlob, StoredWrite, ThreadCheckpoint,
    Transfer,
};
use agentstate_protocol::{AgentUsage, TableUsage};
pub use threads::{THREAD_BLOBS, THREAD_CHECKPOINTS, THREAD_WRITES};

pub const AGENT_STATES: &str = "agent_states";
pub const STATE_TRANSITIONS: &str = "state_transitions";
pub const CONVERSATION_HISTORY: &str = "conversation_history";
pub const CHECKPOINTS: &str = "checkpoints";
pub const TRANSFERS: &str = "transfers";
pub const AGENT_LEASES: &str = "agent_leases";
/// Records a fenced sidecar could not write: kept, never silently dropped.
pub const AGENT_STATE_CONFLICTS: &str = "agent_state_conflicts";
/// MongoDB's code for a collection that does not exist.
const NAMESPACE_NOT_FOUND: i32 = 26;

/// The server's error code of a failed command, if it is one.
fn command_code(e: &mongodb::error::Error) -> Option<i32> {
    match e.kind.as_ref() {
        mongodb::error::ErrorKind::Command(c) => Some(c.code),
        _ => None,
    }
}

/// The collections usage is reported for, each with the field naming the agent (or
/// thread) a document belongs to, if any.
const USAGE_COLLECTIONS: &[(&str, Option<&str>)] = &[
    (AGENT_STATES, Some("_id")),
    (STATE_TRANSITIONS, Some("agent_id")),
    (CONVERSATION_HISTORY, Some("agent_id")),
    (CHECKPOINTS, Some("agent_id")),
    (TRANSFERS, None),
    (threads::THREAD_CHECKPOINTS, Some("thread_id")),
    (threads::THREAD_BLOBS, Some("thread_id")),
    (threads::THREAD_WRITES, Some("thread_id")),
];

/// What a fenced-off agent's flush carried besides its record, as documents.
#[derive(Default)]
struct Aside {
    transitions: Vec<Document>,
    messages: Vec<Document>,
    checkpoints: Vec<Document>,
    /// A thread's framework checkpoints, blobs and pending writes.
    thread: threads::ThreadAside,
}

const DUPLICATE_KEY: i32 = 11000;
/// Most statement bytes in one write command: well under MongoDB's 16 MiB per document.
const COMMAND_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Statements split into commands of at most [`COMMAND_BYTES_MAX`] (one statement alone
/// may be larger: MongoDB then refuses it, naming the size).
fn command_chunks(statements: Vec<Document>) -> Vec<Vec<Document>> {
    let mut chunks: Vec<Vec<Document>> = Vec::new();
    let mut bytes = 0;
    for d in statements {
        let size = bson::to_vec(&d).map_or(0, |v| v.len());
        match chunks.last_mut() {
            Some(c) if bytes + size <= COMMAND_BYTES_MAX => {
                bytes += size;
                c.push(d);
            }
            _ => {
                bytes = size;
                chunks.push(vec![d]);
            }
        }
    }
    chunks
}

/// The answer to a lease request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This sidecar owns the agent, under this epoch.
    Held { epoch: u64 },
    /// Another sidecar does, until then.
    Taken {
        owner: String,
        expires_at: chrono::DateTime<chrono::Utc>,
    },
}

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
        return StoreError::Unavailable(e.to_string());
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

/// Statements of one kind, gathered for one multi-statement command.
#[derive(Default)]
struct Writes {
    purge_states: Vec<Document>,
    purge_transitions: Vec<Document>,
    purge_messages: Vec<Document>,
    purge_checkpoints: Vec<Document>,
    upserts: Vec<Document>,
    transitions: Vec<Document>,
    messages: Vec<Document>,
    checkpoints: Vec<Document>,
    /// The records behind `upserts`, in the same order, to tell a fenced write from one
    /// that is simply already there.
    upserted: Vec<AgentRecord>,
    threads: threads::ThreadWrites,
}

impl Writes {
    fn record(&mut self, rec: &AgentRecord) -> StoreResult<()> {
        // Documents are ordered by (lease epoch, version): a record replaces one written
        // under an older epoch, or an older version under its own. A newer owner's
        // document is never overwritten, and a new owner's first record replaces what a
        // fenced-off sidecar may have slipped in after the take-over.
        let (epoch, version) = (rec.lease_epoch as i64, rec.state.version as i64);
        self.upserts.push(doc! {
            "q": {
                "_id": &rec.state.agent_id,
                "$or": [
                    { "lease_epoch": { "$lt": epoch } },
                    { "lease_epoch": epoch, "version": { "$lt": version } },
                    { "lease_epoch": { "$exists": false }, "version": { "$lt": version } },
                ],
            },
            "u": record_to_doc(rec)?,
            "upsert": true,
        });
        self.upserted.push(rec.clone());
        Ok(())
    }

    fn item(&mut self, item: &FlushItem) -> StoreResult<()> {
        let id = &item.agent_id;
        if let Some(t) = item.purge {
            self.purge_states.push(doc! {
                "q": { "_id": id, "version": { "$lt": t.version as i64 } }, "limit": 1,
            });
            self.purge_transitions.push(doc! {
                "q": { "agent_id": id, "seq": { "$lte": t.transition_seq as i64 } }, "limit": 0,
            });
            self.purge_messages.push(doc! {
                "q": { "agent_id": id, "seq": { "$lte": t.message_seq as i64 } }, "limit": 0,
            });
            self.purge_checkpoints.push(doc! {
                "q": { "agent_id": id, "version": { "$lt": t.version as i64 } }, "limit": 0,
            });
            self.threads.purge(id, t.version);
        }
        for (_, from, to) in &item.message_drops {
            self.purge_messages.push(doc! {
                "q": { "agent_id": id, "seq": { "$gte": *from as i64, "$lte": *to as i64 } }, "limit": 0,
            });
        }
        self.threads.dirt(id, &item.threads)?;
        if let Some(Current::Live(rec)) = &item.current {
            self.record(rec)?;
        }
        for t in &item.transitions {
            self.transitions.push(transition_to_doc(t)?);
        }
        for m in &item.messages {
            self.messages.push(message_to_doc(id, m)?);
        }
        for c in &item.checkpoints {
            self.checkpoints.push(checkpoint_to_doc(c)?);
        }
        Ok(())
    }
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

    /// Writes what it can of `batch`; returns what was written and the first error.
    ///
    /// Transfers go first, each in its own transaction. One that fails (typically a
    /// WriteConflict with the still-open transaction of a sidecar killed mid-flush, which
    /// MongoDB keeps until its `transactionLifetimeLimitSeconds`) holds back only its own
    /// agents, so the rest of the backlog keeps flowing.
    pub async fn flush(&self, batch: FlushBatch) -> (FlushBatch, Vec<String>, Option<StoreError>) {
        let mut written = FlushBatch::default();
        let mut fenced = Vec::new();
        if let Err(e) = self.ensure_schema().await {
            return (written, fenced, Some(e));
        }
        let mut first_error = None;
        let mut blocked: HashSet<String> = HashSet::new();
        for t in batch.transfers {
            let agents: Vec<String> = t.op.agents().into_iter().map(str::to_string).collect();
            if agents.iter().any(|a| blocked.contains(a)) {
                continue;
            }
            match self.flush_transfer(&t.op).await {
                Ok(mut f) => {
                    fenced.append(&mut f);
                    written.transfers.push(t)
                }
                Err(e) => {
                    tracing::debug!(error = %e, transfer = %t.transfer().transfer_id, "transfer flush failed");
                    blocked.extend(agents);
                    first_error.get_or_insert(e);
                }
            }
        }
        let items: Vec<FlushItem> = batch
            .items
            .into_iter()
            .filter(|i| !blocked.contains(&i.agent_id))
            .collect();
        let mut w = Writes::default();
        let result = match items.iter().try_for_each(|i| w.item(i)) {
            Ok(()) => self.write_all(w).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(mut f) => {
                fenced.append(&mut f);
                written.items = items
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
        (written, fenced, first_error)
    }

    /// One transfer in one transaction. Inside a transaction a write error (a duplicate
    /// key) aborts everything, so nothing here may collide: records are written only over
    /// older (epoch, version)s read in the same transaction, and log entries, messages and the
    /// transfer's record are inserted with `$setOnInsert` upserts, which do nothing if
    /// the document is already there. A re-flush after a crash is then a no-op.
    async fn flush_transfer(&self, op: &Op) -> StoreResult<Vec<String>> {
        let Op::Transfer { transfer, .. } = op else {
            return Ok(Vec::new());
        };
        let mut records = Vec::new();
        let mut inserts: Vec<(&str, Document)> = Vec::new();
        let mut failed = Ok(());
        op.for_each_effect(&mut |e| {
            let doc = match e {
                Effect::Record(r) => {
                    records.push(&**r);
                    return;
                }
                Effect::Transition(t) => transition_to_doc(t).map(|d| (STATE_TRANSITIONS, d)),
                Effect::Message(agent, m) => {
                    message_to_doc(agent, m).map(|d| (CONVERSATION_HISTORY, d))
                }
                Effect::Delete(..)
                | Effect::Checkpoint(_)
                | Effect::Thread(..)
                | Effect::DropMessages(..) => return,
            };
            match doc {
                Ok(d) => inserts.push(d),
                Err(e) => failed = Err(e),
            }
        });
        failed?;
        inserts.push((TRANSFERS, transfer_to_doc(transfer)?));

        let mut guard = self.transaction_session().await?;
        let session = guard.as_mut().expect("transaction_session starts one");
        let result = self.transfer_in(session, records, inserts).await;
        if result.is_err() {
            // Leave nothing open behind a failure; an abort that fails only means there
            // was no transaction left to end.
            let _ = session.abort_transaction().await;
        }
        result
    }

    async fn transfer_in(
        &self,
        session: &mut ClientSession,
        records: Vec<&AgentRecord>,
        inserts: Vec<(&str, Document)>,
    ) -> StoreResult<Vec<String>> {
        session
            .start_transaction()
            .write_concern(majority())
            .await
            .map_err(driver_err)?;
        let ids: Vec<&str> = records.iter().map(|r| r.state.agent_id.as_str()).collect();
        let mut stored = std::collections::HashMap::new();
        // An imported transfer comes without records: nothing to read.
        if !ids.is_empty() {
            let mut cursor = self
                .db
                .collection::<Document>(AGENT_STATES)
                .find(doc! { "_id": { "$in": &ids } })
                .projection(doc! { "version": 1, "lease_epoch": 1 })
                .session(&mut *session)
                .await
                .map_err(driver_err)?;
            while cursor.advance(&mut *session).await.map_err(driver_err)? {
                let d = cursor.deserialize_current().map_err(driver_err)?;
                stored.insert(
                    get_str(&d, "_id")?,
                    (get_u64(&d, "version")?, get_u64(&d, "lease_epoch")?),
                );
            }
        }
        // Stored documents are ordered by (lease epoch, version). If a newer epoch holds
        // any of the agents, the transfer was made under a lease since lost: none of it
        // is written, its records are kept aside.
        let newer = |r: &AgentRecord| {
            stored
                .get(&r.state.agent_id)
                .is_some_and(|(_, epoch)| *epoch > r.lease_epoch)
        };
        if records.iter().any(|r| newer(r)) {
            let mut fenced = Vec::new();
            for r in records {
                self.keep_conflict(r, &Aside::default(), Some(&mut *session))
                    .await?;
                fenced.push(r.state.agent_id.clone());
            }
            session.commit_transaction().await.map_err(driver_err)?;
            return Ok(fenced);
        }
        let mut upserts = Vec::new();
        for r in records {
            let there = stored
                .get(&r.state.agent_id)
                .is_some_and(|(version, epoch)| {
                    *epoch == r.lease_epoch && *version >= r.state.version
                });
            if !there {
                upserts.push(
                    doc! { "q": { "_id": &r.state.agent_id }, "u": record_to_doc(r)?, "upsert": true },
                );
            }
        }
        if !upserts.is_empty() {
            self.write(
                "update",
                AGENT_STATES,
                "updates",
                upserts,
                Some(&mut *session),
            )
            .await?;
        }
        for collection in [STATE_TRANSITIONS, CONVERSATION_HISTORY, TRANSFERS] {
            let statements: Vec<Document> = inserts
                .iter()
                .filter(|(c, _)| *c == collection)
                .map(|(_, d)| set_on_insert(d))
                .collect();
            if !statements.is_empty() {
                self.write(
                    "update",
                    collection,
                    "updates",
                    statements,
                    Some(&mut *session),
                )
                .await?;
            }
        }
        session.commit_transaction().await.map_err(driver_err)?;
        Ok(Vec::new())
    }

    /// Writes every statement: purges first, so a delete followed by a re-creation in
    /// one batch leaves the new incarnation; then log entries, messages and checkpoints;
    /// thread blobs and writes before the thread checkpoints that name them; the records
    /// last, so a record never names a log entry that is not there yet.
    ///
    /// The flusher leaves out agents whose lease this sidecar lost; should one slip
    /// through (its flush outlasted the lease), its record is still fenced off here by
    /// the epoch of the stored document.
    async fn write_all(&self, w: Writes) -> StoreResult<Vec<String>> {
        let steps = [
            ("delete", AGENT_STATES, "deletes", w.purge_states),
            ("delete", STATE_TRANSITIONS, "deletes", w.purge_transitions),
            ("delete", CONVERSATION_HISTORY, "deletes", w.purge_messages),
            ("delete", CHECKPOINTS, "deletes", w.purge_checkpoints),
            (
                "delete",
                THREAD_CHECKPOINTS,
                "deletes",
                w.threads.delete_checkpoints,
            ),
            ("delete", THREAD_BLOBS, "deletes", w.threads.delete_blobs),
            ("delete", THREAD_WRITES, "deletes", w.threads.delete_writes),
            ("insert", STATE_TRANSITIONS, "documents", w.transitions),
            ("insert", CONVERSATION_HISTORY, "documents", w.messages),
            ("insert", CHECKPOINTS, "documents", w.checkpoints),
            ("update", THREAD_BLOBS, "updates", w.threads.upsert_blobs),
            ("update", THREAD_WRITES, "updates", w.threads.upsert_writes),
            (
                "update",
                THREAD_CHECKPOINTS,
                "updates",
                w.threads.upsert_checkpoints,
            ),
            ("update", AGENT_STATES, "updates", w.upserts),
        ];
        let mut fenced = Vec::new();
        for (command, collection, field, statements) in steps {
            if statements.is_empty() {
                continue;
            }
            let duplicates = self
                .write(command, collection, field, statements, None)
                .await?;
            if command == "update" && collection == AGENT_STATES && !duplicates.is_empty() {
                let missed: Vec<&AgentRecord> = duplicates
                    .iter()
                    .filter_map(|i| w.upserted.get(*i))
                    .collect();
                for rec in self.fenced(&missed).await? {
                    self.keep_conflict(rec, &Aside::default(), None).await?;
                    fenced.push(rec.state.agent_id.clone());
                }
            }
        }
        Ok(fenced)
    }

    /// Of records whose write missed, those a newer lease epoch fenced off (the others
    /// were simply there already).
    async fn fenced<'r>(&self, missed: &[&'r AgentRecord]) -> StoreResult<Vec<&'r AgentRecord>> {
        let ids: Vec<&str> = missed.iter().map(|r| r.state.agent_id.as_str()).collect();
        let stored = self
            .find_many(AGENT_STATES, doc! { "_id": { "$in": &ids } }, doc! {}, None)
            .await?;
        let mut epochs = std::collections::HashMap::new();
        for d in &stored {
            epochs.insert(get_str(d, "_id")?, get_u64(d, "lease_epoch")?);
        }
        Ok(missed
            .iter()
            .filter(|r| {
                epochs
                    .get(&r.state.agent_id)
                    .is_some_and(|e| *e > r.lease_epoch)
            })
            .copied()
            .collect())
    }

    /// Keeps what a sidecar flushed under a lease it had lost (the records, log entries,
    /// messages, checkpoints and thread checkpoints of `aside`'s agents and transfers) in
    /// `agent_state_conflicts`, writing none of it where the agents' owner writes.
    pub async fn keep_aside(&self, aside: &FlushBatch) -> StoreResult<()> {
        for item in &aside.items {
            let Some(Current::Live(rec)) = &item.current else {
                continue;
            };
            let mut docs = Aside::default();
            for t in &item.transitions {
                docs.transitions.push(transition_to_doc(t)?);
            }
            for m in &item.messages {
                docs.messages.push(message_to_doc(&item.agent_id, m)?);
            }
            for c in &item.checkpoints {
                docs.checkpoints.push(checkpoint_to_doc(c)?);
            }
            docs.thread = threads::ThreadAside::of(&item.agent_id, &item.threads)?;
            self.keep_conflict(rec, &docs, None).await?;
        }
        for t in &aside.transfers {
            let mut records = Vec::new();
            let mut docs: HashMap<&str, Aside> = HashMap::new();
            let mut failed = Ok(());
            t.op.for_each_effect(&mut |e| {
                let done = match e {
                    Effect::Record(r) => {
                        records.push(r);
                        Ok(())
                    }
                    Effect::Transition(tr) => transition_to_doc(tr)
                        .map(|d| docs.entry(&tr.agent_id).or_default().transitions.push(d)),
                    Effect::Message(agent, m) => message_to_doc(agent, m)
                        .map(|d| docs.entry(agent).or_default().messages.push(d)),
                    _ => Ok(()),
                };
                if let Err(e) = done {
                    failed = Err(e);
                }
            });
            failed?;
            for rec in records {
                let none = Aside::default();
                let docs = docs.get(rec.state.agent_id.as_str()).unwrap_or(&none);
                self.keep_conflict(rec, docs, None).await?;
            }
        }
        Ok(())
    }

    /// Keeps a fenced record, with what else its flush carried, in
    /// `agent_state_conflicts` for an operator to look at.
    async fn keep_conflict(
        &self,
        rec: &AgentRecord,
        aside: &Aside,
        session: Option<&mut ClientSession>,
    ) -> StoreResult<()> {
        let id = &rec.state.agent_id;
        tracing::error!(
            agent_id = %id,
            version = rec.state.version,
            lease_epoch = rec.lease_epoch,
            "write fenced off: another sidecar owns this agent under a newer lease; kept in agent_state_conflicts"
        );
        metrics::counter!(crate::metrics::CONFLICTS_TOTAL, "kind" => "lease").increment(1);
        let conflict = doc! {
            "_id": format!("{id}:{}:{}", rec.state.version, rec.lease_epoch),
            "agent_id": id,
            "version": rec.state.version as i64,
            "lease_epoch": rec.lease_epoch as i64,
            "record": record_to_doc(rec)?,
            "transitions": &aside.transitions,
            "messages": &aside.messages,
            "checkpoints": &aside.checkpoints,
            "thread_checkpoints": &aside.thread.checkpoints,
            "thread_blobs": &aside.thread.blobs,
            "thread_writes": &aside.thread.writes,
            "thread_dropped": &aside.thread.dropped,
            "detected_at": bson_time(&chrono::Utc::now()),
        };
        self.write(
            "update",
            AGENT_STATE_CONFLICTS,
            "updates",
            vec![set_on_insert(&conflict)],
            session,
        )
        .await
        .map(|_| ())
    }

    /// Renews this sidecar's leases on `agent_ids` (those it still owns, expired or
    /// not), and returns each lease's owner and epoch.
    pub async fn renew_leases(
        &self,
        agent_ids: &[&str],
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<HashMap<String, (String, u64)>> {
        let coll = self.db.collection::<Document>(AGENT_LEASES);
        let until =
            bson_time(&(chrono::Utc::now() + chrono::Duration::from_std(ttl).unwrap_or_default()));
        coll.update_many(
            doc! { "_id": { "$in": agent_ids }, "owner": owner },
            doc! { "$set": { "expires_at": until } },
        )
        .write_concern(majority())
        .await
        .map_err(driver_err)?;
        let mut leases = HashMap::new();
        for d in self
            .find_many(
                AGENT_LEASES,
                doc! { "_id": { "$in": agent_ids } },
                doc! {},
                None,
            )
            .await?
        {
            leases.insert(
                get_str(&d, "_id")?,
                (get_str(&d, "owner")?, get_u64(&d, "epoch")?),
            );
        }
        Ok(leases)
    }

    /// Takes or renews this sidecar's lease on an agent.
    pub async fn acquire_lease(
        &self,
        agent_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<Lease> {
        use mongodb::options::{CollectionOptions, ReturnDocument};
        let coll = self.db.collection_with_options::<Document>(
            AGENT_LEASES,
            CollectionOptions::builder()
                .write_concern(majority())
                .build(),
        );
        let now = chrono::Utc::now();
        let until = bson_time(&(now + chrono::Duration::from_std(ttl).unwrap_or_default()));
        let epoch_of = |d: Document| get_u64(&d, "epoch").map(|epoch| Lease::Held { epoch });
        // Ours already: renew.
        if let Some(d) = coll
            .find_one_and_update(
                doc! { "_id": agent_id, "owner": owner },
                doc! { "$set": { "expires_at": until } },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(driver_err)?
        {
            return epoch_of(d);
        }
        // Someone else's, expired: take it over under the next epoch.
        if let Some(d) = coll
            .find_one_and_update(
                doc! { "_id": agent_id, "expires_at": { "$lt": bson_time(&now) } },
                doc! { "$set": { "owner": owner, "expires_at": until }, "$inc": { "epoch": 1i64 } },
            )
            .return_document(ReturnDocument::After)
            .await
            .map_err(driver_err)?
        {
            return epoch_of(d);
        }
        // Nobody's yet.
        match coll
            .insert_one(
                doc! { "_id": agent_id, "owner": owner, "epoch": 1i64, "expires_at": until },
            )
            .await
        {
            Ok(_) => Ok(Lease::Held { epoch: 1 }),
            Err(e) if is_duplicate(&e) => {
                let d = coll
                    .find_one(doc! { "_id": agent_id })
                    .await
                    .map_err(driver_err)?
                    .ok_or_else(|| StoreError::Unavailable("lease vanished; retry".into()))?;
                Ok(Lease::Taken {
                    owner: get_str(&d, "owner")?,
                    expires_at: get_time(&d, "expires_at")?,
                })
            }
            Err(e) => Err(driver_err(e)),
        }
    }

    /// Runs a multi-statement write, in commands of at most [`COMMAND_BYTES_MAX`]
    /// (MongoDB refuses a command over 16 MiB); duplicate keys count as success. Returns
    /// the indexes of the statements that collided.
    async fn write(
        &self,
        command: &str,
        collection: &str,
        field: &str,
        statements: Vec<Document>,
        mut session: Option<&mut ClientSession>,
    ) -> StoreResult<Vec<usize>> {
        let mut duplicates = Vec::new();
        let mut offset = 0;
        for chunk in command_chunks(statements) {
            let n = chunk.len();
            let found = self
                .write_command(command, collection, field, chunk, session.as_deref_mut())
                .await?;
            duplicates.extend(found.into_iter().map(|i| i + offset));
            offset += n;
        }
        Ok(duplicates)
    }

    /// One write command.
    async fn write_command(
        &self,
        command: &str,
        collection: &str,
        field: &str,
        statements: Vec<Document>,
        session: Option<&mut ClientSession>,
    ) -> StoreResult<Vec<usize>> {
        let mut cmd = Document::new();
        cmd.insert(command, collection);
        cmd.insert(field, statements);
        cmd.insert("ordered", false);
        let reply = match session {
            // Inside a transaction the write concern is the transaction's.
            Some(s) => self.db.run_command(cmd).session(s).await,
            None => {
                cmd.insert("writeConcern", doc! { "w": "majority", "j": true });
                self.db.run_command(cmd).await
            }
        }
        .map_err(driver_err)?;
        let mut duplicates = Vec::new();
        if let Ok(errors) = reply.get_array("writeErrors") {
            for e in errors {
                let d = e.as_document();
                let code = d.and_then(|d| d.get_i32("code").ok());
                if code != Some(DUPLICATE_KEY) {
                    return Err(StoreError::Rejected(format!(
                        "{command} on {collection}: {e}"
                    )));
                }
                if let Some(i) = d.and_then(|d| d.get_i32("index").ok()) {
                    duplicates.push(i as usize);
                }
            }
        }
        if let Ok(wce) = reply.get_document("writeConcernError") {
            return Err(StoreError::Unavailable(format!(
                "{command} on {collection}: write concern not met: {wce}"
            )));
        }
        Ok(duplicates)
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

    /// Age limits become TTL indexes (MongoDB then deletes on its own, about once a
    /// minute) and are applied now too; count limits are applied per agent.
    pub async fn retain(
        &self,
        policy: &RetentionPolicy,
        now: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<Retained> {
        self.ensure_schema().await?;
        let mut out = Retained::default();
        let rules = [
            (
                STATE_TRANSITIONS,
                "timestamp",
                policy.transitions_max_age_days,
                policy.transitions_max_count,
            ),
            (
                CONVERSATION_HISTORY,
                "timestamp",
                policy.messages_max_age_days,
                policy.messages_max_count,
            ),
            (
                CHECKPOINTS,
                "created_at",
                policy.checkpoints_max_age_days,
                policy.checkpoints_max_count,
            ),
        ];
        for (collection, time, max_age, max_count) in rules {
            let coll = self.db.collection::<Document>(collection);
            let mut deleted = 0;
            if let Some(days) = max_age {
                self.ensure_ttl(collection, time, days).await;
                deleted += coll
                    .delete_many(doc! { time: { "$lt": bson_time(&cutoff(now, days)) } })
                    .await
                    .map_err(driver_err)?
                    .deleted_count;
            }
            if let Some(n) = max_count {
                deleted += self.keep_newest(collection, n).await?;
            }
            match collection {
                STATE_TRANSITIONS => out.transitions = deleted,
                CONVERSATION_HISTORY => out.messages = deleted,
                _ => out.checkpoints = deleted,
            }
        }
        Ok(out)
    }

    /// A TTL index on `field` expiring after `days`; best effort (logged on failure).
    async fn ensure_ttl(&self, collection: &str, field: &str, days: u64) {
        let seconds = (days * 86_400).min(i32::MAX as u64) as i64;
        let name = format!("retention_{field}");
        let create = doc! {
            "createIndexes": collection,
            "indexes": [{ "key": { field: 1 }, "name": &name, "expireAfterSeconds": seconds }],
        };
        if self.db.run_command(create).await.is_ok() {
            return;
        }
        // The index exists with another expiry: change it in place.
        let modify = doc! { "collMod": collection, "index": { "name": &name, "expireAfterSeconds": seconds } };
        if let Err(e) = self.db.run_command(modify).await {
            tracing::warn!(collection, error = %e, "cannot set the retention TTL index");
        }
    }

    /// Deletes all but the newest `n` entries of every agent in `collection`.
    async fn keep_newest(&self, collection: &str, n: u64) -> StoreResult<u64> {
        let order = if collection == CHECKPOINTS {
            "created_at"
        } else {
            "seq"
        };
        let coll = self.db.collection::<Document>(collection);
        let mut over = coll
            .aggregate([
                doc! { "$group": { "_id": "$agent_id", "count": { "$sum": 1 } } },
                doc! { "$match": { "count": { "$gt": n as i64 } } },
            ])
            .await
            .map_err(driver_err)?;
        let mut agents = Vec::new();
        while over.advance().await.map_err(driver_err)? {
            let d = over.deserialize_current().map_err(driver_err)?;
            agents.push(get_str(&d, "_id")?);
        }
        let mut deleted = 0;
        for agent in agents {
            let newest = self
                .find_many(
                    collection,
                    doc! { "agent_id": &agent },
                    doc! { order: -1 },
                    Some(n as i64),
                )
                .await?;
            let keep: Vec<Bson> = newest
                .iter()
                .filter_map(|d| d.get("_id").cloned())
                .collect();
            deleted += coll
                .delete_many(doc! { "agent_id": &agent, "_id": { "$nin": keep } })
                .await
                .map_err(driver_err)?
                .deleted_count;
        }
        Ok(deleted)
    }

    pub async fn thread_retention_candidates(
        &self,
        max_count: Option<u64>,
        cutoff: Option<chrono::DateTime<chrono::Utc>>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        let mut found = self
            .db
            .collection::<Document>(THREAD_CHECKPOINTS)
            .aggregate(threads::retention_candidates(max_count, cutoff, limit))
            .await
            .map_err(driver_err)?;
        let mut out = Vec::new();
        while found.advance().await.map_err(driver_err)? {
            let d = found.deserialize_current().map_err(driver_err)?;
            out.push(get_str(&d, "_id")?);
        }
        Ok(out)
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

    /// Per collection, what `collStats` says of it.
    pub async fn usage(&self) -> StoreResult<Vec<TableUsage>> {
        let mut out = Vec::new();
        for (name, _) in USAGE_COLLECTIONS {
            let stats = match self.db.run_command(doc! { "collStats": *name }).await {
                Ok(stats) => stats,
                // Not created yet (nothing written there): empty.
                Err(e) if command_code(&e) == Some(NAMESPACE_NOT_FOUND) => Document::new(),
                Err(e) => return Err(driver_err(e)),
            };
            let n = |field: &str| {
                stats
                    .get(field)
                    .and_then(|v| {
                        v.as_i64()
                            .or_else(|| v.as_i32().map(i64::from))
                            .or_else(|| v.as_f64().map(|f| f as i64))
                    })
                    .unwrap_or(0)
                    .max(0) as u64
            };
            out.push(TableUsage {
                name: name.to_string(),
                rows: n("count"),
                data_bytes: n("size"),
                storage_bytes: n("storageSize"),
                index_bytes: n("totalIndexSize"),
            });
        }
        Ok(out)
    }

    /// The `top` agents holding the most bytes: their documents' BSON sizes, in every
    /// collection.
    pub async fn largest_agents(&self, top: u32) -> StoreResult<Vec<AgentUsage>> {
        let mut bytes: HashMap<String, u64> = HashMap::new();
        for (name, id) in USAGE_COLLECTIONS {
            let Some(id) = id else { continue };
            let pipeline = [doc! { "$group": {
                "_id": format!("${id}"),
                "bytes": { "$sum": { "$bsonSize": "$$ROOT" } },
            } }];
            let coll = self.db.collection::<Document>(name);
            let mut cursor = coll.aggregate(pipeline).await.map_err(driver_err)?;
            while cursor.advance().await.map_err(driver_err)? {
                let d = cursor.deserialize_current().map_err(driver_err)?;
                let Ok(agent) = d.get_str("_id") else {
                    continue;
                };
                let n = d
                    .get("bytes")
                    .and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from)))
                    .unwrap_or(0)
                    .max(0) as u64;
                *bytes.entry(agent.to_string()).or_default() += n;
            }
        }
        let mut out: Vec<AgentUsage> = bytes
            .into_iter()
            .map(|(agent_id, bytes)| AgentUsage { agent_id, bytes })
            .collect();
        out.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then_with(|| a.agent_id.cmp(&b.agent_id))
        });
        out.truncate(top as usize);
        Ok(out)
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

/// An upsert that inserts `d` if no document has its `_id`, and otherwise does nothing.
fn set_on_insert(d: &Document) -> Document {
    let mut fields = d.clone();
    let id = fields.remove("_id").unwrap_or(Bson::Null);
    doc! { "q": { "_id": id }, "u": { "$setOnInsert": fields }, "upsert": true }
}

fn majority() -> WriteConcern {
    WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build()
}

/// BSON dates have millisecond precision; the sidecar's timestamps are already truncated
/// to milliseconds, so nothing is lost.
fn bson_time(t: &chrono::DateTime<chrono::Utc>) -> bson::DateTime {
    bson::DateTime::from_millis(t.timestamp_millis())
}

pub(super) fn to_bson(v: &(impl serde::Serialize + ?Sized)) -> StoreResult<Bson> {
    bson::to_bson(v).map_err(bson_err)
}

fn opt_str(s: Option<&str>) -> Bson {
    s.map_or(Bson::Null, |s| Bson::String(s.to_string()))
}

fn state_to_doc(s: &PersistedState) -> StoreResult<Document> {
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

fn record_to_doc(rec: &AgentRecord) -> StoreResult<Document> {
    let mut d = doc! { "_id": &rec.state.agent_id };
    d.extend(state_to_doc(&rec.state)?);
    d.insert("transition_seq", rec.transition_seq as i64);
    d.insert("message_seq", rec.message_seq as i64);
    d.insert("lease_epoch", rec.lease_epoch as i64);
    Ok(d)
}

fn transition_to_doc(t: &StateTransition) -> StoreResult<Document> {
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

fn message_to_doc(agent_id: &str, m: &Message) -> StoreResult<Document> {
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

fn checkpoint_to_doc(c: &Checkpoint) -> StoreResult<Document> {
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

fn transfer_to_doc(t: &Transfer) -> StoreResult<Document> {
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

fn get_opt_str(d: &Document, field: &str) -> Option<String> {
    d.get_str(field).ok().map(str::to_string)
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

pub(super) fn get_map(d: &Document, field: &str) -> serde_json::Map<String, serde_json::Value> {
    match get_json(d, field) {
        serde_json::Value::Object(m) => m,
        _ => Default::default(),
    }
}

/// A document field as bytes; absent or `null` is `None`.
fn get_opt_doc(d: &Document, field: &str) -> StoreResult<Option<Doc>> {
    match d.get(field) {
        None | Some(Bson::Null) => Ok(None),
        Some(b) => bson::from_bson(b.clone())
            .map(Some)
            .map_err(|e| bad_doc(field, e)),
    }
}

fn get_doc(d: &Document, field: &str) -> StoreResult<Doc> {
    Ok(get_opt_doc(d, field)?.unwrap_or_default())
}

fn get_doc_map(d: &Document, field: &str) -> StoreResult<DocMap> {
    match d.get(field) {
        None | Some(Bson::Null) => Ok(DocMap::default()),
        Some(b) => bson::from_bson(b.clone()).map_err(|e| bad_doc(field, e)),
    }
}

fn state_from_doc(agent_id: &str, d: &Document) -> StoreResult<PersistedState> {
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

fn record_from_doc(agent_id: &str, d: &Document) -> StoreResult<AgentRecord> {
    Ok(AgentRecord {
        state: state_from_doc(agent_id, d)?,
        transition_seq: get_u64(d, "transition_seq")?,
        message_seq: get_u64(d, "message_seq")?,
        lease_epoch: get_u64(d, "lease_epoch")?,
        encoded: Default::default(),
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
        error: get_opt_str(d, "error"),
        state_data: get_opt_doc(d, "state_data")?,
        reason: get_opt_str(d, "reason"),
    })
}

fn message_from_doc(d: &Document) -> StoreResult<Message> {
    Ok(Message {
        seq: get_u64(d, "seq")?,
        role: get_str(d, "role")?,
        content: get_str(d, "content")?,
        timestamp: get_time(d, "timestamp")?,
        metadata: get_doc_map(d, "metadata")?,
    })
}

fn checkpoint_from_doc(d: &Document) -> StoreResult<Checkpoint> {
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

fn transfer_from_doc(d: &Document) -> StoreResult<Transfer> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_commands_stay_under_the_size_bound() {
        let big = "x".repeat(COMMAND_BYTES_MAX / 3);
        let statements: Vec<Document> = (0..7).map(|i| doc! { "i": i, "pad": &big }).collect();
        let chunks = command_chunks(statements);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [2, 2, 2, 1]
        );
        // One statement over the bound still goes, alone.
        let huge = "x".repeat(COMMAND_BYTES_MAX + 1);
        let chunks = command_chunks(vec![doc! { "a": 1 }, doc! { "pad": huge }, doc! { "b": 2 }]);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    }
}
