//! Threads' framework checkpoints in MongoDB.
//!
//! Collections: `thread_checkpoints` (`_id` = `["thread","ns","id"]`; indexed by thread,
//! namespace and id descending, by id for searches across threads, and by
//! `metadata.run_id`), `thread_blobs` (`_id` = `["thread","ns","channel","version"]`) and
//! `thread_writes` (`_id` = `["thread","ns","checkpoint","task","idx"]`). Payloads are BSON
//! binary; metadata is an embedded document, so operators can query it. Channel versions
//! are stored as `[channel, version]` pairs: channel names are not field names MongoDB
//! always accepts. A delta blob has `extends`, `root` and `depth`, and blobs are also
//! indexed by thread, namespace, channel and version, where a chain of deltas lies.

use agentstate_protocol::{Payload, ThreadBlob, ThreadWrite, Typed};
use bytes::Bytes;
use mongodb::bson::{doc, spec::BinarySubtype, Binary, Bson, Document};

use super::codec::{bad_doc, get_map, get_str, get_u64, to_bson};
use super::StoreResult;
use crate::backlog::ThreadDirt;
use crate::model::{BlobKey, CheckpointKey, DeltaRoot, StoredBlob, StoredWrite, ThreadCheckpoint};
use crate::store::{BlobRange, ThreadQuery};

pub const THREAD_CHECKPOINTS: &str = "thread_checkpoints";
pub const THREAD_BLOBS: &str = "thread_blobs";
pub const THREAD_WRITES: &str = "thread_writes";

/// Indexes, as `createIndexes` specs per collection.
pub fn indexes() -> Vec<(&'static str, Document)> {
    vec![
        (
            THREAD_CHECKPOINTS,
            doc! { "key": { "thread_id": 1, "checkpoint_ns": 1, "checkpoint_id": -1 }, "name": "thread_ns_id" },
        ),
        (
            THREAD_CHECKPOINTS,
            doc! { "key": { "checkpoint_id": -1 }, "name": "id" },
        ),
        (
            THREAD_CHECKPOINTS,
            doc! { "key": { "metadata.run_id": 1 }, "name": "run_id" },
        ),
        (
            THREAD_BLOBS,
            doc! { "key": { "thread_id": 1, "thread_version": 1 }, "name": "thread_version" },
        ),
        (
            THREAD_BLOBS,
            doc! {
                "key": { "thread_id": 1, "checkpoint_ns": 1, "channel": 1, "version": 1 },
                "name": "thread_ns_channel_version",
            },
        ),
        (
            THREAD_WRITES,
            doc! { "key": { "thread_id": 1, "checkpoint_ns": 1, "checkpoint_id": 1 }, "name": "thread_ns_id" },
        ),
    ]
}

/// Delete and upsert statements for one flush, by collection.
#[derive(Default)]
pub struct ThreadWrites {
    pub delete_checkpoints: Vec<Document>,
    pub delete_blobs: Vec<Document>,
    pub delete_writes: Vec<Document>,
    pub upsert_checkpoints: Vec<Document>,
    pub upsert_blobs: Vec<Document>,
    pub upsert_writes: Vec<Document>,
}

pub fn binary(p: &Payload) -> Binary {
    Binary {
        subtype: BinarySubtype::Generic,
        bytes: p.0.to_vec(),
    }
}

/// Document ids are the key's parts as a JSON array in a string: unambiguous, readable in
/// mongosh, and a plain string index lookup on every server (a subdocument `_id` is
/// scanned for by some MongoDB-wire servers).
fn key_id(parts: &[&str]) -> String {
    serde_json::to_string(parts).unwrap_or_default()
}

fn checkpoint_id(thread: &str, k: &CheckpointKey) -> String {
    key_id(&[thread, &k.ns, &k.id])
}

fn blob_id(thread: &str, k: &BlobKey) -> String {
    key_id(&[thread, &k.ns, &k.channel, &k.version])
}

impl ThreadWrites {
    /// What a thread's delete purges: everything written before `version`.
    pub fn purge(&mut self, thread: &str, version: u64) {
        let q = doc! { "q": { "thread_id": thread, "thread_version": { "$lt": version as i64 } }, "limit": 0 };
        self.delete_checkpoints.push(q.clone());
        self.delete_blobs.push(q.clone());
        self.delete_writes.push(q);
    }

