//! Delta chains ([`crate::delta`]) on the engine: the roots a put gives its deltas,
//! and the blobs a chain is made of, fetched as one range of versions and walked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use agentstate_protocol::{PutThreadCheckpointRequest, SearchCheckpointsRequest, ThreadBlob};

use super::{purged, Blobs, Pending};
use crate::cache::Chains;
use crate::delta;
use crate::engine::{Engine, EngineError, EngineResult};
use crate::model::{BlobKey, DeltaRoot, StoredBlob, ThreadCheckpoint};
use crate::store::BlobRange;

/// A stored blob's whole value: itself, or its chain put together (`find` finds a
/// version of the same channel).
pub(super) fn whole<'a>(
    thread: &str,
    b: &'a StoredBlob,
    find: impl Fn(&str) -> Option<&'a Arc<StoredBlob>>,
) -> EngineResult<ThreadBlob> {
    let broken = |why: String| {
        EngineError::Internal(format!(
            "thread {thread}: blob {} at {}: {why}",
            b.blob.channel, b.blob.version
        ))
    };
    let mut parts = vec![&b.blob.value];
    let mut at = b;
    while let Some(base) = &at.blob.extends {
        if parts.len() > delta::CHAIN_MAX + 1 {
            return Err(broken("its chain does not end".into()));
        }
        at = find(base).ok_or_else(|| broken(format!("version {base} under it is missing")))?;
        parts.push(&at.blob.value);
    }
    if parts.len() == 1 {
        return Ok(ThreadBlob {
            extends: None,
            ..b.blob.clone()
        });
    }
    parts.reverse();
    let value = delta::materialize(&parts).map_err(|e| broken(e.to_string()))?;
    Ok(ThreadBlob {
        channel: b.blob.channel.clone(),
        version: b.blob.version.clone(),
        value,
        extends: None,
    })
}

/// Every blob a checkpoint's values are made of: each channel's, and a delta's chain
/// (as far as `blobs` holds it).
pub(super) fn used_keys(c: &ThreadCheckpoint, blobs: &Blobs) -> Vec<BlobKey> {
    let mut out = Vec::with_capacity(c.channel_versions.len());
    for key in c.blob_keys() {
        let mut at = blobs.get(&(c.thread_id.clone(), key.clone()));
        out.push(key);
        while let Some(base) = at.and_then(|b| b.blob.extends.as_ref()) {
            let key = BlobKey {
                version: base.clone(),
                ..out[out.len() - 1].clone()
            };
            at = blobs.get(&(c.thread_id.clone(), key.clone()));
            out.push(key);
            if out.len() > c.channel_versions.len() * (delta::CHAIN_MAX + 1) {
                break;
            }
        }
    }
    out
}

/// The roots a put gives its delta blobs (by channel and version) and its checkpoint.
#[derive(Default)]
pub(super) struct PutChains {
    pub(super) blobs: HashMap<(String, String), DeltaRoot>,
    pub(super) checkpoint: BTreeMap<String, DeltaRoot>,
}

impl Engine {
    /// The roots of a put's deltas (under the thread's lock): each delta blob's, and
    /// the checkpoint's for every channel whose value is a delta, its own or one it
    /// keeps from before. A delta whose base is not held, or that would stand on more
    /// than [`delta::CHAIN_MAX`] deltas, is refused (409): the client sends the whole
    /// value instead.
    pub(super) async fn put_chains(
        &self,
        thread: &str,
        req: &PutThreadCheckpointRequest,
    ) -> EngineResult<PutChains> {
        let ns = &req.checkpoint_ns;
        let parent = match &req.parent_checkpoint_id {
            Some(id) => self.checkpoint_chains(thread, ns, id).await?,
            None => None,
        };
        let mut out = PutChains::default();
        for b in &req.blobs {
            let Some(base) = &b.extends else { continue };
            let refuse = |why: String| {
                EngineError::Conflict(format!(
                    "blob {} extends {base}: {why}; send the whole value",
                    b.channel
                ))
            };
            let Some(under) = self
                .root_of(thread, ns, parent.as_ref(), &b.channel, base)
                .await?
            else {
                return Err(refuse(format!(
                    "thread {thread} does not hold it in namespace {ns:?}"
                )));
            };
            let root = match under {
                Some(r) => DeltaRoot {
                    root: r.root,
                    depth: r.depth + 1,
                },
                None => DeltaRoot {
                    root: base.clone(),
                    depth: 1,
                },
            };
            if root.depth as usize > delta::CHAIN_MAX {
                return Err(refuse(format!(
                    "it would stand on more than {} deltas",
                    delta::CHAIN_MAX
                )));
            }
            out.blobs
                .insert((b.channel.clone(), b.version.clone()), root);
        }
        for (channel, version) in &req.channel_versions {
            let own = req
                .blobs
                .iter()
                .any(|b| b.channel == *channel && b.version == *version);
            let root = match out.blobs.get(&(channel.clone(), version.clone())) {
                Some(root) => Some(root.clone()),
                None if own => None,
                None => self
                    .root_of(thread, ns, parent.as_ref(), channel, version)
                    .await?
                    .flatten(),
            };
            if let Some(root) = root {
                out.checkpoint.insert(channel.clone(), root);
            }
        }
        Ok(out)
    }

