//! Threads' framework checkpoints in the embedded store: three tables mirroring the
//! MongoDB collections, payloads as BLOBs, metadata as JSON text (with `run_id` pulled
//! out into an indexed column for deletes by run).

use agentstate_protocol::{Payload, ThreadBlob, ThreadWrite, Typed};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rusqlite::{params, params_from_iter, types::Value as SqlValue, Connection, Transaction};

use super::{parse_json, parse_ts, to_json, ts};
use crate::backlog::ThreadDirt;
use crate::model::{BlobKey, CheckpointKey, DeltaRoot, StoredBlob, StoredWrite, ThreadCheckpoint};
use crate::store::{BlobRange, ThreadQuery};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS thread_checkpoints (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    parent_checkpoint_id TEXT,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    metadata TEXT NOT NULL,
    channel_versions TEXT NOT NULL,
    run_id TEXT,
    thread_version INTEGER NOT NULL,
    created_at TEXT NOT NULL DEFAULT '1970-01-01T00:00:00.000Z',
    delta_roots TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id)
);
CREATE INDEX IF NOT EXISTS thread_checkpoints_id ON thread_checkpoints (checkpoint_id);
CREATE INDEX IF NOT EXISTS thread_checkpoints_run ON thread_checkpoints (run_id);
CREATE TABLE IF NOT EXISTS thread_blobs (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    channel TEXT NOT NULL,
    version TEXT NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    thread_version INTEGER NOT NULL,
    extends TEXT,
    root TEXT,
    depth INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (thread_id, checkpoint_ns, channel, version)
);
CREATE TABLE IF NOT EXISTS thread_writes (
    thread_id TEXT NOT NULL,
    checkpoint_ns TEXT NOT NULL,
    checkpoint_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    task_path TEXT NOT NULL,
    channel TEXT NOT NULL,
    type TEXT NOT NULL,
    data BLOB NOT NULL,
    thread_version INTEGER NOT NULL,
    PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id, task_id, idx)
);
";

/// Columns added after the first version of the tables, as `(table, column,
/// definition)`.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    (
        "thread_checkpoints",
        "created_at",
        "TEXT NOT NULL DEFAULT '1970-01-01T00:00:00.000Z'",
    ),
    (
        "thread_checkpoints",
        "delta_roots",
        "TEXT NOT NULL DEFAULT '{}'",
    ),
    ("thread_blobs", "extends", "TEXT"),
    ("thread_blobs", "root", "TEXT"),
    ("thread_blobs", "depth", "INTEGER NOT NULL DEFAULT 0"),
    ("state_transitions", "reason", "TEXT"),
];

/// Brings tables made by an older version up to the schema.
pub(super) fn migrate(c: &Connection) -> rusqlite::Result<()> {
    for (table, column, definition) in ADDED_COLUMNS {
        let table_exists: bool = c.query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            params![table],
            |r| r.get(0),
        )?;
        if !table_exists {
            // Made whole by its CREATE TABLE instead.
            continue;
        }
        let present: bool = c.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            params![table, column],
            |r| r.get(0),
        )?;
        if !present {
            c.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    Ok(())
}

/// Threads with a namespace holding more than `max_count` checkpoints, or more than one
/// with the oldest created before `cutoff`: those retention may thin out.
pub(super) fn retention_candidates(
    c: &Connection,
    max_count: Option<u64>,
    cutoff: Option<DateTime<Utc>>,
    limit: u32,
) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT DISTINCT thread_id FROM (
             SELECT thread_id FROM thread_checkpoints GROUP BY thread_id, checkpoint_ns
             HAVING COUNT(*) > ?1 OR (COUNT(*) > 1 AND MIN(created_at) < ?2))
         ORDER BY thread_id LIMIT ?3",
    )?;
    let max_count = max_count.map_or(i64::MAX, |n| n.min(i64::MAX as u64) as i64);
    let cutoff = cutoff.map(|t| ts(&t)).unwrap_or_default();
    let rows = stmt.query_map(params![max_count, cutoff, limit], |r| r.get(0))?;
    rows.collect()
}

/// Deletes what a thread's delete purges: everything written before `version`.
pub(super) fn purge(tx: &Transaction<'_>, thread: &str, version: u64) -> rusqlite::Result<()> {
    for table in ["thread_checkpoints", "thread_blobs", "thread_writes"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE thread_id = ?1 AND thread_version < ?2"),
            params![thread, version],
        )?;
    }
    Ok(())
}