    pub fn dirt(&mut self, thread: &str, dirt: &ThreadDirt) -> StoreResult<()> {
        for k in dirt.dropped_checkpoints.keys() {
            self.delete_checkpoints
                .push(doc! { "q": { "_id": checkpoint_id(thread, k) }, "limit": 1 });
            self.delete_writes.push(doc! {
                "q": { "thread_id": thread, "checkpoint_ns": &k.ns, "checkpoint_id": &k.id },
                "limit": 0,
            });
        }
        for k in dirt.dropped_blobs.keys() {
            self.delete_blobs
                .push(doc! { "q": { "_id": blob_id(thread, k) }, "limit": 1 });
        }
        for (_, c) in dirt.checkpoints.values() {
            let (id, fields) = checkpoint_doc(thread, c)?;
            self.upsert_checkpoints
                .push(doc! { "q": { "_id": id }, "u": fields, "upsert": true });
        }
        for (_, b) in dirt.blobs.values() {
            let (id, fields) = blob_doc(thread, b);
            self.upsert_blobs
                .push(doc! { "q": { "_id": id }, "u": fields, "upsert": true });
        }
        for (_, w) in dirt.writes.values() {
            let (id, fields) = write_doc(thread, w);
            // At idx >= 0 the first write of a key wins; below 0 the last.
            let update = if w.write.idx >= 0 {
                doc! { "$setOnInsert": fields }
            } else {
                fields
            };
            self.upsert_writes
                .push(doc! { "q": { "_id": id }, "u": update, "upsert": true });
        }
        Ok(())
    }
}

/// What a thread's flush under a lost lease carried, as the documents it would have
/// written (each with its `_id`), for `agent_state_conflicts`.
#[derive(Default)]
pub struct ThreadAside {
    pub checkpoints: Vec<Document>,
    pub blobs: Vec<Document>,
    pub writes: Vec<Document>,
    /// `_id`s of the checkpoints and blobs it dropped (not dropped in MongoDB).
    pub dropped: Vec<String>,
}

impl ThreadAside {
    pub fn of(thread: &str, dirt: &ThreadDirt) -> StoreResult<Self> {
        let with_id = |(id, mut fields): (String, Document)| {
            fields.insert("_id", id);
            fields
        };
        let mut aside = ThreadAside::default();
        for (_, c) in dirt.checkpoints.values() {
            aside.checkpoints.push(with_id(checkpoint_doc(thread, c)?));
        }
        for (_, b) in dirt.blobs.values() {
            aside.blobs.push(with_id(blob_doc(thread, b)));
        }
        for (_, w) in dirt.writes.values() {
            aside.writes.push(with_id(write_doc(thread, w)));
        }
        let checkpoints = dirt.dropped_checkpoints.keys();
        aside.dropped = checkpoints.map(|k| checkpoint_id(thread, k)).collect();
        let blobs = dirt.dropped_blobs.keys();
        aside.dropped.extend(blobs.map(|k| blob_id(thread, k)));
        Ok(aside)
    }
}

/// A checkpoint's `_id` and fields.
fn checkpoint_doc(thread: &str, c: &ThreadCheckpoint) -> StoreResult<(String, Document)> {
    let versions: Vec<Bson> = c
        .channel_versions
        .iter()
        .map(|(ch, v)| Bson::Array(vec![ch.into(), v.into()]))
        .collect();
    let metadata = to_bson(&serde_json::Value::Object(c.metadata.clone()))?;
    let mut fields = doc! {
        "thread_id": thread,
        "checkpoint_ns": &c.checkpoint_ns,
        "checkpoint_id": &c.checkpoint_id,
        "parent_checkpoint_id": c.parent_checkpoint_id.as_deref().map_or(Bson::Null, Bson::from),
        "type": &c.checkpoint.type_,
        "data": binary(&c.checkpoint.data),
        "metadata": metadata,
        "channel_versions": versions,
        "thread_version": c.version as i64,
        "created_at": mongodb::bson::DateTime::from_millis(c.created_at.timestamp_millis()),
    };
    if !c.delta_roots.is_empty() {
        // Triples, as the versions are pairs: a channel name may hold a '.' or a '$'.
        let roots: Vec<Bson> = c
            .delta_roots
            .iter()
            .map(|(ch, r)| {
                Bson::Array(vec![ch.into(), (&r.root).into(), i64::from(r.depth).into()])
            })
            .collect();
        fields.insert("delta_roots", roots);
    }
    Ok((checkpoint_id(thread, &c.key()), fields))
}

