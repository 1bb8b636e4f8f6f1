//! Backends: where flushed state lives. MongoDB in production, embedded SQLite when no
//! `--mongodb-uri` is given.
//!
//! Both implement the same contract:
//! - `flush` is idempotent and monotonic: a state is written only over an older version
//!   (version-conditioned upserts), log entries are keyed so a second insert is a no-op,
//!   a purge deletes only what is older than its tombstone. Replaying the WAL twice
//!   therefore changes nothing.
//! - Every call is bounded by the caller's timeout; errors say whether retrying helps.

pub mod mongo;
pub mod sqlite;

use std::future::Future;
use std::time::Duration;

use agentstate_protocol::{AgentSummary, AgentUsage, TableUsage, ThreadSummary};
use chrono::{DateTime, Utc};

use crate::backlog::FlushBatch;
use crate::config::RetentionPolicy;
use crate::model::{
    AgentRecord, BlobKey, Checkpoint, CheckpointKey, Message, StateTransition, StoredBlob,
    StoredWrite, ThreadCheckpoint, Transfer,
};

/// Which thread checkpoints to read; every `Some` narrows, results come greatest id
/// first, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct ThreadQuery {
    pub thread_id: Option<String>,
    pub checkpoint_ns: Option<String>,
    pub checkpoint_id: Option<String>,
    pub before: Option<String>,
    /// `metadata.run_id` among these.
    pub run_ids: Option<Vec<String>>,
    /// Metadata equalities a backend may apply (the caller applies them again).
    pub filter: serde_json::Map<String, serde_json::Value>,
    pub limit: u32,
}

/// Which agents a listing keeps; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct AgentFilter {
    /// Ids starting with this.
    pub prefix: String,
    pub state: Option<String>,
    pub agent_type: Option<String>,
    /// Changed after this instant.
    pub updated_after: Option<DateTime<Utc>>,
    /// Only agents with a refused transition in their log.
    pub failed: bool,
}

impl AgentFilter {
    /// Whether a summary passes every field but `failed` (which needs the log).
    pub fn admits(&self, s: &AgentSummary) -> bool {
        s.agent_id.starts_with(&self.prefix)
            && self.state.as_ref().is_none_or(|x| *x == s.state_name)
            && self
                .agent_type
                .as_ref()
                .is_none_or(|x| s.agent_type.as_ref() == Some(x))
            && self.updated_after.is_none_or(|t| s.updated_at > t)
    }
}

/// The ids after `after` that start with `prefix`, as one range `[from, to)`, so that a
/// backend scans its id index from the right place: `to` is the least string greater than
/// every string starting with `prefix` (bar ones going on with the last code point, which
/// ids never hold), `from` the greater of `prefix` and the least string after `after`
/// (`after` and a NUL, which ids never hold).
pub fn id_range(after: &str, prefix: &str) -> (String, String) {
    let from = if prefix > after {
        prefix.to_string()
    } else {
        format!("{after}\0")
    };
    (from, format!("{prefix}\u{10FFFF}"))
}

