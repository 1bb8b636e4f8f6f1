//! The read caches: recently used agents, clean or dirty, and the latest checkpoints of
//! recently used threads, in moka.
//!
//! Hazard: moka may evict or refuse any entry at any time, so the cache is never the only
//! home of a change. Unflushed changes live in the [`crate::backlog::Backlog`] until the
//! backend has them; readers look there first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use agentstate_protocol::{ThreadBlob, ThreadCheckpointTuple, ThreadWrite};
use moka::sync::Cache;

use crate::delta;
use crate::model::{Current, DeltaRoot, StoredBlob, ThreadChange, ThreadCheckpoint};

/// Agents by id, bounded by bytes and by entries at once: moka has one capacity, so it
/// is bytes, and every entry weighs at least `bytes_max / entries_max`.
#[derive(Clone)]
pub struct StateCache {
    inner: Cache<String, Current>,
}

/// What an entry costs beyond its value: the key, moka's own entry, the `Current`.
const ENTRY_OVERHEAD_BYTES: usize = 160;

impl StateCache {
    pub fn new(entries_max: u64, bytes_max: u64) -> Self {
        let floor = bytes_max.div_ceil(entries_max).min(u32::MAX as u64) as u32;
        StateCache {
            inner: Cache::builder()
                .max_capacity(bytes_max)
                .weigher(move |id: &String, c: &Current| {
                    let bytes =
                        ENTRY_OVERHEAD_BYTES + id.len() + c.live().map_or(0, |r| r.memory_bytes());
                    (bytes.min(u32::MAX as usize) as u32).max(floor)
                })
                .build(),
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

    /// Bytes charged against the bound (after pending bookkeeping).
    pub fn bytes(&self) -> u64 {
        self.inner.run_pending_tasks();
        self.inner.weighted_size()
    }
}

/// The latest checkpoint of each namespace of recently used threads, whole (blobs and
/// writes): the read a framework makes at the start of every run, answered from memory.
///
/// Coherence: every change reaches [`ThreadHeads::apply`] from `Engine::log`, under the
/// thread's lock, and misses are filled under that lock too, so an entry is never older
/// than the last change of its thread. What a change cannot update exactly (a drop, a
/// copy, a put whose blobs are not all known here) removes the entry instead. Bounded by
/// bytes (moka's weigher); eviction only costs a read from the backend.
pub struct ThreadHeads {
    inner: Cache<String, Arc<HeadsOfThread>>,
    /// Per thread and namespace, the last checkpoint put and its chains, kept for
    /// threads written without being read (the parent a delta put names is usually
    /// that checkpoint). Kept coherent as the heads are; a fraction of their bytes.
    puts: Cache<String, Arc<LastPuts>>,
}

/// Per namespace, the id and chains of the last checkpoint put.
type LastPuts = HashMap<String, (String, Chains)>;

/// The share of the threads' cache bytes the last puts may take.
const LAST_PUTS_SHARE: u64 = 8;

fn last_puts_bytes(p: &LastPuts) -> u32 {
    let chains = |c: &Chains| {
        let versions: usize = c
            .channel_versions
            .iter()
            .map(|(k, v)| k.len() + v.len() + 48)
            .sum();
        let roots: usize = c
            .delta_roots
            .iter()
            .map(|(k, r)| k.len() + r.root.len() + 56)
            .sum();
        versions + roots
    };
    let n: usize = p
        .iter()
        .map(|(ns, (id, c))| ns.len() + id.len() + chains(c) + 96)
        .sum();
    n.min(u32::MAX as usize) as u32
}

/// What is cached of one thread: per namespace read so far, its latest checkpoint (or
/// `None`: the namespace has none).
#[derive(Debug, Clone, Default)]
pub struct HeadsOfThread {
    heads: HashMap<String, NsHead>,
}

#[derive(Debug, Clone)]
struct NsHead {
    latest: Option<Arc<ThreadCheckpointTuple>>,
    /// The latest's delta roots ([`crate::model::ThreadCheckpoint::delta_roots`]); its
    /// blobs are whole values.
    roots: BTreeMap<String, DeltaRoot>,
    /// Writes against checkpoint ids above the latest (a framework may send a step's
    /// writes before the put of its checkpoint lands): a put making one of them the
    /// latest takes them along.
    orphans: HashMap<String, Vec<ThreadWrite>>,
}

/// Most checkpoints with early writes tracked per namespace; past it the entry goes.
pub const ORPHANS_MAX: usize = 100;

/// Adds `w` to a checkpoint's writes: at `idx >= 0` the first of a key wins, below 0
/// the last; kept in `(task_path, task_id, idx)` order.
pub fn merge_write(writes: &mut Vec<ThreadWrite>, w: &ThreadWrite) {
    let same = |x: &ThreadWrite| x.task_id == w.task_id && x.idx == w.idx;
    match writes.iter().position(same) {
        Some(i) if w.idx < 0 => writes[i] = w.clone(),
        Some(_) => {}
        None => writes.push(w.clone()),
    }
    writes
        .sort_by(|a, b| (&a.task_path, &a.task_id, a.idx).cmp(&(&b.task_path, &b.task_id, b.idx)));
}

impl HeadsOfThread {
    fn bytes(&self) -> u32 {
        let tuple = |t: &ThreadCheckpointTuple| {
            t.checkpoint.len()
                + t.blobs.iter().map(|b| b.value.len() + 64).sum::<usize>()
                + t.writes.iter().map(|w| w.value.len() + 96).sum::<usize>()
                + 256
        };
        let n: usize = self
            .heads
            .values()
            .map(|h| h.latest.as_deref().map_or(64, tuple))
            .sum();
        n.min(u32::MAX as usize) as u32
    }
}

/// What a put needs of its parent checkpoint: which versions its channels are at and
/// the roots of those that are deltas.
#[derive(Debug, Clone, PartialEq)]
pub struct Chains {
    pub channel_versions: BTreeMap<String, String>,
    pub delta_roots: BTreeMap<String, DeltaRoot>,
}

/// A cache lookup: the answer, or that memory does not know.
pub enum HeadLookup {
    /// The namespace's latest checkpoint (`None`: it has none).
    Known(Option<Arc<ThreadCheckpointTuple>>),
    Unknown,
}

impl ThreadHeads {
    pub fn new(bytes_max: u64) -> Self {
        ThreadHeads {
            inner: Cache::builder()
                .max_capacity(bytes_max - bytes_max / LAST_PUTS_SHARE)
                .weigher(|_: &String, v: &Arc<HeadsOfThread>| v.bytes())
                .build(),
            puts: Cache::builder()
                .max_capacity(bytes_max / LAST_PUTS_SHARE)
                .weigher(|_: &String, v: &Arc<LastPuts>| last_puts_bytes(v))
                .build(),
        }
    }

    pub fn get(&self, thread: &str, ns: &str) -> HeadLookup {
        match self
            .inner
            .get(thread)
            .and_then(|t| t.heads.get(ns).cloned())
        {
            Some(h) => HeadLookup::Known(h.latest),
            None => HeadLookup::Unknown,
        }
    }

    /// The chains of checkpoint `id` if it is the latest of the namespace, or the
    /// last put there.
    pub fn chains(&self, thread: &str, ns: &str, id: &str) -> Option<Chains> {
        let head = self.inner.get(thread).and_then(|t| {
            let h = t.heads.get(ns)?;
            let latest = h.latest.as_ref().filter(|l| l.checkpoint_id == id)?;
            Some(Chains {
                channel_versions: latest.channel_versions.clone(),
                delta_roots: h.roots.clone(),
            })
        });
        head.or_else(|| {
            let puts = self.puts.get(thread)?;
            let (last, chains) = puts.get(ns)?;
            (last == id).then(|| chains.clone())
        })
    }

    /// Records what the backend and backlog say (call under the thread's lock):
    /// the latest checkpoint, whole, with its delta roots.
    pub fn fill(
        &self,
        thread: &str,
        ns: &str,
        latest: Option<(ThreadCheckpointTuple, BTreeMap<String, DeltaRoot>)>,
        orphans: HashMap<String, Vec<ThreadWrite>>,
    ) {
        let mut t = self
            .inner
            .get(thread)
            .map_or_else(HeadsOfThread::default, |t| (*t).clone());
        let (latest, roots) = match latest {
            Some((tuple, roots)) => (Some(Arc::new(tuple)), roots),
            None => (None, BTreeMap::new()),
        };
        t.heads.insert(
            ns.to_string(),
            NsHead {
                latest,
                roots,
                orphans,
            },
        );
        self.inner.insert(thread.to_string(), Arc::new(t));
    }

    pub fn invalidate(&self, thread: &str) {
        self.inner.invalidate(thread);
        self.puts.invalidate(thread);
    }

    /// Brings a cached thread up to date with one logged change.
    pub fn apply(&self, thread: &str, change: &ThreadChange) {
        match change {
            ThreadChange::Put { checkpoint, .. } => {
                let mut puts = self
                    .puts
                    .get(thread)
                    .map_or_else(LastPuts::default, |p| (*p).clone());
                let chains = Chains {
                    channel_versions: checkpoint.channel_versions.clone(),
                    delta_roots: checkpoint.delta_roots.clone(),
                };
                puts.insert(
                    checkpoint.checkpoint_ns.clone(),
                    (checkpoint.checkpoint_id.clone(), chains),
                );
                self.puts.insert(thread.to_string(), Arc::new(puts));
            }
            ThreadChange::Drop { .. } => self.puts.invalidate(thread),
            ThreadChange::Writes { .. } => {}
        }
        let Some(cached) = self.inner.get(thread) else {
            return;
        };
        let mut t = (*cached).clone();
        match change {
            ThreadChange::Put { checkpoint, blobs } => {
                let Some(h) = t.heads.get_mut(&checkpoint.checkpoint_ns) else {
                    return;
                };
                let newer = h
                    .latest
                    .as_ref()
                    .is_none_or(|l| checkpoint.checkpoint_id > l.checkpoint_id);
                let touches_latest = h.latest.as_ref().is_some_and(|l| {
                    l.checkpoint_id == checkpoint.checkpoint_id
                        || blobs.iter().any(|b| {
                            l.channel_versions.get(&b.blob.channel) == Some(&b.blob.version)
                        })
                });
                if !newer {
                    // An older checkpoint changes nothing here, unless it is the latest
                    // again or replaces a blob the latest uses: then start over.
                    if touches_latest {
                        t.heads.remove(&checkpoint.checkpoint_ns);
                    }
                } else {
                    match head_after_put(h.latest.as_deref(), checkpoint, blobs) {
                        Some(mut tuple) => {
                            tuple.writes =
                                h.orphans.remove(&tuple.checkpoint_id).unwrap_or_default();
                            h.orphans.retain(|id, _| *id > tuple.checkpoint_id);
                            h.latest = Some(Arc::new(tuple));
                            h.roots = checkpoint.delta_roots.clone();
                        }
                        None => {
                            t.heads.remove(&checkpoint.checkpoint_ns);
                        }
                    }
                }
            }
            ThreadChange::Writes { writes } => {
                for w in writes {
                    let Some(h) = t.heads.get_mut(&w.checkpoint_ns) else {
                        continue;
                    };
                    match &mut h.latest {
                        Some(l) if l.checkpoint_id == w.checkpoint_id => {
                            merge_write(&mut Arc::make_mut(l).writes, &w.write);
                        }
                        Some(l) if w.checkpoint_id < l.checkpoint_id => {}
                        _ => {
                            merge_write(
                                h.orphans.entry(w.checkpoint_id.clone()).or_default(),
                                &w.write,
                            );
                        }
                    }
                    if h.orphans.len() > ORPHANS_MAX {
                        t.heads.remove(&w.checkpoint_ns);
                    }
                }
            }
            ThreadChange::Drop { .. } => {
                self.inner.invalidate(thread);
                return;
            }
        }
        self.inner.insert(thread.to_string(), Arc::new(t));
    }
}

/// The tuple a put makes the latest, if every value it needs is known here: new
/// blobs (a delta put together with the previous latest's value it extends), or the
/// previous latest's at the same version.
fn head_after_put(
    prev: Option<&ThreadCheckpointTuple>,
    c: &ThreadCheckpoint,
    new_blobs: &[StoredBlob],
) -> Option<ThreadCheckpointTuple> {
    let prev_blob = |channel: &str, version: &str| {
        prev.into_iter()
            .flat_map(|p| p.blobs.iter())
            .find(|b| b.channel == channel && b.version == version)
    };
    let mut blobs = Vec::with_capacity(c.channel_versions.len());
    for (channel, version) in &c.channel_versions {
        let new = new_blobs
            .iter()
            .map(|b| &b.blob)
            .find(|b| &b.channel == channel && &b.version == version);
        let found = match new {
            Some(b) => match &b.extends {
                None => b.clone(),
                Some(base) => ThreadBlob {
                    value: delta::materialize(&[&prev_blob(channel, base)?.value, &b.value])
                        .ok()?,
                    extends: None,
                    ..b.clone()
                },
            },
            None => prev_blob(channel, version)?.clone(),
        };
        blobs.push(found);
    }
    Some(ThreadCheckpointTuple {
        thread_id: c.thread_id.clone(),
        checkpoint_ns: c.checkpoint_ns.clone(),
        checkpoint_id: c.checkpoint_id.clone(),
        parent_checkpoint_id: c.parent_checkpoint_id.clone(),
        checkpoint: c.checkpoint.clone(),
        metadata: c.metadata.clone(),
        channel_versions: c.channel_versions.clone(),
        blobs,
        writes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::record;
    use crate::model::Doc;

    fn with_data(agent: &str, bytes: usize) -> Current {
        let mut r = record(agent, 1);
        r.state.state_data = Doc::from_value(&serde_json::json!("x".repeat(bytes)));
        Current::Live(Arc::new(r))
    }

    #[test]
    fn bounded_by_bytes_and_by_entries() {
        // 1 KiB agents against 100 KiB: the bytes bound holds well before 1000 entries.
        let cache = StateCache::new(1000, 100 * 1024);
        for i in 0..500 {
            cache.insert(&format!("a{i}"), with_data("a", 1024));
        }
        assert!(cache.bytes() <= 100 * 1024, "{} bytes", cache.bytes());
        let entries = cache.entries();
        assert!(
            (20..=50).contains(&entries),
            "{entries} entries of ~2.5 KiB"
        );

        // Tiny agents: the entries bound holds (each weighs at least 100 KiB / 10).
        let cache = StateCache::new(10, 100 * 1024);
        for i in 0..100 {
            cache.insert(&format!("a{i}"), with_data("a", 1));
        }
        assert!(cache.entries() <= 10, "{} entries", cache.entries());
    }
}
