//! What the inspector reads of agents (a filtered listing, transfers, one timeline of
//! everything that happened to an agent) and its writes to them: a rollback and an
//! abort, each with the operator's reason in the log.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use agentstate_protocol::{
    AgentSummary, AgentsPage, Durability, TimelineEntry, TimelineKind, TimelinePage, TransfersPage,
};

use super::threads::check_reason;
use super::{ops, Engine, EngineError, EngineResult, Precondition, PAGE_LIMIT_MAX};
use crate::model::{
    AgentRecord, Checkpoint, Message, StateTransition, Transfer, TransitionResponse,
};
use crate::store::AgentFilter;

/// Most transfers and checkpoints of one agent a timeline interleaves.
const TIMELINE_SIDE_MAX: u32 = PAGE_LIMIT_MAX;

type Entry = TimelineEntry<crate::doc::Doc, crate::doc::DocMap>;

fn summary(r: &AgentRecord) -> AgentSummary {
    let s = &r.state;
    AgentSummary {
        agent_id: s.agent_id.clone(),
        agent_type: s.agent_type.clone(),
        state_name: s.state_name.clone(),
        version: s.version,
        created_at: s.created_at,
        updated_at: s.updated_at,
        pending: s.pending_transition.is_some(),
    }
}

/// Where a timeline page ends: the last transition and message seq shown, and how many
/// of the agent's checkpoints and transfers (in time order) were shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimelineCursor {
    transitions: u64,
    messages: u64,
    checkpoints: usize,
    transfers: usize,
}

impl TimelineCursor {
    pub fn parse(s: &str) -> EngineResult<TimelineCursor> {
        let bad = || EngineError::Malformed(format!("cursor {s:?} is not one this sidecar gave"));
        let parts: Vec<&str> = s.split('.').collect();
        let [t, m, c, x] = parts[..] else {
            return Err(bad());
        };
        Ok(TimelineCursor {
            transitions: t.parse().map_err(|_| bad())?,
            messages: m.parse().map_err(|_| bad())?,
            checkpoints: c.parse().map_err(|_| bad())?,
            transfers: x.parse().map_err(|_| bad())?,
        })
    }

    fn render(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.transitions, self.messages, self.checkpoints, self.transfers
        )
    }
}

