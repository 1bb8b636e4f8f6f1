//! Listings the inspector pages through: agents by filter, threads, an agent's transfers.

use agentstate_protocol::{AgentSummary, ThreadSummary};
use mongodb::bson::{doc, Document};

use super::codec::{bson_time, get_opt_str, get_str, get_time, get_u64, transfer_from_doc};
use super::threads::THREAD_CHECKPOINTS;
use super::{driver_err, MongoStore, AGENT_STATES, STATE_TRANSITIONS, TRANSFERS};
use crate::model::Transfer;
use crate::store::{AgentFilter, StoreResult};

/// Agents read per round while looking for ones with refused transitions.
const FAILED_SCAN_ROUND: i64 = 1000;
/// Rounds a page may take before it answers short (its cursor goes on from there).
const FAILED_SCAN_ROUNDS: usize = 20;

/// `_id` after `after` and within `prefix`.
fn id_range(after: &str, prefix: &str) -> Document {
    let (from, to) = crate::store::id_range(after, prefix);
    doc! { "$gte": from, "$lt": to }
}

fn summary(d: &Document) -> StoreResult<AgentSummary> {
    Ok(AgentSummary {
        agent_id: get_str(d, "_id")?,
        agent_type: get_opt_str(d, "agent_type"),
        state_name: get_str(d, "state_name")?,
        version: get_u64(d, "version")?,
        created_at: get_time(d, "created_at")?,
        updated_at: get_time(d, "updated_at")?,
        pending: d.get_document("pending_transition").is_ok(),
    })
}

impl MongoStore {
    pub async fn agent_summaries(
        &self,
        f: &AgentFilter,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<AgentSummary>> {
        let mut filter = doc! { "_id": id_range(after, &f.prefix) };
        if let Some(s) = &f.state {
            filter.insert("state_name", s);
        }
        if let Some(t) = &f.agent_type {
            filter.insert("agent_type", t);
        }
        if let Some(t) = &f.updated_after {
            filter.insert("updated_at", doc! { "$gt": bson_time(t) });
        }
        let projection = doc! {
            "agent_type": 1, "state_name": 1, "version": 1, "created_at": 1,
            "updated_at": 1, "pending_transition.id": 1,
        };
        let coll = self.db.collection::<Document>(AGENT_STATES);
        if !f.failed {
            let mut cursor = coll
                .find(filter)
                .sort(doc! { "_id": 1 })
                .projection(projection)
                .limit(i64::from(limit))
                .await
                .map_err(driver_err)?;
            let mut out = Vec::new();
            while cursor.advance().await.map_err(driver_err)? {
                out.push(summary(&cursor.deserialize_current().map_err(driver_err)?)?);
            }
            return Ok(out);
        }
        // Refused transitions live in another collection: read candidates a round at a
        // time and keep those with one.
        let mut out = Vec::new();
        let mut from = after.to_string();
        for _ in 0..FAILED_SCAN_ROUNDS {
            filter.insert("_id", id_range(&from, &f.prefix));
            let mut cursor = coll
                .find(filter.clone())
                .sort(doc! { "_id": 1 })
                .projection(projection.clone())
                .limit(FAILED_SCAN_ROUND)
                .await
                .map_err(driver_err)?;
            let mut round = Vec::new();
            while cursor.advance().await.map_err(driver_err)? {
                round.push(summary(&cursor.deserialize_current().map_err(driver_err)?)?);
            }
            let Some(last) = round.last().map(|s| s.agent_id.clone()) else {
                break;
            };
            let ids: Vec<String> = round.iter().map(|s| s.agent_id.clone()).collect();
            let failed = self.with_failures(&ids).await?;
            for s in round {
                if failed.contains(&s.agent_id) {
                    out.push(s);
                    if out.len() >= limit as usize {
                        return Ok(out);
                    }
                }
            }
            from = last;
        }
        Ok(out)
    }

    /// Which of `ids` have a refused transition stored.
    pub async fn with_failures(&self, ids: &[String]) -> StoreResult<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found = self
            .db
            .collection::<Document>(STATE_TRANSITIONS)
            .distinct(
                "agent_id",
                doc! { "agent_id": { "$in": ids }, "success": false },
            )
            .await
            .map_err(driver_err)?;
        Ok(found
            .into_iter()
            .filter_map(|b| b.as_str().map(str::to_string))
            .collect())
    }

    pub async fn thread_summaries(
        &self,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<ThreadSummary>> {
        let pipeline = [
            doc! { "$match": { "thread_id": id_range(after, prefix) } },
            doc! { "$group": {
                "_id": "$thread_id",
                "n": { "$sum": 1 },
                "latest": { "$max": "$checkpoint_id" },
            } },
            doc! { "$sort": { "_id": 1 } },
            doc! { "$limit": i64::from(limit) },
        ];
        let mut cursor = self
            .db
            .collection::<Document>(THREAD_CHECKPOINTS)
            .aggregate(pipeline)
            .await
            .map_err(driver_err)?;
        let mut out = Vec::new();
        while cursor.advance().await.map_err(driver_err)? {
            let d = cursor.deserialize_current().map_err(driver_err)?;
            out.push(ThreadSummary {
                thread_id: get_str(&d, "_id")?,
                checkpoints: get_u64(&d, "n")?,
                latest_checkpoint_id: get_str(&d, "latest")?,
            });
        }
        Ok(out)
    }

    pub async fn transfers_of(
        &self,
        agent: &str,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<Transfer>> {
        self.find_many(
            TRANSFERS,
            doc! {
                "_id": { "$gt": after },
                "$or": [{ "from_agent": agent }, { "to_agent": agent }],
            },
            doc! { "_id": 1 },
            Some(i64::from(limit)),
        )
        .await?
        .iter()
        .map(transfer_from_doc)
        .collect()
    }
}