/// Writes a thread's unflushed changes: drops first, then puts.
pub(super) fn write(tx: &Transaction<'_>, thread: &str, dirt: &ThreadDirt) -> rusqlite::Result<()> {
    for k in dirt.dropped_checkpoints.keys() {
        tx.execute(
            "DELETE FROM thread_checkpoints WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND checkpoint_id = ?3",
            params![thread, k.ns, k.id],
        )?;
        tx.execute(
            "DELETE FROM thread_writes WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND checkpoint_id = ?3",
            params![thread, k.ns, k.id],
        )?;
    }
    for k in dirt.dropped_blobs.keys() {
        tx.execute(
            "DELETE FROM thread_blobs WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND channel = ?3 AND version = ?4",
            params![thread, k.ns, k.channel, k.version],
        )?;
    }
    for (_, c) in dirt.checkpoints.values() {
        let run_id = c.metadata.get("run_id").and_then(|v| v.as_str());
        tx.prepare_cached(
            "INSERT OR REPLACE INTO thread_checkpoints (thread_id, checkpoint_ns, checkpoint_id,
                 parent_checkpoint_id, type, data, metadata, channel_versions, run_id, thread_version,
                 created_at, delta_roots)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            thread,
            c.checkpoint_ns,
            c.checkpoint_id,
            c.parent_checkpoint_id,
            c.checkpoint.type_,
            &c.checkpoint.data.0[..],
            to_json(&c.metadata)?,
            to_json(&c.channel_versions)?,
            run_id,
            c.version,
            ts(&c.created_at),
            to_json(&c.delta_roots)?,
        ])?;
    }
    for (_, b) in dirt.blobs.values() {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO thread_blobs (thread_id, checkpoint_ns, channel, version, type, data,
                 thread_version, extends, root, depth)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            thread,
            b.checkpoint_ns,
            b.blob.channel,
            b.blob.version,
            b.blob.value.type_,
            &b.blob.value.data.0[..],
            b.version,
            b.blob.extends,
            b.root.as_ref().map(|r| &r.root),
            b.root.as_ref().map_or(0, |r| r.depth),
        ])?;
    }
    for (_, w) in dirt.writes.values() {
        // At idx >= 0 the first write of a key wins; below 0 the last.
        let verb = if w.write.idx >= 0 {
            "INSERT OR IGNORE"
        } else {
            "INSERT OR REPLACE"
        };
        tx.prepare_cached(&format!(
            "{verb} INTO thread_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, idx,
                 task_path, channel, type, data, thread_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ))?
        .execute(params![
            thread,
            w.checkpoint_ns,
            w.checkpoint_id,
            w.write.task_id,
            w.write.idx,
            w.write.task_path,
            w.write.channel,
            w.write.value.type_,
            &w.write.value.data.0[..],
            w.version,
        ])?;
    }
    Ok(())
}

fn typed(type_: String, data: Vec<u8>) -> Typed {
    Typed {
        type_,
        data: Payload(Bytes::from(data)),
    }
}

/// Checkpoints matching `q`, greatest id first. The metadata filter is left to the
/// caller (JSON equality is not SQL's).
pub(super) fn checkpoints(
    c: &Connection,
    q: &ThreadQuery,
) -> rusqlite::Result<Vec<ThreadCheckpoint>> {
    let mut sql = String::from(
        "SELECT thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, data,
                metadata, channel_versions, thread_version, created_at, delta_roots
         FROM thread_checkpoints WHERE 1 = 1",
    );
    let mut args: Vec<SqlValue> = Vec::new();
    let mut cond = |sql: &mut String, clause: &str, v: &str| {
        args.push(SqlValue::Text(v.to_string()));
        sql.push_str(&format!(" AND {clause} ?{}", args.len()));
    };
    if let Some(t) = &q.thread_id {
        cond(&mut sql, "thread_id =", t);
    }
    if let Some(ns) = &q.checkpoint_ns {
        cond(&mut sql, "checkpoint_ns =", ns);
    }
    if let Some(id) = &q.checkpoint_id {
        cond(&mut sql, "checkpoint_id =", id);
    }
    if let Some(b) = &q.before {
        cond(&mut sql, "checkpoint_id <", b);
    }
    if let Some(runs) = &q.run_ids {
        let marks: Vec<String> = runs
            .iter()
            .map(|r| {
                args.push(SqlValue::Text(r.clone()));
                format!("?{}", args.len())
            })
            .collect();
        sql.push_str(&format!(" AND run_id IN ({})", marks.join(", ")));
    }
    sql.push_str(&format!(
        " ORDER BY checkpoint_id DESC, thread_id, checkpoint_ns LIMIT {}",
        q.limit
    ));
    let mut stmt = c.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok(ThreadCheckpoint {
            thread_id: r.get(0)?,
            checkpoint_ns: r.get(1)?,
            checkpoint_id: r.get(2)?,
            parent_checkpoint_id: r.get(3)?,
            checkpoint: typed(r.get(4)?, r.get(5)?),
            metadata: parse_json(&r.get::<_, String>(6)?)?,
            channel_versions: parse_json(&r.get::<_, String>(7)?)?,
            version: r.get(8)?,
            created_at: parse_ts(&r.get::<_, String>(9)?)?,
            delta_roots: parse_json(&r.get::<_, String>(10)?)?,
        })
    })?;
    rows.collect()
}

