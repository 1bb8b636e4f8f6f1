//! Ownership of agents on a shared backend (MongoDB): a sidecar writes an agent only
//! under its lease, and stamps the records with the lease's epoch, so a flush from a
//! sidecar that lost the lease is fenced off.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backlog::{FlushBatch, FlushItem, PendingTransfer};
use crate::model::{Current, Effect, Op};
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
    /// epoch), to be kept aside instead of written; a transfer goes aside whole if any
    /// of its agents does. The leases of the rest are renewed when less than half is
    /// left, so the flush runs inside them.
    pub(crate) async fn fence(&self, batch: &mut FlushBatch) -> Result<FlushBatch, StoreError> {
        let mut aside = FlushBatch::default();
        let Some(lease) = &self.opts.lease else {
            return Ok(aside);
        };
        let now = Instant::now();
        // (agent, epoch) of every record in the batch; epoch 0: written without a lease
        // (the fence in the backend still applies).
        let mut stamps: Vec<(String, u64)> = Vec::new();
        for item in &batch.items {
            if let Some(Current::Live(r)) = &item.current {
                stamps.push((item.agent_id.clone(), r.lease_epoch));
            }
        }
        for t in &batch.transfers {
            t.op.for_each_effect(&mut |e| {
                if let Effect::Record(r) = e {
                    stamps.push((r.state.agent_id.clone(), r.lease_epoch));
                }
            });
        }
        let sure = |(id, epoch): &(String, u64)| {
            *epoch == 0
                || matches!(self.leases.get(id),
                    Some((e, until)) if e == *epoch && until > now + lease.ttl / 2)
        };
        let unsure: Vec<&(String, u64)> = stamps.iter().filter(|s| !sure(s)).collect();
        if unsure.is_empty() {
            return Ok(aside);
        }
        let ids: Vec<&str> = unsure.iter().map(|(id, _)| id.as_str()).collect();
        let held = self
            .store
            .renew_leases(&ids, &lease.owner, lease.ttl)
            .await?;
        // What was written under another epoch than the one this sidecar holds now.
        let mut lost: HashSet<(&str, u64)> = HashSet::new();
        for (id, epoch) in unsure {
            match held.get(id) {
                Some((owner, e)) if *owner == lease.owner && e == epoch => {
                    self.leases
                        .insert(id.clone(), (*e, now + lease.ttl * 4 / 5));
                }
                _ => {
                    lost.insert((id, *epoch));
                }
            }
        }
        let lost = |id: &str, epoch: u64| lost.contains(&(id, epoch));
        for item in std::mem::take(&mut batch.items) {
            match &item.current {
                Some(Current::Live(r)) if lost(&item.agent_id, r.lease_epoch) => {
                    aside.items.push(item)
                }
                _ => batch.items.push(item),
            }
        }
        for t in std::mem::take(&mut batch.transfers) {
            let mut any_lost = false;
            t.op.for_each_effect(&mut |e| {
                if let Effect::Record(r) = e {
                    any_lost |= lost(&r.state.agent_id, r.lease_epoch);
                }
            });
            if any_lost {
                aside.transfers.push(t);
            } else {
                batch.transfers.push(t);
            }
        }
        Ok(aside)
    }

    /// Notes the `remote` writes among changes a flush set aside, so that their callers
    /// answer with a conflict, not a success.
    pub(crate) fn note_set_aside<'b>(
        &self,
        items: impl Iterator<Item = &'b FlushItem>,
        transfers: impl Iterator<Item = &'b PendingTransfer>,
    ) {
        for item in items {
            for lsn in &item.remote_lsns {
                self.set_aside
                    .insert(*lsn, format!("agent {}", item.agent_id));
            }
        }
        for t in transfers.filter(|t| t.remote) {
            let (from, to) = (&t.transfer().from_agent, &t.transfer().to_agent);
            self.set_aside
                .insert(t.lsn, format!("agent {from} or {to}"));
        }
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

    /// The owner this sidecar's leases are held under, where leases are used: each
    /// flush checks them inside its write.
    pub(crate) fn lease_owner(&self) -> Option<&str> {
        self.opts.lease.as_ref().map(|l| l.owner.as_str())
    }

    /// Drops what this sidecar remembers of an agent another sidecar owns now.
    pub(crate) fn forget(&self, agent_id: &str) {
        self.cache.invalidate(agent_id);
        self.thread_heads.invalidate(agent_id);
        self.leases.invalidate(agent_id);
    }
}
