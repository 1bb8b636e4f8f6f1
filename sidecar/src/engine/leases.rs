//! Ownership of agents on a shared backend (MongoDB): a sidecar writes an agent only
//! under its lease, and stamps the records with the lease's epoch, so a flush from a
//! sidecar that lost the lease is fenced off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backlog::{FlushBatch, FlushItem};
use crate::model::{Current, Op};
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

    /// Before a write reads the agent it changes: makes sure this sidecar owns the agent,
    /// and that what it knows of the agent is what the backend holds.
    ///
    /// Under the epoch this sidecar already wrote the agent with, nobody else can have
    /// written it since. Under a new one (a take-over, or its first write after a
    /// restart) its copy may be stale: the cached copy is dropped, so the write builds on
    /// the backend's. Unflushed changes it still holds from an earlier lease are another
    /// owner's past: the write is refused (503, retry) until the flusher has set them
    /// aside in `agent_state_conflicts`.
    pub(super) async fn own(&self, agent_id: &str) -> EngineResult<()> {
        let Some(lease) = &self.opts.lease else {
            return Ok(());
        };
        let held = self.leases.get(agent_id).map(|(epoch, _)| epoch);
        let epoch = self.lease(agent_id, lease).await?;
        let unflushed = self.backlog.get(agent_id);
        let view = unflushed.clone().or_else(|| self.cache.get(agent_id));
        let view_epoch = view.as_ref().and_then(Current::live).map(|r| r.lease_epoch);
        if held == Some(epoch) || view_epoch == Some(epoch) {
            return Ok(());
        }
        if unflushed.is_some() {
            self.flush_now.notify_one();
            return Err(EngineError::Unavailable(format!(
                "agent {agent_id} changed owners while this sidecar held unflushed changes to it from an earlier lease; they are being set aside in agent_state_conflicts, retry"
            )));
        }
        self.cache.invalidate(agent_id);
        self.thread_heads.invalidate(agent_id);
        Ok(())
    }

    /// Before a flush: takes out of `batch` what this sidecar wrote under a lease it no
    /// longer holds (another sidecar took the agent over, or it did itself under a newer
    /// epoch), to be kept aside instead of written. The leases of the rest are renewed
    /// when less than half is left, so the flush runs inside them.
    pub(crate) async fn fence(&self, batch: &mut FlushBatch) -> Result<Vec<FlushItem>, StoreError> {
        let Some(lease) = &self.opts.lease else {
            return Ok(Vec::new());
        };
        let now = Instant::now();
        let epoch_of = |item: &FlushItem| match &item.current {
            // Epoch 0: written without a lease (the fence in the backend still applies).
            Some(Current::Live(r)) if r.lease_epoch > 0 => Some(r.lease_epoch),
            _ => None,
        };
        let unsure: Vec<&str> = batch
            .items
            .iter()
            .filter(|item| {
                epoch_of(item).is_some_and(|epoch| {
                    !matches!(self.leases.get(&item.agent_id),
                        Some((e, until)) if e == epoch && until > now + lease.ttl / 2)
                })
            })
            .map(|item| item.agent_id.as_str())
            .collect();
        if unsure.is_empty() {
            return Ok(Vec::new());
        }
        let held = self
            .store
            .renew_leases(&unsure, &lease.owner, lease.ttl)
            .await?;
        let unsure: std::collections::HashSet<String> =
            unsure.into_iter().map(str::to_string).collect();
        let mut aside = Vec::new();
        for item in std::mem::take(&mut batch.items) {
            let epoch = epoch_of(&item).filter(|_| unsure.contains(&item.agent_id));
            let Some(epoch) = epoch else {
                batch.items.push(item);
                continue;
            };
            match held.get(&item.agent_id) {
                Some((owner, e)) if *owner == lease.owner && *e == epoch => {
                    self.leases
                        .insert(item.agent_id.clone(), (epoch, now + lease.ttl * 4 / 5));
                    batch.items.push(item);
                }
                _ => aside.push(item),
            }
        }
        Ok(aside)
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
            // While the backend is down, trying to renew would only make the write wait
            // for its timeout; the epoch still fences the write at flush time.
            if until > now + lease.ttl / 2 || !self.flush_status().backend_reachable {
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
                self.forget(agent_id);
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