/// Columns of a blob row after its key, in the order [`blob_row`] reads them.
const BLOB_COLUMNS: &str = "type, data, thread_version, extends, root, depth";

fn blob_row(
    ns: &str,
    channel: &str,
    version: String,
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<StoredBlob> {
    let root: Option<String> = r.get(4)?;
    Ok(StoredBlob {
        checkpoint_ns: ns.to_string(),
        blob: ThreadBlob {
            channel: channel.to_string(),
            version,
            value: typed(r.get(0)?, r.get(1)?),
            extends: r.get(3)?,
        },
        version: r.get(2)?,
        root: root.map(|root| DeltaRoot {
            root,
            depth: r.get(5).unwrap_or(0),
        }),
    })
}

pub(super) fn blobs(
    c: &Connection,
    thread: &str,
    keys: &[BlobKey],
) -> rusqlite::Result<Vec<StoredBlob>> {
    let mut stmt = c.prepare_cached(&format!(
        "SELECT {BLOB_COLUMNS} FROM thread_blobs
         WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND channel = ?3 AND version = ?4"
    ))?;
    let mut out = Vec::new();
    for k in keys {
        let mut rows = stmt.query(params![thread, k.ns, k.channel, k.version])?;
        if let Some(r) = rows.next()? {
            out.push(blob_row(&k.ns, &k.channel, k.version.clone(), r)?);
        }
    }
    Ok(out)
}

/// A channel's blobs with versions from `from` to `to` (inclusive): where a chain of
/// deltas lies.
pub(super) fn blob_range(
    c: &Connection,
    thread: &str,
    range: &BlobRange,
) -> rusqlite::Result<Vec<StoredBlob>> {
    let mut stmt = c.prepare_cached(
        "SELECT type, CASE WHEN ?6 THEN data ELSE x'' END, thread_version, extends, root, depth,
                version
         FROM thread_blobs
         WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND channel = ?3
           AND version >= ?4 AND version <= ?5",
    )?;
    let rows = stmt.query_map(
        params![
            thread,
            range.ns,
            range.channel,
            range.from,
            range.to,
            range.values
        ],
        |r| blob_row(&range.ns, &range.channel, r.get(6)?, r),
    )?;
    rows.collect()
}

pub(super) fn writes(
    c: &Connection,
    thread: &str,
    keys: &[CheckpointKey],
) -> rusqlite::Result<Vec<StoredWrite>> {
    let mut stmt = c.prepare_cached(
        "SELECT task_id, idx, task_path, channel, type, data, thread_version FROM thread_writes
         WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND checkpoint_id = ?3",
    )?;
    let mut out = Vec::new();
    for k in keys {
        let rows = stmt.query_map(params![thread, k.ns, k.id], |r| {
            Ok(StoredWrite {
                checkpoint_ns: k.ns.clone(),
                checkpoint_id: k.id.clone(),
                write: ThreadWrite {
                    task_id: r.get(0)?,
                    idx: r.get(1)?,
                    task_path: r.get(2)?,
                    channel: r.get(3)?,
                    value: typed(r.get(4)?, r.get(5)?),
                },
                version: r.get(6)?,
            })
        })?;
        for w in rows {
            out.push(w?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_without_created_at_gains_it() {
        let c = Connection::open_in_memory().unwrap();
        // The table as the first version of the threads API made it.
        c.execute_batch(
            "CREATE TABLE thread_checkpoints (
                 thread_id TEXT NOT NULL, checkpoint_ns TEXT NOT NULL, checkpoint_id TEXT NOT NULL,
                 parent_checkpoint_id TEXT, type TEXT NOT NULL, data BLOB NOT NULL,
                 metadata TEXT NOT NULL, channel_versions TEXT NOT NULL, run_id TEXT,
                 thread_version INTEGER NOT NULL,
                 PRIMARY KEY (thread_id, checkpoint_ns, checkpoint_id));
             INSERT INTO thread_checkpoints VALUES ('t', '', '01', NULL, 'json', x'7b7d', '{}', '{}', NULL, 1);",
        )
        .unwrap();
        c.execute_batch(SCHEMA).unwrap();
        migrate(&c).unwrap();
        migrate(&c).unwrap(); // twice is fine
        let q = ThreadQuery {
            thread_id: Some("t".into()),
            limit: 10,
            ..Default::default()
        };
        let rows = checkpoints(&c, &q).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].created_at, DateTime::<Utc>::default());
        // Old rows count as old for age limits, never as candidates alone.
        let found = retention_candidates(&c, None, Some(Utc::now()), 10).unwrap();
        assert!(found.is_empty(), "a namespace's only checkpoint stays");
    }
}
