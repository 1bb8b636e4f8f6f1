//! Flushes: a batch as one transaction of a few multi-statement write commands (each
//! transfer in one of its own), fenced by the lease documents inside the transaction and
//! by the lease epoch stamped on each record; what a fenced-off sidecar wrote is kept in
//! `agent_state_conflicts`.

use super::codec::{
    bson_time, checkpoint_to_doc, get_str, get_u64, majority, message_to_doc, record_to_doc,
    set_on_insert, transfer_to_doc, transition_to_doc,
};
use super::{
    driver_err, threads, MongoStore, AGENT_LEASES, AGENT_STATES, AGENT_STATE_CONFLICTS,
    CHECKPOINTS, CONVERSATION_HISTORY, DUPLICATE_KEY, STATE_TRANSITIONS, THREAD_BLOBS,
    THREAD_CHECKPOINTS, THREAD_WRITES, TRANSFERS,
};
use crate::backlog::{FlushBatch, FlushItem};
use crate::model::{AgentRecord, Current, Effect, Op};
use crate::store::{StoreError, StoreResult};
use mongodb::ClientSession;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

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

/// Attempts of one flush transaction that keeps meeting concurrent writes, before the
/// error goes to the flusher (and its backoff).
const CONFLICT_ATTEMPTS: u32 = 5;

/// Runs `attempt` again, a little later each time, while MongoDB aborts it on a write
/// conflict (as the drivers' `withTransaction` does): another sidecar's flush, or this
/// sidecar renewing a lease the transaction checks, wrote a document it touches. An
/// aborted transaction wrote nothing, so running it again is safe.
async fn retry_conflicts<T, Fut>(mut attempt: impl FnMut() -> Fut) -> StoreResult<T>
where
    Fut: Future<Output = StoreResult<T>>,
{
    let mut pause = Duration::from_millis(5);
    for _ in 1..CONFLICT_ATTEMPTS {
        match attempt().await {
            Err(StoreError::Conflict(m)) => {
                tracing::debug!(error = %m, "flush transaction met a write conflict; running it again");
                tokio::time::sleep(pause.mul_f64(0.5 + rand::random::<f64>())).await;
                pause *= 2;
            }
            done => return done,
        }
    }
    attempt().await
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

/// Statements of one kind, gathered for one flush.
#[derive(Default)]
struct Writes {
    purge_states: Vec<Document>,
    purge_transitions: Vec<Document>,
    purge_messages: Vec<Document>,
    purge_checkpoints: Vec<Document>,
    /// Log entries, messages and checkpoints, as `$setOnInsert` upserts: inside a
    /// transaction a duplicate key would abort it, so a re-flush must not collide.
    transitions: Vec<Document>,
    messages: Vec<Document>,
    checkpoints: Vec<Document>,
    /// The records, written last, once their stored versions are known.
    records: Vec<Arc<AgentRecord>>,
    threads: threads::ThreadWrites,
}

impl Writes {
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
            self.records.push(Arc::clone(rec));
        }
        for t in &item.transitions {
            self.transitions.push(set_on_insert(&transition_to_doc(t)?));
        }
        for m in &item.messages {
            self.messages.push(set_on_insert(&message_to_doc(id, m)?));
        }
        for c in &item.checkpoints {
            self.checkpoints.push(set_on_insert(&checkpoint_to_doc(c)?));
        }
        Ok(())
    }
}

/// How a flush transaction ended.
enum Outcome {
    Committed,
    /// Aborted, nothing written: these agents' changes were made under a lease epoch this
    /// sidecar no longer holds (another sidecar took them over).
    LeaseLost(Vec<String>),
}

/// Stored `(version, lease epoch)` of agents, by id (epoch 0: stored without one).
type Stored = HashMap<String, (u64, u64)>;

