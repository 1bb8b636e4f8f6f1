//! Ownership of agents on a shared backend (MongoDB): a sidecar writes an agent only
//! under its lease, and stamps the records with the lease's epoch, so a flush from a
//! sidecar that lost the lease is fenced off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::Op;
use crate::store::mongo::Lease;
use crate::store::StoreError;

use super::{Engine, EngineError, EngineResult};

pub struct LeaseOptions {
    /// Stable across restarts (kept in the data dir), so a restarted sidecar keeps its
    /// leases.
    pub owner: String,
    pub ttl: Duration,
}

impl Engine {
    /// Makes sure this sidecar owns every agent `op` writes, and stamps the records with
    /// the lease epochs (checked again by every flush).
    pub(super) async fn stamp_leases(&self, op: &mut Op) -> EngineResult<()> {
        let Some(lease) = &self.opts.lease else {
            return Ok(());
        };
        let mut epochs: HashMap<String, u64> = HashMap::new();
        for record in op.records_mut() {
            let id = &record.state.agent_id;
            let epoch = match epochs.get(id) {
                Some(e) => *e,
                None => {
                    let e = self.lease(id, lease).await?;
                    epochs.insert(id.clone(), e);
                    e
                }
            };
            Arc::make_mut(record).lease_epoch = epoch;
        }
        Ok(())
    }

    /// Takes or renews this sidecar's lease on `agent_id`, where leases are used: for
    /// writes with no record to stamp (the first records of a large import).
    pub(super) async fn hold_lease(&self, agent_id: &str) -> EngineResult<()> {
        match &self.opts.lease {
            None => Ok(()),
            Some(lease) => self.lease(agent_id, lease).await.map(|_| ()),
        }
    }

    /// This sidecar's lease epoch for `agent_id`, renewed once half of it has passed.
    async fn lease(&self, agent_id: &str, lease: &LeaseOptions) -> EngineResult<u64> {
        let now = Instant::now();
        let cached = self.leases.get(agent_id);
        if let Some((epoch, until)) = cached {
            if until > now + lease.ttl / 2 {
                return Ok(epoch);
            }
        }
        match self
            .store
            .acquire_lease(agent_id, &lease.owner, lease.ttl)
            .await
        {
            Ok(Lease::Held { epoch }) => {
                // Trust it a little less long than MongoDB does, for clock skew.
                self.leases
                    .insert(agent_id.to_string(), (epoch, now + lease.ttl * 4 / 5));
                Ok(epoch)
            }
            Ok(Lease::Taken { owner, expires_at }) => {
                self.leases.invalidate(agent_id);
                Err(EngineError::Fenced(format!(
                    "agent {agent_id} is owned by sidecar {owner} (lease until {expires_at}); this sidecar may write it once that lease expires"
                )))
            }
            // The backend is down: the epoch this sidecar last held still fences its
            // writes at flush time, so keep accepting them (an agent it never owned is
            // refused: its version is unknown anyway).
            Err(StoreError::Unavailable(m)) => match cached {
                Some((epoch, _)) => Ok(epoch),
                None => Err(EngineError::Unavailable(format!(
                    "cannot confirm ownership of agent {agent_id}: {m}"
                ))),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Drops what this sidecar remembers of an agent another sidecar owns now.
    pub(crate) fn forget(&self, agent_id: &str) {
        self.cache.invalidate(agent_id);
        self.thread_heads.invalidate(agent_id);
        self.leases.invalidate(agent_id);
    }
}
