//! Retention: TTL indexes for age limits, count limits per agent, threads to thin.

use super::codec::{bson_time, get_str};
use super::{
    driver_err, threads, MongoStore, CHECKPOINTS, CONVERSATION_HISTORY, STATE_TRANSITIONS,
    THREAD_CHECKPOINTS,
};
use crate::config::RetentionPolicy;
use crate::store::{cutoff, Retained, StoreResult};
use mongodb::bson::{doc, Bson, Document};

impl MongoStore {
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
}