/// Of `records`, the upserts of those not already stored (same epoch, same or newer
/// version), and the agents a newer epoch holds. Stored documents are ordered by
/// (lease epoch, version): a record replaces one written under an older epoch, or an
/// older version under its own.
fn record_upserts<'r>(
    records: impl IntoIterator<Item = &'r Arc<AgentRecord>>,
    stored: &Stored,
) -> StoreResult<(Vec<Document>, Vec<String>)> {
    let mut upserts = Vec::new();
    let mut newer = Vec::new();
    for r in records {
        match stored.get(&r.state.agent_id) {
            Some((_, epoch)) if *epoch > r.lease_epoch => newer.push(r.state.agent_id.clone()),
            Some((version, epoch)) if *epoch == r.lease_epoch && *version >= r.state.version => {}
            _ => upserts.push(
                doc! { "q": { "_id": &r.state.agent_id }, "u": record_to_doc(r)?, "upsert": true },
            ),
        }
    }
    Ok((upserts, newer))
}

impl MongoStore {
    /// Writes what it can of `batch`; returns what left the backlog (written, or kept
    /// aside in `agent_state_conflicts`), the agents kept aside, and the first error.
    ///
    /// Each transfer, then the rest of the batch, is one transaction which ends by
    /// checking, on the lease documents themselves, that `owner` still holds every agent
    /// under the epoch its changes were made with. A flush that outlasts its lease thus
    /// writes nothing: it cannot land after another sidecar took an agent over, and a
    /// take-over that comes while it commits waits for it. Agents whose lease was lost
    /// are kept aside and the rest is tried again.
    ///
    /// A transfer that fails (typically a WriteConflict with the still-open transaction
    /// of a sidecar killed mid-flush, which MongoDB keeps until its
    /// `transactionLifetimeLimitSeconds`) holds back only its own agents, so the rest of
    /// the backlog keeps flowing.
    pub async fn flush(
        &self,
        batch: FlushBatch,
        owner: Option<&str>,
    ) -> (FlushBatch, Vec<String>, Option<StoreError>) {
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
            match retry_conflicts(|| self.flush_transfer(&t.op, owner)).await {
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
        let mut items: Vec<FlushItem> = batch
            .items
            .into_iter()
            .filter(|i| !blocked.contains(&i.agent_id))
            .collect();
        // Each pass writes everything or sets aside at least one agent.
        while !items.is_empty() {
            let pending = &items;
            match retry_conflicts(|| self.flush_items(pending, owner)).await {
                Ok(Outcome::Committed) => {
                    written.items.append(&mut items);
                }
                Ok(Outcome::LeaseLost(lost)) => {
                    let (gone, rest): (Vec<FlushItem>, Vec<FlushItem>) =
                        items.into_iter().partition(|i| lost.contains(&i.agent_id));
                    items = rest;
                    let aside = FlushBatch {
                        transfers: Vec::new(),
                        items: gone,
                    };
                    if let Err(e) = self.keep_aside(&aside).await {
                        first_error.get_or_insert(e);
                        break;
                    }
                    fenced.extend(aside.items.iter().map(|i| i.agent_id.clone()));
                    written.items.extend(aside.items);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                    break;
                }
            }
        }
        (written, fenced, first_error)
    }

    /// The batch's agents' changes in one transaction.
    async fn flush_items(&self, items: &[FlushItem], owner: Option<&str>) -> StoreResult<Outcome> {
        let mut w = Writes::default();
        items.iter().try_for_each(|i| w.item(i))?;
        self.in_transaction(async |session| self.items_in(session, w, owner).await)
            .await
    }

    /// Runs `body` in a transaction on the store's transaction session, and aborts it
    /// unless `body` committed it.
    async fn in_transaction(
        &self,
        body: impl AsyncFnOnce(&mut ClientSession) -> StoreResult<Outcome>,
    ) -> StoreResult<Outcome> {
        let mut guard = self.transaction_session().await?;
        let session = guard.as_mut().expect("transaction_session starts one");
        // A flush cut off by its timeout leaves its transaction open on the session: the
        // start then fails, and the abort below ends that one for the next try.
        let started = session
            .start_transaction()
            .write_concern(majority())
            .await
            .map_err(driver_err);
        let result = match started {
            Ok(()) => body(session).await,
            Err(e) => Err(e),
        };
        if !matches!(result, Ok(Outcome::Committed)) {
            // Leave nothing open; an abort that fails only means there was no
            // transaction left to end.
            let _ = session.abort_transaction().await;
        }
        result
    }

    /// The end of a flush transaction: the lease check on `records`, then the commit.
    async fn commit_if_held(
        &self,
        session: &mut ClientSession,
        owner: Option<&str>,
        records: &[Arc<AgentRecord>],
    ) -> StoreResult<Outcome> {
        if let Some(owner) = owner {
            let lost = self.check_leases(session, owner, records).await?;
            if !lost.is_empty() {
                return Ok(Outcome::LeaseLost(lost));
            }
        }
        session.commit_transaction().await.map_err(driver_err)?;
        Ok(Outcome::Committed)
    }

    /// Purges first, so a delete followed by a re-creation in one batch leaves the new
    /// incarnation; then log entries, messages and checkpoints; thread blobs and writes
    /// before the thread checkpoints that name them; the records last; then the leases.
    async fn items_in(
        &self,
        session: &mut ClientSession,
        w: Writes,
        owner: Option<&str>,
    ) -> StoreResult<Outcome> {
        let purges = [
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
        ];
        self.write_steps(session, purges).await?;
        // Read after the purges (the transaction sees its own writes): a record that
        // replaces a purged incarnation is not "already there".
        let ids: Vec<&str> = w
            .records
            .iter()
            .map(|r| r.state.agent_id.as_str())
            .collect();
        let stored = self.stored_versions(session, &ids).await?;
        let (upserts, newer) = record_upserts(&w.records, &stored)?;
        if !newer.is_empty() {
            return Ok(Outcome::LeaseLost(newer));
        }
        let writes = [
            ("update", STATE_TRANSITIONS, "updates", w.transitions),
            ("update", CONVERSATION_HISTORY, "updates", w.messages),
            ("update", CHECKPOINTS, "updates", w.checkpoints),
            ("update", THREAD_BLOBS, "updates", w.threads.upsert_blobs),
            ("update", THREAD_WRITES, "updates", w.threads.upsert_writes),
            (
                "update",
                THREAD_CHECKPOINTS,
                "updates",
                w.threads.upsert_checkpoints,
            ),
            ("update", AGENT_STATES, "updates", upserts),
        ];
        self.write_steps(session, writes).await?;
        self.commit_if_held(session, owner, &w.records).await
    }

    /// Runs each `(command, collection, field, statements)` that has statements, in order,
    /// inside the transaction.
    async fn write_steps<const N: usize>(
        &self,
        session: &mut ClientSession,
        steps: [(&str, &str, &str, Vec<Document>); N],
    ) -> StoreResult<()> {
        for (command, collection, field, statements) in steps {
            if !statements.is_empty() {
                self.write(command, collection, field, statements, Some(&mut *session))
                    .await?;
            }
        }
        Ok(())
    }

    /// The documents of `collection` matching `filter`, read inside the transaction.
    async fn find_in(
        &self,
        session: &mut ClientSession,
        collection: &str,
        filter: Document,
        projection: Document,
    ) -> StoreResult<Vec<Document>> {
        let mut cursor = self
            .db
            .collection::<Document>(collection)
            .find(filter)
            .projection(projection)
            .session(&mut *session)
            .await
            .map_err(driver_err)?;
        let mut docs = Vec::new();
        while cursor.advance(&mut *session).await.map_err(driver_err)? {
            docs.push(cursor.deserialize_current().map_err(driver_err)?);
        }
        Ok(docs)
    }

    /// The stored `(version, lease epoch)` of `ids`, read inside the transaction.
    async fn stored_versions(
        &self,
        session: &mut ClientSession,
        ids: &[&str],
    ) -> StoreResult<Stored> {
        let mut stored = Stored::new();
        if ids.is_empty() {
            return Ok(stored);
        }
        let filter = doc! { "_id": { "$in": ids } };
        let projection = doc! { "version": 1, "lease_epoch": 1 };
        for d in self
            .find_in(session, AGENT_STATES, filter, projection)
            .await?
        {
            stored.insert(
                get_str(&d, "_id")?,
                (get_u64(&d, "version")?, get_u64(&d, "lease_epoch")?),
            );
        }
        Ok(stored)
    }

    /// The last statement of a flush transaction: marks each lease that `records` were
    /// made under, matching `{owner, epoch}`. A lease another sidecar took over no longer
    /// matches, so the transaction is abandoned; one it takes over after this write
    /// conflicts with the transaction, and waits for it to end. Returns the agents whose
    /// lease is lost (none: all held).
    async fn check_leases(
        &self,
        session: &mut ClientSession,
        owner: &str,
        records: &[Arc<AgentRecord>],
    ) -> StoreResult<Vec<String>> {
        // Epoch 0: written without a lease (the stored epoch above still orders it).
        let stamped: Vec<(&str, u64)> = records
            .iter()
            .filter(|r| r.lease_epoch > 0)
            .map(|r| (r.state.agent_id.as_str(), r.lease_epoch))
            .collect();
        if stamped.is_empty() {
            return Ok(Vec::new());
        }
        let now = bson_time(&chrono::Utc::now());
        let statements: Vec<Document> = stamped
            .iter()
            .map(|(id, epoch)| {
                doc! {
                    "q": { "_id": id, "owner": owner, "epoch": *epoch as i64 },
                    "u": { "$set": { "flushed_at": now } },
                }
            })
            .collect();
        let reply = self
            .db
            .run_command(doc! { "update": AGENT_LEASES, "updates": statements, "ordered": false })
            .session(&mut *session)
            .await
            .map_err(driver_err)?;
        let matched = get_u64(&reply, "n")?;
        if matched == stamped.len() as u64 {
            return Ok(Vec::new());
        }
        let ids: Vec<&str> = stamped.iter().map(|(id, _)| *id).collect();
        let mut held: HashMap<String, (String, u64)> = HashMap::new();
        let filter = doc! { "_id": { "$in": &ids } };
        for d in self.find_in(session, AGENT_LEASES, filter, doc! {}).await? {
            held.insert(
                get_str(&d, "_id")?,
                (get_str(&d, "owner")?, get_u64(&d, "epoch")?),
            );
        }
        let lost: Vec<String> = stamped
            .iter()
            .filter(|(id, epoch)| !held.get(*id).is_some_and(|(o, e)| o == owner && e == epoch))
            .map(|(id, _)| id.to_string())
            .collect();
        if lost.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "the lease check matched {matched} of {} leases, yet all read as held; retry",
                stamped.len()
            )));
        }
        Ok(lost)
    }

    /// One transfer in one transaction, checked against its agents' leases like any
    /// flush. Nothing in it may collide (a duplicate key aborts a transaction): log
    /// entries, messages and the transfer's record are `$setOnInsert` upserts, which do
    /// nothing if the document is already there, so a re-flush after a crash is a no-op.
    /// If any of its agents is held by another lease, none of it is written and its
    /// records are kept aside.
    async fn flush_transfer(&self, op: &Op, owner: Option<&str>) -> StoreResult<Vec<String>> {
        let Op::Transfer { transfer, .. } = op else {
            return Ok(Vec::new());
        };
        let mut records = Vec::new();
        let mut inserts: Vec<(&str, Document)> = Vec::new();
        let mut failed = Ok(());
        op.for_each_effect(&mut |e| {
            let doc = match e {
                Effect::Record(r) => {
                    records.push(Arc::clone(r));
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

        let result = self
            .in_transaction(async |session| {
                self.transfer_in(session, &records, inserts, owner).await
            })
            .await;
        match result? {
            Outcome::Committed => Ok(Vec::new()),
            Outcome::LeaseLost(_) => {
                let mut fenced = Vec::new();
                for r in &records {
                    self.keep_conflict(r, &Aside::default()).await?;
                    fenced.push(r.state.agent_id.clone());
                }
                Ok(fenced)
            }
        }
    }

    async fn transfer_in(
        &self,
        session: &mut ClientSession,
        records: &[Arc<AgentRecord>],
        inserts: Vec<(&str, Document)>,
        owner: Option<&str>,
    ) -> StoreResult<Outcome> {
        // An imported transfer comes without records: nothing to read.
        let ids: Vec<&str> = records.iter().map(|r| r.state.agent_id.as_str()).collect();
        let stored = self.stored_versions(session, &ids).await?;
        let (upserts, newer) = record_upserts(records, &stored)?;
        if !newer.is_empty() {
            return Ok(Outcome::LeaseLost(newer));
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
        self.commit_if_held(session, owner, records).await
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
            self.keep_conflict(rec, &docs).await?;
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
                self.keep_conflict(rec, docs).await?;
            }
        }
        Ok(())
    }

    /// Keeps a fenced record, with what else its flush carried, in
    /// `agent_state_conflicts` for an operator to look at.
    async fn keep_conflict(&self, rec: &AgentRecord, aside: &Aside) -> StoreResult<()> {
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
            None,
        )
        .await
    }

    /// Runs a multi-statement write, in commands of at most [`COMMAND_BYTES_MAX`]
    /// (MongoDB refuses a command over 16 MiB). Outside a transaction a duplicate key
    /// counts as success (the document is there already); inside one, where it would
    /// abort the transaction, nothing written may collide.
    async fn write(
        &self,
        command: &str,
        collection: &str,
        field: &str,
        statements: Vec<Document>,
        mut session: Option<&mut ClientSession>,
    ) -> StoreResult<()> {
        for chunk in command_chunks(statements) {
            self.write_command(command, collection, field, chunk, session.as_deref_mut())
                .await?;
        }
        Ok(())
    }

    /// One write command.
    async fn write_command(
        &self,
        command: &str,
        collection: &str,
        field: &str,
        statements: Vec<Document>,
        session: Option<&mut ClientSession>,
    ) -> StoreResult<()> {
        let mut cmd = Document::new();
        cmd.insert(command, collection);
        cmd.insert(field, statements);
        cmd.insert("ordered", false);
        let in_transaction = session.is_some();
        let reply = match session {
            // Inside a transaction the write concern is the transaction's.
            Some(s) => self.db.run_command(cmd).session(s).await,
            None => {
                cmd.insert("writeConcern", doc! { "w": "majority", "j": true });
                self.db.run_command(cmd).await
            }
        }
        .map_err(driver_err)?;
        if let Ok(errors) = reply.get_array("writeErrors") {
            for e in errors {
                let code = e.as_document().and_then(|d| d.get_i32("code").ok());
                if in_transaction || code != Some(DUPLICATE_KEY) {
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
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use mongodb::bson::{doc, Document};

    use super::{command_chunks, retry_conflicts, COMMAND_BYTES_MAX, CONFLICT_ATTEMPTS};
    use crate::store::StoreError;

    /// An attempt that meets a conflict `conflicts` times, then ends with `then`
    /// (None: success).
    fn attempts(
        conflicts: u32,
        mut then: Option<StoreError>,
        tried: &Cell<u32>,
    ) -> impl FnMut() -> std::future::Ready<Result<(), StoreError>> + '_ {
        move || {
            tried.set(tried.get() + 1);
            std::future::ready(if tried.get() <= conflicts {
                Err(StoreError::Conflict("WriteConflict".into()))
            } else {
                then.take().map_or(Ok(()), Err)
            })
        }
    }

    #[tokio::test]
    async fn a_transaction_that_meets_conflicts_runs_again() {
        let tried = Cell::new(0);
        let done = retry_conflicts(attempts(CONFLICT_ATTEMPTS - 1, None, &tried)).await;
        assert!(done.is_ok(), "{done:?}");
        assert_eq!(tried.get(), CONFLICT_ATTEMPTS);

        let tried = Cell::new(0);
        let rejected = Some(StoreError::Rejected("x".into()));
        let done = retry_conflicts(attempts(2, rejected, &tried)).await;
        assert!(matches!(done, Err(StoreError::Rejected(_))));
        assert_eq!(tried.get(), 3);

        // Another error is not a conflict: no second attempt.
        let tried = Cell::new(0);
        let done = retry_conflicts(attempts(
            0,
            Some(StoreError::Unavailable("down".into())),
            &tried,
        ))
        .await;
        assert!(matches!(done, Err(StoreError::Unavailable(_))));
        assert_eq!(tried.get(), 1);

        // Conflicts every time: the last one goes to the flusher.
        let tried = Cell::new(0);
        let done = retry_conflicts(attempts(u32::MAX, None, &tried)).await;
        assert!(matches!(done, Err(StoreError::Conflict(_))));
        assert_eq!(tried.get(), CONFLICT_ATTEMPTS);
    }

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
