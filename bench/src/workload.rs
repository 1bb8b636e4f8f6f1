//! Simulated agents: the same conversation run through the sidecar or written straight
//! to MongoDB, which is what the sidecar replaces ("every agent writes to Mongo on every
//! step").
//!
//! One cycle is a Greeter conversation from the example agent types
//! (`protocol/examples/agent-types.toml`): create the greeter (`idle`), the first user
//! message moves it to `greeting` (its schema needs `user_name`), then a few turns of
//! {append the exchange, load, save, `greeting -> greeting`}, and finally a transfer to a
//! new haiku agent (`handoff`; the haiku is created and moved by `request`).
//!
//! Direct MongoDB writes use `w: 1, j: true`: one upsert per save, one insert per message
//! batch, the state update plus a log insert per transition, and for a transfer the two
//! state writes, the transfer record, the log entries and the copied messages. Without
//! the sidecar those are separate writes (no transaction), which flatters MongoDB.
//!
//! Hazard: a client stops at the deadline even mid-cycle, so a run's length does not
//! depend on how slow a cycle is.

use std::future::Future;
use std::time::{Duration, Instant};

use agentstate_protocol::{
    Client, NewMessage, SaveStateRequest, StatePersistence, TransferRequest, TransitionRequest,
};
use mongodb::bson::{self, doc, Document};
use mongodb::options::{Acknowledgment, CollectionOptions, WriteConcern};
use serde_json::{json, Value};

use crate::sample;
use crate::stats::Recorder;

/// Turns of the conversation per cycle, between the first message and the hand-off.
pub const TURNS: u64 = 3;

pub const OP_SAVE: &str = "save";
pub const OP_TRANSITION: &str = "transition";
pub const OP_APPEND: &str = "append";
pub const OP_LOAD: &str = "load";
pub const OP_TRANSFER: &str = "transfer";
/// The operations of a cycle, in report order.
pub const MIX_OPS: [&str; 5] = [OP_SAVE, OP_TRANSITION, OP_APPEND, OP_LOAD, OP_TRANSFER];

/// Where a simulated agent keeps its state.
#[derive(Clone)]
pub enum Target {
    Sidecar(Client),
    Mongo(mongodb::Database),
}

/// What a run measured, and how long it took.
pub struct RunResult {
    pub rec: Recorder,
    pub elapsed: Duration,
}

impl RunResult {
    pub fn ops_per_sec(&self) -> f64 {
        self.rec.total_ops() as f64 / self.elapsed.as_secs_f64()
    }