/// A blob's `_id` and fields.
fn blob_doc(thread: &str, b: &StoredBlob) -> (String, Document) {
    let mut fields = doc! {
        "thread_id": thread,
        "checkpoint_ns": &b.checkpoint_ns,
        "channel": &b.blob.channel,
        "version": &b.blob.version,
        "type": &b.blob.value.type_,
        "data": binary(&b.blob.value.data),
        "thread_version": b.version as i64,
    };
    if let (Some(extends), Some(r)) = (&b.blob.extends, &b.root) {
        fields.insert("extends", extends);
        fields.insert("root", &r.root);
        fields.insert("depth", i64::from(r.depth));
    }
    (blob_id(thread, &b.key()), fields)
}

/// A pending write's `_id` and fields.
fn write_doc(thread: &str, w: &StoredWrite) -> (String, Document) {
    let fields = doc! {
        "thread_id": thread,
        "checkpoint_ns": &w.checkpoint_ns,
        "checkpoint_id": &w.checkpoint_id,
        "task_id": &w.write.task_id,
        "idx": w.write.idx,
        "task_path": &w.write.task_path,
        "channel": &w.write.channel,
        "type": &w.write.value.type_,
        "data": binary(&w.write.value.data),
        "thread_version": w.version as i64,
    };
    let idx = w.write.idx.to_string();
    let id = key_id(&[
        thread,
        &w.checkpoint_ns,
        &w.checkpoint_id,
        &w.write.task_id,
        &idx,
    ]);
    (id, fields)
}

/// The filter and sort of a checkpoint query.
pub fn query(q: &ThreadQuery) -> StoreResult<(Document, Document)> {
    let mut f = Document::new();
    if let Some(t) = &q.thread_id {
        f.insert("thread_id", t);
    }
    if let Some(ns) = &q.checkpoint_ns {
        f.insert("checkpoint_ns", ns);
    }
    match (&q.checkpoint_id, &q.before) {
        (Some(id), Some(b)) => {
            f.insert("checkpoint_id", doc! { "$eq": id, "$lt": b });
        }
        (Some(id), None) => {
            f.insert("checkpoint_id", id);
        }
        (None, Some(b)) => {
            f.insert("checkpoint_id", doc! { "$lt": b });
        }
        (None, None) => {}
    }
    if let Some(runs) = &q.run_ids {
        f.insert("metadata.run_id", doc! { "$in": runs });
    }
    for (k, v) in &q.filter {
        // Keys MongoDB would read as a path or an operator are left to the caller.
        if !k.contains('.') && !k.starts_with('$') {
            f.insert(format!("metadata.{k}"), to_bson(v)?);
        }
    }
    let sort = doc! { "checkpoint_id": -1, "thread_id": 1, "checkpoint_ns": 1 };
    Ok((f, sort))
}

fn typed(d: &Document) -> StoreResult<Typed> {
    let data = d
        .get_binary_generic("data")
        .map_err(|e| bad_doc("data", e))?;
    Ok(Typed {
        type_: get_str(d, "type")?,
        data: Payload(Bytes::copy_from_slice(data)),
    })
}

pub fn checkpoint_from_doc(d: &Document) -> StoreResult<ThreadCheckpoint> {
    let mut channel_versions = std::collections::BTreeMap::new();
    if let Ok(pairs) = d.get_array("channel_versions") {
        for p in pairs {
            if let Some([Bson::String(ch), Bson::String(v)]) = p.as_array().map(Vec::as_slice) {
                channel_versions.insert(ch.clone(), v.clone());
            }
        }
    }
    let mut delta_roots = std::collections::BTreeMap::new();
    if let Ok(triples) = d.get_array("delta_roots") {
        for t in triples {
            match t.as_array().map(Vec::as_slice) {
                Some([Bson::String(ch), Bson::String(root), depth]) => {
                    let depth = depth
                        .as_i64()
                        .or_else(|| depth.as_i32().map(i64::from))
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| bad_doc("delta_roots", "depth is not a count"))?;
                    let root = DeltaRoot {
                        root: root.clone(),
                        depth,
                    };
                    delta_roots.insert(ch.clone(), root);
                }
                _ => return Err(bad_doc("delta_roots", "not [channel, root, depth]")),
            }
        }
    }
    Ok(ThreadCheckpoint {
        thread_id: get_str(d, "thread_id")?,
        checkpoint_ns: get_str(d, "checkpoint_ns")?,
        checkpoint_id: get_str(d, "checkpoint_id")?,
        parent_checkpoint_id: d.get_str("parent_checkpoint_id").ok().map(str::to_string),
        checkpoint: typed(d)?,
        metadata: get_map(d, "metadata"),
        channel_versions,
        version: get_u64(d, "thread_version")?,
        created_at: d
            .get_datetime("created_at")
            .ok()
            .and_then(|t| chrono::DateTime::from_timestamp_millis(t.timestamp_millis()))
            .unwrap_or_default(),
        delta_roots,
    })
}