/// A channel's blobs in a namespace with versions from `from` to `to` (inclusive):
/// where a chain of deltas lies, as versions only grow along a chain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlobRange {
    pub ns: String,
    pub channel: String,
    pub from: String,
    pub to: String,
    /// Read the values too; without, each blob's value is empty (enough to walk a
    /// chain by `extends`, as a prune does).
    pub values: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or timed out; retrying later may succeed.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The backend refused the operation; retrying the same thing will not help.
    #[error("backend refused the operation: {0}")]
    Rejected(String),
    /// The backend aborted a transaction that met a concurrent write to the same
    /// documents; running it again may succeed at once.
    #[error("backend write conflict: {0}")]
    Conflict(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What one application of the retention policy deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retained {
    pub transitions: u64,
    pub messages: u64,
    pub checkpoints: u64,
    /// Threads' framework checkpoints (applied by the engine, not the store).
    pub thread_checkpoints: u64,
}

/// The cut-off time for a "max age in days" limit.
pub fn cutoff(now: DateTime<Utc>, days: u64) -> DateTime<Utc> {
    now - chrono::Duration::days(days.min(365_000) as i64)
}

/// The configured backend, with the timeout every call is bounded by.
pub struct Store {
    backend: Backend,
    timeout: Duration,
}

/// An enum rather than a trait object: there are two, and matching keeps the async
/// methods free of boxing.
pub enum Backend {
    Mongo(Box<mongo::MongoStore>),
    Sqlite(sqlite::SqliteStore),
}

impl Store {
    pub fn new(backend: Backend, timeout: Duration) -> Self {
        Store { backend, timeout }
    }

    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Mongo(_) => "mongodb",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    async fn timed<T>(
        &self,
        what: &str,
        f: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        tokio::time::timeout(self.timeout, f)
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(format!(
                    "{what} timed out after {} ms",
                    self.timeout.as_millis()
                )))
            })
    }

    /// The agent's stored record; its `transition_seq` and `message_seq` account for
    /// every stored log entry and message.
    pub async fn load(&self, agent_id: &str) -> StoreResult<Option<AgentRecord>> {
        self.timed("load agent", async {
            match &self.backend {
                Backend::Mongo(s) => s.load(agent_id).await,
                Backend::Sqlite(s) => s.load(agent_id).await,
            }
        })
        .await
    }

    /// Writes a flush batch: each transfer atomically, then the agents' changes. On
    /// MongoDB the changes are written only while `lease_owner` still holds the lease
    /// each was made under, checked inside the write's transaction. Returns what is now
    /// in the backend (all of `batch`, or part of it), the agents whose changes a lost
    /// lease fenced off (kept aside, not written), and the first error met; what was not
    /// written stays in the backlog for the next try.
    pub async fn flush(
        &self,
        batch: FlushBatch,
        lease_owner: Option<&str>,
    ) -> (FlushBatch, Vec<String>, Option<StoreError>) {
        let write = async {
            match &self.backend {
                Backend::Mongo(s) => s.flush(batch, lease_owner).await,
                Backend::Sqlite(s) => s.flush(batch).await,
            }
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(result) => result,
            // Some of it may have been written; flushes are idempotent, so report none.
            Err(_) => (
                FlushBatch::default(),
                Vec::new(),
                Some(StoreError::Unavailable(format!(
                    "flush timed out after {} ms",
                    self.timeout.as_millis()
                ))),
            ),
        }
    }

    /// Stored messages with `seq > after`, oldest first, at most `limit`.
    pub async fn messages(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        self.timed("read messages", async {
            match &self.backend {
                Backend::Mongo(s) => s.messages(agent_id, after, limit).await,
                Backend::Sqlite(s) => s.messages(agent_id, after, limit).await,
            }
        })
        .await
    }

    /// The latest `limit` stored messages with `seq <= before`, oldest first.
    pub async fn last_messages(
        &self,
        agent_id: &str,
        before: u64,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        self.timed("read messages", async {
            match &self.backend {
                Backend::Mongo(s) => s.last_messages(agent_id, before, limit).await,
                Backend::Sqlite(s) => s.last_messages(agent_id, before, limit).await,
            }
        })
        .await
    }

    /// Stored checkpoints of the agent, oldest first.
    pub async fn checkpoints(&self, agent_id: &str) -> StoreResult<Vec<Checkpoint>> {
        self.timed("read checkpoints", async {
            match &self.backend {
                Backend::Mongo(s) => s.checkpoints(agent_id).await,
                Backend::Sqlite(s) => s.checkpoints(agent_id).await,
            }
        })
        .await
    }

    /// A stored transfer by id.
    pub async fn transfer(&self, transfer_id: &str) -> StoreResult<Option<Transfer>> {
        self.timed("read transfer", async {
            match &self.backend {
                Backend::Mongo(s) => s.transfer(transfer_id).await,
                Backend::Sqlite(s) => s.transfer(transfer_id).await,
            }
        })
        .await
    }

    /// Ids of stored agents greater than `after`, in order, at most `limit`.
    pub async fn agent_ids(&self, after: &str, limit: u32) -> StoreResult<Vec<String>> {
        self.timed("list agents", async {
            match &self.backend {
                Backend::Mongo(s) => s.agent_ids(after, limit).await,
                Backend::Sqlite(s) => s.agent_ids(after, limit).await,
            }
        })
        .await
    }

    /// Stored agents with ids greater than `after` that `filter` keeps, in order of id,
    /// at most `limit`.
    pub async fn agent_summaries(
        &self,
        filter: AgentFilter,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<AgentSummary>> {
        self.timed("list agents", async {
            match &self.backend {
                Backend::Mongo(s) => s.agent_summaries(&filter, after, limit).await,
                Backend::Sqlite(s) => s.agent_summaries(filter, after, limit).await,
            }
        })
        .await
    }

    /// Which of `ids` have a refused transition stored.
    pub async fn with_failures(&self, ids: Vec<String>) -> StoreResult<Vec<String>> {
        self.timed("find refused transitions", async {
            match &self.backend {
                Backend::Mongo(s) => s.with_failures(&ids).await,
                Backend::Sqlite(s) => s.with_failures(ids).await,
            }
        })
        .await
    }

    /// Stored threads with ids greater than `after` starting with `prefix`, in order of
    /// id, at most `limit`.
    pub async fn thread_summaries(
        &self,
        prefix: &str,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<ThreadSummary>> {
        self.timed("list threads", async {
            match &self.backend {
                Backend::Mongo(s) => s.thread_summaries(prefix, after, limit).await,
                Backend::Sqlite(s) => s.thread_summaries(prefix, after, limit).await,
            }
        })
        .await
    }

    /// Stored transfers from or to `agent` with ids greater than `after`, in order of id,
    /// at most `limit`.
    pub async fn transfers_of(
        &self,
        agent: &str,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<Transfer>> {
        self.timed("list an agent's transfers", async {
            match &self.backend {
                Backend::Mongo(s) => s.transfers_of(agent, after, limit).await,
                Backend::Sqlite(s) => s.transfers_of(agent, after, limit).await,
            }
        })
        .await
    }

    /// Stored transfers with ids greater than `after`, in order of id, at most `limit`.
    pub async fn transfers(&self, after: &str, limit: u32) -> StoreResult<Vec<Transfer>> {
        self.timed("list transfers", async {
            match &self.backend {
                Backend::Mongo(s) => s.transfers(after, limit).await,
                Backend::Sqlite(s) => s.transfers(after, limit).await,
            }
        })
        .await
    }

    /// Logged transitions with `seq > after`, oldest first, at most `limit`.
    pub async fn transitions(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<StateTransition>> {
        self.timed("read transitions", async {
            match &self.backend {
                Backend::Mongo(s) => s.transitions(agent_id, after, limit).await,
                Backend::Sqlite(s) => s.transitions(agent_id, after, limit).await,
            }
        })
        .await
    }

    /// Threads that retention by `max_count` checkpoints per namespace, or by age
    /// (`cutoff`), may thin out; at most `limit`, by id. At least one limit is given.
    pub async fn thread_retention_candidates(
        &self,
        max_count: Option<u64>,
        cutoff: Option<DateTime<Utc>>,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        self.timed("find threads to retain", async {
            match &self.backend {
                Backend::Mongo(s) => {
                    s.thread_retention_candidates(max_count, cutoff, limit)
                        .await
                }
                Backend::Sqlite(s) => {
                    s.thread_retention_candidates(max_count, cutoff, limit)
                        .await
                }
            }
        })
        .await
    }

    /// Thread checkpoints matching `q`, greatest id first.
    pub async fn thread_checkpoints(&self, q: ThreadQuery) -> StoreResult<Vec<ThreadCheckpoint>> {
        self.timed("read thread checkpoints", async {
            match &self.backend {
                Backend::Mongo(s) => s.thread_checkpoints(q).await,
                Backend::Sqlite(s) => s.thread_checkpoints(q).await,
            }
        })
        .await
    }

    /// The stored blobs among `keys`.
    pub async fn thread_blobs(
        &self,
        thread: &str,
        keys: Vec<BlobKey>,
    ) -> StoreResult<Vec<StoredBlob>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.timed("read thread blobs", async {
            match &self.backend {
                Backend::Mongo(s) => s.thread_blobs(thread, keys).await,
                Backend::Sqlite(s) => s.thread_blobs(thread, keys).await,
            }
        })
        .await
    }

    /// Per table (collection), what the backend holds.
    pub async fn usage(&self) -> StoreResult<Vec<TableUsage>> {
        self.timed("read storage usage", async {
            match &self.backend {
                Backend::Mongo(s) => s.usage().await,
                Backend::Sqlite(s) => s.usage().await,
            }
        })
        .await
    }

    /// The `top` agents (and threads) holding the most bytes in the backend.
    pub async fn largest_agents(&self, top: u32) -> StoreResult<Vec<AgentUsage>> {
        if top == 0 {
            return Ok(Vec::new());
        }
        self.timed("read storage usage", async {
            match &self.backend {
                Backend::Mongo(s) => s.largest_agents(top).await,
                Backend::Sqlite(s) => s.largest_agents(top).await,
            }
        })
        .await
    }

    pub async fn thread_blob_range(
        &self,
        thread: &str,
        range: BlobRange,
    ) -> StoreResult<Vec<StoredBlob>> {
        self.timed("read thread blobs", async {
            match &self.backend {
                Backend::Mongo(s) => s.thread_blob_range(thread, range).await,
                Backend::Sqlite(s) => s.thread_blob_range(thread, range).await,
            }
        })
        .await
    }

    /// The stored writes of these checkpoints.
    pub async fn thread_writes(
        &self,
        thread: &str,
        keys: Vec<CheckpointKey>,
    ) -> StoreResult<Vec<StoredWrite>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        self.timed("read thread writes", async {
            match &self.backend {
                Backend::Mongo(s) => s.thread_writes(thread, keys).await,
                Backend::Sqlite(s) => s.thread_writes(thread, keys).await,
            }
        })
        .await
    }

    /// Ids of checkpoints of `ns` above `after` that have stored writes, at most `limit`.
    pub async fn thread_write_ids_after(
        &self,
        thread: &str,
        ns: &str,
        after: &str,
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        self.timed("read thread writes", async {
            match &self.backend {
                Backend::Mongo(s) => s.thread_write_ids_after(thread, ns, after, limit).await,
                Backend::Sqlite(s) => s.thread_write_ids_after(thread, ns, after, limit).await,
            }
        })
        .await
    }

    /// Deletes history the policy no longer keeps.
    pub async fn retain(
        &self,
        policy: &RetentionPolicy,
        now: DateTime<Utc>,
    ) -> StoreResult<Retained> {
        self.timed("apply retention", async {
            match &self.backend {
                Backend::Mongo(s) => s.retain(policy, now).await,
                Backend::Sqlite(s) => s.retain(policy, now).await,
            }
        })
        .await
    }

    /// Whether writes need an ownership lease (MongoDB: several sidecars may share it).
    pub fn uses_leases(&self) -> bool {
        matches!(self.backend, Backend::Mongo(_))
    }

    /// Takes or renews this sidecar's lease on an agent.
    pub async fn acquire_lease(
        &self,
        agent_id: &str,
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<mongo::Lease> {
        self.timed("acquire lease", async {
            match &self.backend {
                Backend::Mongo(s) => s.acquire_lease(agent_id, owner, ttl).await,
                Backend::Sqlite(_) => Ok(mongo::Lease::Held { epoch: 0 }),
            }
        })
        .await
    }

    /// Renews this sidecar's leases on `agent_ids` and returns each lease's owner and
    /// epoch (MongoDB; the embedded store has no leases).
    pub async fn renew_leases(
        &self,
        agent_ids: &[&str],
        owner: &str,
        ttl: Duration,
    ) -> StoreResult<std::collections::HashMap<String, (String, u64)>> {
        self.timed("renew leases", async {
            match &self.backend {
                Backend::Mongo(s) => s.renew_leases(agent_ids, owner, ttl).await,
                Backend::Sqlite(_) => Ok(Default::default()),
            }
        })
        .await
    }

    /// Keeps what was written under a lost lease in `agent_state_conflicts` (MongoDB).
    pub async fn keep_aside(&self, aside: &FlushBatch) -> StoreResult<()> {
        self.timed("keep fenced-off changes aside", async {
            match &self.backend {
                Backend::Mongo(s) => s.keep_aside(aside).await,
                Backend::Sqlite(_) => Ok(()),
            }
        })
        .await
    }

    /// Cheap round trip proving the backend answers.
    pub async fn ping(&self) -> StoreResult<()> {
        self.timed("ping", async {
            match &self.backend {
                Backend::Mongo(s) => s.ping().await,
                Backend::Sqlite(s) => s.ping().await,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_range_holds_the_prefix_after_the_cursor() {
        let within = |after: &str, prefix: &str, id: &str| {
            let (from, to) = id_range(after, prefix);
            id >= from.as_str() && id < to.as_str()
        };
        assert!(within("", "a-", "a-1"));
        assert!(within("", "a-", "a-"));
        assert!(!within("", "a-", "a"));
        assert!(!within("", "a-", "b"));
        assert!(!within("a-1", "a-", "a-1"), "the cursor itself is behind");
        assert!(within("a-1", "a-", "a-10"));
        assert!(within("a-1", "a-", "a-2"));
        assert!(!within("a-1", "a-", "a-0"));
        assert!(within("", "", "anything"));
        assert!(!within("zz", "", "z"));
    }
}
