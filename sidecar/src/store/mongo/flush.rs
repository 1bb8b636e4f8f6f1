//! Flushes: a batch as a few multi-statement write commands (a transfer in one transaction),
//! fenced by lease epoch, and what a fenced-off sidecar wrote kept in
//! `agent_state_conflicts`.

use super::codec::{
    bson_time, checkpoint_to_doc, get_str, get_u64, majority, message_to_doc, record_to_doc,
    set_on_insert, transfer_to_doc, transition_to_doc,
};
use super::{
    driver_err, threads, MongoStore, AGENT_STATES, AGENT_STATE_CONFLICTS, CHECKPOINTS,
    CONVERSATION_HISTORY, DUPLICATE_KEY, STATE_TRANSITIONS, THREAD_BLOBS, THREAD_CHECKPOINTS,
    THREAD_WRITES, TRANSFERS,
};
use crate::backlog::{FlushBatch, FlushItem};
use crate::model::{AgentRecord, Current, Effect, Op};
use crate::store::{StoreError, StoreResult};
use mongodb::ClientSession;
use std::collections::{HashMap, HashSet};

use mongodb::bson::{self, doc, Document};

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

/// What a fenced-off agent's flush carried besides its record, as documents.
#[derive(Default)]
struct Aside {
    transitions: Vec<Document>,
    messages: Vec<Document>,
    checkpoints: Vec<Document>,
    /// A thread's framework checkpoints, blobs and pending writes.
    thread: threads::ThreadAside,
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
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, Document};

    use super::{command_chunks, COMMAND_BYTES_MAX};

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