impl Engine {
    /// `GET /v1/agents`: agents `filter` keeps with ids after `cursor`, unflushed changes
    /// included. A page may be short of `limit` and still have a `next_cursor`.
    pub async fn list_agents(
        &self,
        filter: AgentFilter,
        cursor: &str,
        limit: u32,
    ) -> EngineResult<AgentsPage> {
        let limit = limit.clamp(1, PAGE_LIMIT_MAX) as usize;
        // The backlog before the store: an agent leaves the one only once the other has
        // it, so this order cannot miss one in transit.
        let pending: Vec<String> = self
            .backlog
            .agent_ids(cursor)
            .into_iter()
            .filter(|id| id.starts_with(&filter.prefix))
            .collect();
        let stored = self
            .store
            .agent_summaries(filter.clone(), cursor, limit as u32)
            .await?;
        // A full page from the store covers ids up to its last; a short one, all.
        let full = stored.len() >= limit;
        let bound = stored.last().map(|s| s.agent_id.clone()).filter(|_| full);
        let pending_ids: HashSet<&str> = pending.iter().map(String::as_str).collect();
        let mut rows: BTreeMap<String, AgentSummary> = stored
            .into_iter()
            .filter(|s| !pending_ids.contains(s.agent_id.as_str()))
            .map(|s| (s.agent_id.clone(), s))
            .collect();
        // Unflushed agents as they are now, in order, until a page's worth is found.
        let mut changed = Vec::new();
        let mut stopped_early = false;
        for id in pending
            .iter()
            .filter(|id| bound.as_ref().is_none_or(|b| *id <= b))
        {
            if changed.len() >= limit {
                stopped_early = true;
                break;
            }
            match self.read_live(id).await {
                Ok(r) if filter.admits(&summary(&r)) => changed.push(summary(&r)),
                Ok(_) | Err(EngineError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if filter.failed && !changed.is_empty() {
            let ids: Vec<String> = changed.iter().map(|s| s.agent_id.clone()).collect();
            let stored_failures: HashSet<String> =
                self.store.with_failures(ids).await?.into_iter().collect();
            changed.retain(|s| {
                stored_failures.contains(&s.agent_id)
                    || self
                        .backlog
                        .transitions(&s.agent_id, 0)
                        .iter()
                        .any(|t| !t.success)
            });
        }
        rows.extend(changed.into_iter().map(|s| (s.agent_id.clone(), s)));
        let mut agents: Vec<AgentSummary> = rows.into_values().collect();
        let next_cursor = if agents.len() > limit || (stopped_early && agents.len() == limit) {
            agents.truncate(limit);
            agents.last().map(|a| a.agent_id.clone())
        } else {
            bound
        };
        Ok(AgentsPage {
            agents,
            next_cursor,
        })
    }

    /// Transfers from or to `agent` with ids after `after`, in order of id, at most
    /// `limit`, unflushed ones included.
    async fn transfers_of(
        &self,
        agent: &str,
        after: &str,
        limit: u32,
    ) -> EngineResult<Vec<Transfer>> {
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        let pending: Vec<Transfer> = self
            .backlog
            .transfers_after(after)
            .into_iter()
            .filter(|t| t.from_agent == agent || t.to_agent == agent)
            .collect();
        let stored = self.store.transfers_of(agent, after, limit).await?;
        Ok(super::backup::merge_by_key(
            stored,
            pending,
            |t| t.transfer_id.clone(),
            limit,
        ))
    }

    /// `GET /v1/transfers`: in order of id, all or those from or to `agent`.
    pub async fn list_transfers(
        &self,
        agent: Option<&str>,
        cursor: &str,
        limit: u32,
    ) -> EngineResult<TransfersPage<crate::doc::Doc>> {
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        let transfers = match agent {
            Some(a) => self.transfers_of(a, cursor, limit).await?,
            None => self.transfers_after(cursor, limit).await?,
        };
        let next_cursor = (transfers.len() >= limit as usize)
            .then(|| transfers.last().map(|t| t.transfer_id.clone()))
            .flatten();
        Ok(TransfersPage {
            transfers,
            next_cursor,
        })
    }

    /// `GET /v1/agents/{id}/timeline`: the agent's transitions (refused ones, rollbacks
    /// and aborts among them), messages, checkpoints and transfers in time order,
    /// oldest first, from `cursor` on.
    pub async fn timeline(
        &self,
        agent_id: &str,
        cursor: TimelineCursor,
        limit: u32,
    ) -> EngineResult<TimelinePage<crate::doc::Doc, crate::doc::DocMap>> {
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        // Each source in time order, `limit` of each at most: the page is the first
        // `limit` of their merge.
        let transitions = self
            .transitions(agent_id, cursor.transitions, limit)
            .await?;
        let messages = self.messages(agent_id, cursor.messages, limit).await?;
        // A full read may have more after it.
        let more = transitions.len() >= limit as usize || messages.len() >= limit as usize;
        let mut checkpoints = self.checkpoints(agent_id).await?;
        checkpoints.sort_by_key(|c| c.created_at);
        let mut transfers = Vec::new();
        let mut after = String::new();
        loop {
            let page = self
                .transfers_of(agent_id, &after, TIMELINE_SIDE_MAX)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.transfer_id.clone();
            transfers.extend(page);
            if transfers.len() >= TIMELINE_SIDE_MAX as usize {
                break;
            }
        }
        transfers.sort_by_key(|t| t.created_at);
        let mut sources = Sources {
            transitions: transitions.into_iter().peekable(),
            messages: messages.into_iter().peekable(),
            checkpoints: checkpoints.into_iter().skip(cursor.checkpoints).peekable(),
            transfers: transfers.into_iter().skip(cursor.transfers).peekable(),
        };
        let mut next = cursor;
        let mut entries = Vec::new();
        while entries.len() < limit as usize {
            let Some(entry) = sources.next(&mut next) else {
                break;
            };
            entries.push(entry);
        }
        let next_cursor = (more || sources.any_left()).then(|| next.render());
        Ok(TimelinePage {
            entries,
            next_cursor,
        })
    }

    /// `POST /v1/inspector/agents/{id}/rollback`: a rollback with the reason logged.
    pub async fn inspector_rollback(
        self: &Arc<Self>,
        agent_id: String,
        checkpoint_id: String,
        reason: String,
        durability: Durability,
    ) -> EngineResult<TransitionResponse> {
        check_reason(&reason)?;
        self.rollback(
            agent_id,
            checkpoint_id,
            Precondition::None,
            durability,
            Some(reason),
        )
        .await
    }

    /// `POST /v1/inspector/agents/{id}/transitions/{tid}/abort`: an abort with the
    /// reason logged.
    pub async fn inspector_abort(
        self: &Arc<Self>,
        agent_id: String,
        transition_id: String,
        reason: String,
        durability: Durability,
    ) -> EngineResult<TransitionResponse> {
        check_reason(&reason)?;
        self.finish_transition(
            agent_id,
            transition_id,
            ops::Finish::Abort(Some("aborted from the inspector".into())),
            Precondition::None,
            durability,
            Some(reason),
        )
        .await
    }
}

/// The four sources of a timeline page.
struct Sources<A, B, C, D>
where
    A: Iterator<Item = StateTransition>,
    B: Iterator<Item = Message>,
    C: Iterator<Item = Checkpoint>,
    D: Iterator<Item = Transfer>,
{
    transitions: std::iter::Peekable<A>,
    messages: std::iter::Peekable<B>,
    checkpoints: std::iter::Peekable<C>,
    transfers: std::iter::Peekable<D>,
}

impl<A, B, C, D> Sources<A, B, C, D>
where
    A: Iterator<Item = StateTransition>,
    B: Iterator<Item = Message>,
    C: Iterator<Item = Checkpoint>,
    D: Iterator<Item = Transfer>,
{
    /// The earliest entry of the four (ties: in the order of the fields), moving
    /// `cursor` past it.
    fn next(&mut self, cursor: &mut TimelineCursor) -> Option<Entry> {
        let times = [
            self.transitions.peek().map(|t| t.timestamp),
            self.messages.peek().map(|m| m.timestamp),
            self.checkpoints.peek().map(|c| c.created_at),
            self.transfers.peek().map(|t| t.created_at),
        ];
        let (which, at) = times
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.map(|t| (i, t)))
            .min_by_key(|(i, t)| (*t, *i))?;
        let mut entry = Entry {
            kind: TimelineKind::Transition,
            at,
            transition: None,
            message: None,
            checkpoint: None,
            transfer: None,
        };
        match which {
            0 => {
                let t = self.transitions.next()?;
                cursor.transitions = t.seq;
                entry.transition = Some(t);
            }
            1 => {
                let m = self.messages.next()?;
                cursor.messages = m.seq;
                entry.kind = TimelineKind::Message;
                entry.message = Some(m);
            }
            2 => {
                cursor.checkpoints += 1;
                entry.kind = TimelineKind::Checkpoint;
                entry.checkpoint = Some(self.checkpoints.next()?);
            }
            _ => {
                cursor.transfers += 1;
                entry.kind = TimelineKind::Transfer;
                entry.transfer = Some(self.transfers.next()?);
            }
        }
        Some(entry)
    }

    fn any_left(&mut self) -> bool {
        self.transitions.peek().is_some()
            || self.messages.peek().is_some()
            || self.checkpoints.peek().is_some()
            || self.transfers.peek().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_cursors_round_trip_and_refuse_others() {
        let c = TimelineCursor {
            transitions: 3,
            messages: 10,
            checkpoints: 1,
            transfers: 0,
        };
        assert_eq!(TimelineCursor::parse(&c.render()).unwrap(), c);
        for bad in ["", "1.2.3", "1.2.3.x", "1.2.3.4.5", "-1.0.0.0"] {
            assert!(TimelineCursor::parse(bad).is_err(), "{bad:?}");
        }
    }
}
