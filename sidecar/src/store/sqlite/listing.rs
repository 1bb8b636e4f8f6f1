//! Listings the inspector pages through: agents by filter, threads, an agent's transfers.

use agentstate_protocol::{AgentSummary, ThreadSummary};
use rusqlite::{params, Connection, OptionalExtension};

use super::{parse_json, parse_ts, ts};
use crate::model::Transfer;
use crate::store::{id_range, AgentFilter};

pub(super) fn agents(
    c: &Connection,
    f: &AgentFilter,
    after: &str,
    limit: u32,
) -> rusqlite::Result<Vec<AgentSummary>> {
    let mut stmt = c.prepare_cached(
        "SELECT agent_id, agent_type, state_name, version, created_at, updated_at,
                pending_transition IS NOT NULL
         FROM agent_states AS a
         WHERE agent_id >= ?1 AND agent_id < ?2
           AND (?3 IS NULL OR state_name = ?3)
           AND (?4 IS NULL OR agent_type = ?4)
           AND (?5 IS NULL OR updated_at > ?5)
           AND (NOT ?6 OR EXISTS (SELECT 1 FROM state_transitions AS t
                                  WHERE t.agent_id = a.agent_id AND t.success = 0))
         ORDER BY agent_id LIMIT ?7",
    )?;
    let (from, to) = id_range(after, &f.prefix);
    let rows = stmt.query_map(
        params![
            from,
            to,
            f.state,
            f.agent_type,
            f.updated_after.as_ref().map(ts),
            f.failed,
            limit
        ],
        |r| {
            Ok(AgentSummary {
                agent_id: r.get(0)?,
                agent_type: r.get(1)?,
                state_name: r.get(2)?,
                version: r.get(3)?,
                created_at: parse_ts(&r.get::<_, String>(4)?)?,
                updated_at: parse_ts(&r.get::<_, String>(5)?)?,
                pending: r.get(6)?,
            })
        },
    )?;
    rows.collect()
}

/// Which of `ids` have a refused transition stored.
pub(super) fn with_failures(c: &Connection, ids: &[String]) -> rusqlite::Result<Vec<String>> {
    let mut stmt = c.prepare_cached(
        "SELECT 1 FROM state_transitions WHERE agent_id = ?1 AND success = 0 LIMIT 1",
    )?;
    let mut out = Vec::new();
    for id in ids {
        if stmt
            .query_row(params![id], |_| Ok(()))
            .optional()?
            .is_some()
        {
            out.push(id.clone());
        }
    }
    Ok(out)
}

pub(super) fn threads(
    c: &Connection,
    prefix: &str,
    after: &str,
    limit: u32,
) -> rusqlite::Result<Vec<ThreadSummary>> {
    let mut stmt = c.prepare_cached(
        "SELECT thread_id, COUNT(*), MAX(checkpoint_id) FROM thread_checkpoints
         WHERE thread_id >= ?1 AND thread_id < ?2
         GROUP BY thread_id ORDER BY thread_id LIMIT ?3",
    )?;
    let (from, to) = id_range(after, prefix);
    let rows = stmt.query_map(params![from, to, limit], |r| {
        Ok(ThreadSummary {
            thread_id: r.get(0)?,
            checkpoints: r.get(1)?,
            latest_checkpoint_id: r.get(2)?,
        })
    })?;
    rows.collect()
}

pub(super) fn transfers_of(
    c: &Connection,
    agent: &str,
    after: &str,
    limit: u32,
) -> rusqlite::Result<Vec<Transfer>> {
    let mut stmt = c.prepare_cached(
        "SELECT transfer_id, body FROM transfers WHERE transfer_id > ?2 AND from_agent = ?1
         UNION
         SELECT transfer_id, body FROM transfers WHERE transfer_id > ?2 AND to_agent = ?1
         ORDER BY transfer_id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![agent, after, limit], |r| {
        parse_json::<Transfer>(&r.get::<_, String>(1)?)
    })?;
    rows.collect()
}