/// The pipeline finding threads with a namespace holding more than `max_count`
/// checkpoints, or more than one with the oldest created before `cutoff`.
pub fn retention_candidates(
    max_count: Option<u64>,
    cutoff: Option<chrono::DateTime<chrono::Utc>>,
    limit: u32,
) -> Vec<Document> {
    let mut over = Vec::new();
    if let Some(n) = max_count {
        over.push(doc! { "count": { "$gt": n.min(i64::MAX as u64) as i64 } });
    }
    if let Some(t) = cutoff {
        over.push(doc! {
            "count": { "$gt": 1 },
            "oldest": { "$lt": mongodb::bson::DateTime::from_millis(t.timestamp_millis()) },
        });
    }
    vec![
        doc! { "$group": {
            "_id": { "thread_id": "$thread_id", "checkpoint_ns": "$checkpoint_ns" },
            "count": { "$sum": 1 },
            "oldest": { "$min": "$created_at" },
        } },
        doc! { "$match": { "$or": over } },
        doc! { "$group": { "_id": "$_id.thread_id" } },
        doc! { "$sort": { "_id": 1 } },
        doc! { "$limit": limit as i64 },
    ]
}

pub fn blob_filter(thread: &str, keys: &[BlobKey]) -> Document {
    let ids: Vec<String> = keys.iter().map(|k| blob_id(thread, k)).collect();
    doc! { "_id": { "$in": ids } }
}

/// The blobs of a [`BlobRange`].
pub fn blob_range_filter(thread: &str, r: &BlobRange) -> Document {
    doc! {
        "thread_id": thread,
        "checkpoint_ns": &r.ns,
        "channel": &r.channel,
        "version": { "$gte": &r.from, "$lte": &r.to },
    }
}

pub fn blob_from_doc(d: &Document) -> StoreResult<StoredBlob> {
    let root = match d.get_str("root") {
        Ok(root) => Some(DeltaRoot {
            root: root.to_string(),
            depth: get_u64(d, "depth")?
                .try_into()
                .map_err(|e| bad_doc("depth", e))?,
        }),
        Err(_) => None,
    };
    Ok(StoredBlob {
        checkpoint_ns: get_str(d, "checkpoint_ns")?,
        blob: ThreadBlob {
            channel: get_str(d, "channel")?,
            version: get_str(d, "version")?,
            value: typed(d)?,
            extends: d.get_str("extends").ok().map(str::to_string),
        },
        version: get_u64(d, "thread_version")?,
        root,
    })
}

pub fn writes_filter(thread: &str, keys: &[CheckpointKey]) -> Document {
    let any: Vec<Document> = keys
        .iter()
        .map(|k| doc! { "checkpoint_ns": &k.ns, "checkpoint_id": &k.id })
        .collect();
    doc! { "thread_id": thread, "$or": any }
}

pub fn write_from_doc(d: &Document) -> StoreResult<StoredWrite> {
    Ok(StoredWrite {
        checkpoint_ns: get_str(d, "checkpoint_ns")?,
        checkpoint_id: get_str(d, "checkpoint_id")?,
        write: ThreadWrite {
            task_id: get_str(d, "task_id")?,
            task_path: get_str(d, "task_path")?,
            idx: d.get_i64("idx").map_err(|e| bad_doc("idx", e))?,
            channel: get_str(d, "channel")?,
            value: typed(d)?,
        },
        version: get_u64(d, "thread_version")?,
    })
}