    /// A checkpoint's channel versions and delta roots: from memory when it is the
    /// thread's latest or last put, else from the backlog or the backend.
    pub(super) async fn checkpoint_chains(
        &self,
        thread: &str,
        ns: &str,
        id: &str,
    ) -> EngineResult<Option<Chains>> {
        if let Some(known) = self.thread_heads.chains(thread, ns, id) {
            return Ok(Some(known));
        }
        let q = SearchCheckpointsRequest {
            thread_id: Some(thread.to_string()),
            checkpoint_ns: Some(ns.to_string()),
            checkpoint_id: Some(id.to_string()),
            limit: Some(1),
            ..Default::default()
        };
        let pending = self.pending_threads(Some(thread));
        let rows = self.checkpoint_rows(&q, &pending, 1).await?;
        Ok(rows.first().map(|c| Chains {
            channel_versions: c.channel_versions.clone(),
            delta_roots: c.delta_roots.clone(),
        }))
    }

    /// The root of a blob the thread holds (`Some(None)`: a whole value), or `None` if
    /// it does not hold it. The parent answers when it has that version.
    pub(super) async fn root_of(
        &self,
        thread: &str,
        ns: &str,
        parent: Option<&Chains>,
        channel: &str,
        version: &str,
    ) -> EngineResult<Option<Option<DeltaRoot>>> {
        let at_parent = parent.filter(|p| {
            p.channel_versions
                .get(channel)
                .is_some_and(|v| v == version)
        });
        if let Some(p) = at_parent {
            return Ok(Some(p.delta_roots.get(channel).cloned()));
        }
        let key = BlobKey {
            ns: ns.to_string(),
            channel: channel.to_string(),
            version: version.to_string(),
        };
        let pending = self.backlog.thread(thread);
        if let Some((dirt, _)) = &pending {
            if let Some((_, b)) = dirt.blobs.get(&key) {
                return Ok(Some(b.root.clone()));
            }
            if dirt.dropped_blobs.contains_key(&key) {
                return Ok(None);
            }
        }
        let stored = self.store.thread_blobs(thread, vec![key]).await?;
        Ok(stored
            .into_iter()
            .find(|b| !purged(pending.as_ref(), b.version))
            .map(|b| b.root))
    }

    /// The blobs checkpoints' values are made of, as stored: the chains under deltas
    /// (one range of versions per chain), and with `whole_values` the rest too and
    /// every value; without, the chains' blobs only, their values empty (enough to walk
    /// them, as a prune does).
    pub(super) async fn blobs_of(
        &self,
        rows: &[Arc<ThreadCheckpoint>],
        pending: &HashMap<String, Pending>,
        whole_values: bool,
    ) -> EngineResult<Blobs> {
        let mut by_thread: BTreeMap<&str, Vec<&ThreadCheckpoint>> = BTreeMap::new();
        for c in rows {
            by_thread.entry(&c.thread_id).or_default().push(c);
        }
        let mut blobs = Blobs::new();
        for (thread, cps) in by_thread {
            let p = pending.get(thread);
            let mut ranges: BTreeMap<(String, String, String), String> = BTreeMap::new();
            let mut keys = BTreeSet::new();
            for c in &cps {
                for key in c.blob_keys() {
                    match c.delta_roots.get(&key.channel) {
                        Some(r) => {
                            let to = ranges
                                .entry((key.ns.clone(), key.channel.clone(), r.root.clone()))
                                .or_default();
                            if key.version > *to {
                                *to = key.version.clone();
                            }
                        }
                        None if whole_values => {
                            keys.insert(key);
                        }
                        None => {}
                    }
                }
            }
            self.fetch_blobs(thread, keys, p, &mut blobs).await?;
            for ((ns, channel, from), to) in ranges {
                let range = BlobRange {
                    ns,
                    channel,
                    from,
                    to,
                    values: whole_values,
                };
                self.fetch_range(thread, range, p, &mut blobs).await?;
            }
        }
        Ok(blobs)
    }

    /// Adds a thread's blobs in `range` to `out`: the backend's, then unflushed ones.
    pub(super) async fn fetch_range(
        &self,
        thread: &str,
        range: BlobRange,
        p: Option<&Pending>,
        out: &mut Blobs,
    ) -> EngineResult<()> {
        let dropped = |k: &BlobKey| p.is_some_and(|(d, _)| d.dropped_blobs.contains_key(k));
        for b in self.store.thread_blob_range(thread, range.clone()).await? {
            let key = b.key();
            if !purged(p, b.version) && !dropped(&key) {
                out.insert((thread.to_string(), key), Arc::new(b));
            }
        }
        if let Some((d, _)) = p {
            let within = |k: &BlobKey| {
                k.ns == range.ns
                    && k.channel == range.channel
                    && (range.from.as_str()..=range.to.as_str()).contains(&k.version.as_str())
            };
            for (key, (_, b)) in d.blobs.iter().filter(|(k, _)| within(k)) {
                out.insert((thread.to_string(), key.clone()), b.clone());
            }
        }
        Ok(())
    }

    /// Adds a thread's blobs at `keys` to `out`: unflushed ones first, the rest from the
    /// backend.
    pub(super) async fn fetch_blobs(
        &self,
        thread: &str,
        keys: BTreeSet<BlobKey>,
        p: Option<&Pending>,
        out: &mut Blobs,
    ) -> EngineResult<()> {
        let mut missing = Vec::new();
        for key in keys {
            match p.and_then(|(d, _)| d.blobs.get(&key)) {
                Some((_, b)) => {
                    out.insert((thread.to_string(), key), b.clone());
                }
                None if p.is_some_and(|(d, _)| d.dropped_blobs.contains_key(&key)) => {}
                None => missing.push(key),
            }
        }
        for b in self.store.thread_blobs(thread, missing).await? {
            if !purged(p, b.version) {
                out.insert((thread.to_string(), b.key()), Arc::new(b));
            }
        }
        Ok(())
    }
}
