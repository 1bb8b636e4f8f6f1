//! What the database holds per collection (`collStats`) and the agents holding the most.

use super::{
    driver_err, threads, MongoStore, AGENT_STATES, CHECKPOINTS, CONVERSATION_HISTORY,
    STATE_TRANSITIONS, TRANSFERS,
};
use crate::store::StoreResult;
use agentstate_protocol::{AgentUsage, TableUsage};
use std::collections::HashMap;

use mongodb::bson::{doc, Document};

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

impl MongoStore {
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
}
