//! The read cache: recently used agents, clean or dirty, in moka.
//!
//! Hazard: moka may evict or refuse any entry at any time, so the cache is never the only
//! home of a change. Unflushed changes live in the [`crate::backlog::Backlog`] until the
//! backend has them; readers look there first.

use moka::sync::Cache;

use crate::model::Current;

#[derive(Clone)]
pub struct StateCache {
    inner: Cache<String, Current>,
}

impl StateCache {
    pub fn new(entries_max: u64) -> Self {
        StateCache {
            inner: Cache::builder().max_capacity(entries_max).build(),
        }
    }

    pub fn get(&self, agent_id: &str) -> Option<Current> {
        self.inner.get(agent_id)
    }

    pub fn insert(&self, agent_id: &str, current: Current) {
        self.inner.insert(agent_id.to_string(), current);
    }

    pub fn invalidate(&self, agent_id: &str) {
        self.inner.invalidate(agent_id);
    }

    /// Entries held, after moka's pending bookkeeping (the count lags otherwise).
    pub fn entries(&self) -> u64 {
        self.inner.run_pending_tasks();
        self.inner.entry_count()
    }
}
