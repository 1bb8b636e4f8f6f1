//! Per-agent ownership leases in `agent_leases`.

use super::codec::{bson_time, get_str, get_time, get_u64, majority};
use super::{driver_err, is_duplicate, MongoStore, AGENT_LEASES};
use crate::store::{StoreError, StoreResult};
use std::collections::HashMap;
use std::time::Duration;

use mongodb::bson::{doc, Document};

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

impl MongoStore {
    /// Renews this sidecar's leases on `agent_ids` (those it still owns, expired or
    /// not), and returns each lease's owner and epoch.
    pub async fn renew_leases(
        &self,
        agent_ids: &[&str],
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<HashMap<String, (String, u64)>> {
        self.ensure_schema().await?;
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
        self.ensure_schema().await?;
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
}