    pub fn op_per_sec(&self, op: &str) -> f64 {
        self.rec.ops.get(op).map_or(0, |h| h.len()) as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs `clients` tasks of `client(i, deadline)` until `duration` has passed, then merges
/// their recorders.
pub async fn run_clients<F, Fut>(clients: usize, duration: Duration, client: F) -> RunResult
where
    F: Fn(usize, Instant) -> Fut,
    Fut: Future<Output = Recorder> + Send + 'static,
{
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|i| tokio::spawn(client(i, deadline)))
        .collect();
    let mut rec = Recorder::default();
    for t in tasks {
        match t.await {
            Ok(r) => rec.merge(r),
            Err(e) => rec.error("client task", e),
        }
    }
    RunResult {
        rec,
        elapsed: started.elapsed(),
    }
}

/// A `w: 1, j: true` collection handle: acknowledged once in the server's journal.
fn journaled(db: &mongodb::Database, name: &str) -> mongodb::Collection<Document> {
    let wc = WriteConcern::builder()
        .w(Acknowledgment::Nodes(1))
        .journal(true)
        .build();
    db.collection_with_options(name, CollectionOptions::builder().write_concern(wc).build())
}

fn to_doc(v: &Value) -> Document {
    match bson::to_bson(v) {
        Ok(bson::Bson::Document(d)) => d,
        Ok(other) => doc! { "value": other },
        Err(_) => Document::new(),
    }
}

fn now_bson() -> bson::DateTime {
    bson::DateTime::now()
}

impl Target {
    pub async fn save(
        &self,
        id: &str,
        agent_type: &str,
        state: &str,
        data: &Value,
    ) -> anyhow::Result<()> {
        match self {
            Target::Sidecar(c) => {
                let req = SaveStateRequest {
                    agent_type: Some(agent_type.into()),
                    state_name: state.into(),
                    state_data: Some(data.clone()),
                    metadata: None,
                };
                c.save_state(id, &req, None).await?;
            }
            Target::Mongo(db) => {
                journaled(db, "agent_states")
                    .update_one(
                        doc! { "_id": id },
                        doc! {
                            "$set": {
                                "agent_type": agent_type, "state_name": state,
                                "state_data": to_doc(data), "updated_at": now_bson(),
                            },
                            "$inc": { "version": 1_i64 },
                            "$setOnInsert": { "created_at": now_bson() },
                        },
                    )
                    .upsert(true)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn transition(
        &self,
        id: &str,
        from: &str,
        to: &str,
        trigger: &str,
        data: Option<&Value>,
        seq: u64,
    ) -> anyhow::Result<()> {
        match self {
            Target::Sidecar(c) => {
                let req = TransitionRequest {
                    to_state: to.into(),
                    trigger: trigger.into(),
                    state_data: data.cloned(),
                };
                c.record_transition(id, &req).await?;
            }
            Target::Mongo(db) => {
                let mut set = doc! { "state_name": to, "updated_at": now_bson() };
                if let Some(d) = data {
                    set.insert("state_data", to_doc(d));
                }
                journaled(db, "agent_states")
                    .update_one(
                        doc! { "_id": id },
                        doc! { "$set": set, "$inc": { "version": 1_i64 } },
                    )
                    .await?;
                journaled(db, "state_transitions")
                    .insert_one(doc! {
                        "agent_id": id, "seq": seq as i64, "from_state": from,
                        "to_state": to, "trigger": trigger, "timestamp": now_bson(),
                        "success": true,
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// Appends `messages` (role, content) after `seq_before`.
    pub async fn append(
        &self,
        id: &str,
        messages: &[(&str, &str)],
        seq_before: u64,
    ) -> anyhow::Result<()> {
        match self {
            Target::Sidecar(c) => {
                let msgs = messages
                    .iter()
                    .map(|(role, content)| NewMessage {
                        role: role.to_string(),
                        content: content.to_string(),
                        metadata: Default::default(),
                    })
                    .collect();
                c.append_messages(id, msgs, None).await?;
            }
            Target::Mongo(db) => {
                let docs = messages.iter().enumerate().map(|(i, (role, content))| {
                    let seq = seq_before + 1 + i as u64;
                    doc! {
                        "_id": format!("{id}:{seq}"), "agent_id": id, "seq": seq as i64,
                        "role": *role, "content": *content, "timestamp": now_bson(),
                    }
                });
                journaled(db, "conversation_history")
                    .insert_many(docs)
                    .await?;
            }
        }
        Ok(())
    }

    pub async fn load(&self, id: &str) -> anyhow::Result<()> {
        let found = match self {
            Target::Sidecar(c) => c.load_state(id).await?.is_some(),
            Target::Mongo(db) => db
                .collection::<Document>("agent_states")
                .find_one(doc! { "_id": id })
                .await?
                .is_some(),
        };
        anyhow::ensure!(found, "agent {id} not found");
        Ok(())
    }

    /// Hands `from`'s conversation to a new haiku agent `to`.
    pub async fn transfer(
        &self,
        transfer_id: &str,
        from: &str,
        to: &str,
        context: &Value,
        from_seq: u64,
    ) -> anyhow::Result<()> {
        match self {
            Target::Sidecar(c) => {
                c.transfer(&TransferRequest {
                    transfer_id: transfer_id.into(),
                    from_agent: from.into(),
                    to_agent: to.into(),
                    trigger: "handoff".into(),
                    to_trigger: Some("request".into()),
                    to_agent_type: Some("haiku".into()),
                    context: None,
                    messages_max: None,
                })
                .await?;
            }
            Target::Mongo(db) => {
                let states = journaled(db, "agent_states");
                states
                    .update_one(
                        doc! { "_id": from },
                        doc! { "$set": { "state_name": "transferring", "updated_at": now_bson() },
                        "$inc": { "version": 1_i64 } },
                    )
                    .await?;
                states
                    .update_one(
                        doc! { "_id": to },
                        doc! {
                            "$set": {
                                "agent_type": "haiku", "state_name": "composing",
                                "conversation_context": to_doc(context), "updated_at": now_bson(),
                            },
                            "$inc": { "version": 2_i64 },
                            "$setOnInsert": { "created_at": now_bson() },
                        },
                    )
                    .upsert(true)
                    .await?;
                journaled(db, "state_transitions")
                    .insert_many([
                        doc! { "agent_id": from, "seq": from_seq as i64, "from_state": "greeting",
                        "to_state": "transferring", "trigger": "handoff",
                        "timestamp": now_bson(), "success": true },
                        doc! { "agent_id": to, "seq": 1_i64, "from_state": "idle",
                        "to_state": "composing", "trigger": "request",
                        "timestamp": now_bson(), "success": true },
                    ])
                    .await?;
                let history = journaled(db, "conversation_history");
                let mut copied = Vec::new();
                let mut cursor = history.find(doc! { "agent_id": from }).await?;
                while cursor.advance().await? {
                    let mut m = cursor.deserialize_current()?;
                    let seq = m.get_i64("seq").unwrap_or(0);
                    m.insert("_id", format!("{to}:{seq}"));
                    m.insert("agent_id", to);
                    copied.push(m);
                }
                if !copied.is_empty() {
                    history.insert_many(copied).await?;
                }
                journaled(db, "transfers")
                    .insert_one(doc! {
                        "_id": transfer_id, "from_agent": from, "to_agent": to,
                        "trigger": "handoff", "to_trigger": "request",
                        "context": to_doc(context), "created_at": now_bson(),
                    })
                    .await?;
            }
        }
        Ok(())
    }
}

/// One client of the mixed workload: Greeter conversations until `deadline`.
/// `tag` keeps agent ids unique across runs on the same server.
pub async fn mix_client(
    target: Target,
    tag: String,
    client: usize,
    deadline: Instant,
    state_bytes: usize,
) -> Recorder {
    let mut rec = Recorder::default();
    let data = sample::state_data(state_bytes);
    let mut cycle = 0u64;
    let user = "Hi, I'm Ada. Could you write me a haiku about autumn moonlight?";
    let reply = "Hello, Ada! Let me find the right agent for that.";
    'cycles: while Instant::now() < deadline {
        let g = format!("{tag}-g-{client}-{cycle}");
        let h = format!("{tag}-h-{client}-{cycle}");
        cycle += 1;
        macro_rules! step {
            ($op:expr, $fut:expr) => {
                if rec.time($op, $fut).await.is_none() || Instant::now() >= deadline {
                    continue 'cycles;
                }
            };
        }
        step!(OP_SAVE, target.save(&g, "greeter", "idle", &json!({})));
        step!(
            OP_TRANSITION,
            target.transition(&g, "idle", "greeting", "user_message", Some(&data), 1)
        );
        let mut msg_seq = 0;
        for turn in 0..TURNS {
            step!(
                OP_APPEND,
                target.append(&g, &[("user", user), ("assistant", reply)], msg_seq)
            );
            msg_seq += 2;
            step!(OP_LOAD, target.load(&g));
            step!(OP_SAVE, target.save(&g, "greeter", "greeting", &data));
            step!(
                OP_TRANSITION,
                target.transition(&g, "greeting", "greeting", "user_message", None, turn + 2)
            );
        }
        step!(
            OP_TRANSFER,
            target.transfer(&format!("{g}-to-{h}"), &g, &h, &data, TURNS + 2)
        );
    }
    rec
}

/// One client that saves agent `id_of(client, k)` for k = 0, 1, ... until `deadline`.
pub async fn save_client(
    client: Client,
    i: usize,
    deadline: Instant,
    req: SaveStateRequest,
    id_of: impl Fn(usize, u64) -> String,
) -> Recorder {
    let mut rec = Recorder::default();
    let mut k = 0;
    while Instant::now() < deadline {
        let id = id_of(i, k);
        rec.time(OP_SAVE, client.save_state(&id, &req, None)).await;
        k += 1;
    }
    rec
}

/// One client that loads agents of `ids`, round robin from its own offset, until
/// `deadline`.
pub async fn load_client(
    client: Client,
    i: usize,
    deadline: Instant,
    ids: Vec<String>,
) -> Recorder {
    let mut rec = Recorder::default();
    let mut k = i;
    while Instant::now() < deadline {
        let id = &ids[k % ids.len()];
        let load = async {
            match client.load_state(id).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(anyhow::anyhow!("agent {id} not found")),
                Err(e) => Err(anyhow::Error::from(e)),
            }
        };
        rec.time(OP_LOAD, load).await;
        k += 1;
    }
    rec
}
