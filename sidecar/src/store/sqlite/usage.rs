//! What the embedded store holds: per table its rows and bytes (SQLite's `dbstat`
//! table), and the agents holding the most bytes.

use agentstate_protocol::{AgentUsage, TableUsage};
use rusqlite::{params, Connection};

/// Each table and the column naming the agent (or thread) a row belongs to, if any.
pub(super) const TABLES: &[(&str, Option<&str>)] = &[
    ("agent_states", Some("agent_id")),
    ("state_transitions", Some("agent_id")),
    ("conversation_history", Some("agent_id")),
    ("checkpoints", Some("agent_id")),
    ("transfers", None),
    ("thread_checkpoints", Some("thread_id")),
    ("thread_blobs", Some("thread_id")),
    ("thread_writes", Some("thread_id")),
];

pub(super) fn tables(c: &Connection) -> rusqlite::Result<Vec<TableUsage>> {
    // Pages of each table and of each index, by the table they belong to.
    let mut pages = c.prepare_cached(
        "SELECT m.tbl_name, m.type = 'index', SUM(d.pgsize), SUM(d.payload)
         FROM dbstat AS d JOIN sqlite_master AS m ON m.name = d.name
         GROUP BY m.tbl_name, m.type = 'index'",
    )?;
    let mut out: Vec<TableUsage> = TABLES
        .iter()
        .map(|(name, _)| TableUsage {
            name: name.to_string(),
            rows: 0,
            data_bytes: 0,
            storage_bytes: 0,
            index_bytes: 0,
        })
        .collect();
    let rows = pages.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, bool>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    for row in rows {
        let (table, is_index, size, payload) = row?;
        let Some(t) = out.iter_mut().find(|t| t.name == table) else {
            continue;
        };
        if is_index {
            t.index_bytes += size.max(0) as u64;
        } else {
            t.storage_bytes += size.max(0) as u64;
            t.data_bytes += payload.max(0) as u64;
        }
    }
    for t in &mut out {
        let n: i64 = c.query_row(&format!("SELECT COUNT(*) FROM {}", t.name), [], |r| {
            r.get(0)
        })?;
        t.rows = n.max(0) as u64;
    }
    Ok(out)
}

/// The `top` agents holding the most bytes: every column of every row of theirs.
pub(super) fn largest(c: &Connection, top: u32) -> rusqlite::Result<Vec<AgentUsage>> {
    let mut parts = Vec::new();
    for (table, id) in TABLES {
        let Some(id) = id else { continue };
        let mut cols = c.prepare_cached("SELECT name FROM pragma_table_info(?1)")?;
        let names: Vec<String> = cols
            .query_map(params![table], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let bytes: Vec<String> = names
            .iter()
            .map(|n| format!("IFNULL(LENGTH(CAST(\"{n}\" AS BLOB)), 0)"))
            .collect();
        parts.push(format!(
            "SELECT {id} AS agent_id, SUM({}) AS bytes FROM {table} GROUP BY {id}",
            bytes.join(" + ")
        ));
    }
    let sql = format!(
        "SELECT agent_id, SUM(bytes) AS total FROM ({}) GROUP BY agent_id
         ORDER BY total DESC, agent_id LIMIT ?1",
        parts.join(" UNION ALL ")
    );
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(params![top], |r| {
        Ok(AgentUsage {
            agent_id: r.get(0)?,
            bytes: r.get::<_, i64>(1)?.max(0) as u64,
        })
    })?;
    rows.collect()
}
