//! The transition log and the conversation: pages that merge the backend's entries with
//! unflushed ones, appends, and removals.

use std::sync::Arc;

use agentstate_protocol::{AppendMessagesResponse, Durability};

use crate::model::{Current, Message, NewMessage, Op, PopMessageResponse, StateTransition};

use super::ops::Built;
use super::{now, ops, Engine, EngineResult, Precondition, PAGE_LIMIT_MAX, SEQ_MAX};

impl Engine {
    /// `GET /v1/agents/{id}/transitions`: backend page merged with unflushed entries.
    pub async fn transitions(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> EngineResult<Vec<StateTransition>> {
        self.read_live(agent_id).await?;
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        let after = after.min(SEQ_MAX);
        // Entries a pending delete will purge are gone already, as far as readers know.
        let floor = self
            .backlog
            .purge(agent_id)
            .map_or(after, |t| after.max(t.transition_seq));
        let pending = self.backlog.transitions(agent_id, floor);
        let stored = self.store.transitions(agent_id, floor, limit).await?;
        Ok(merge_by_seq(stored, pending, |t| t.seq, limit))
    }

    /// `POST /v1/agents/{id}/messages`: returns the new messages' sequence numbers.
    pub async fn append_messages(
        self: &Arc<Self>,
        agent_id: String,
        messages: Vec<NewMessage>,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<AppendMessagesResponse> {
        ops::check_messages(&messages, &self.opts.limits)?;
        self.change(
            agent_id,
            durability,
            move |_, id, current| ops::messages(id, current, messages, cond, now()).map(Built::Ok),
            |op, _| {
                let Op::Messages { record, messages } = op else {
                    unreachable!("messages builds Messages")
                };
                AppendMessagesResponse {
                    seqs: messages.iter().map(|m| m.seq).collect(),
                    version: record.state.version,
                }
            },
        )
        .await
    }

    /// `GET /v1/agents/{id}/messages`.
    pub async fn messages(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> EngineResult<Vec<Message>> {
        self.read_live(agent_id).await?;
        let limit = limit.clamp(1, PAGE_LIMIT_MAX);
        let after = after.min(SEQ_MAX);
        let floor = self
            .backlog
            .purge(agent_id)
            .map_or(after, |t| after.max(t.message_seq));
        let pending = self.backlog.messages(agent_id, floor);
        // Removed messages the backend still has are skipped, range by range.
        let drops = self.backlog.message_drops(agent_id);
        let mut stored = Vec::new();
        let mut cursor = floor;
        loop {
            while let Some((_, to)) = drops
                .iter()
                .find(|(from, to)| *from <= cursor + 1 && cursor < *to)
            {
                cursor = *to;
            }
            let page = self.store.messages(agent_id, cursor, limit).await?;
            let full = page.len() >= limit as usize;
            cursor = page.last().map_or(cursor, |m| m.seq);
            stored.extend(page.into_iter().filter(|m| !dropped(&drops, m.seq)));
            if !full || stored.len() >= limit as usize {
                break;
            }
        }
        Ok(merge_by_seq(stored, pending, |m| m.seq, limit))
    }

    /// `GET /v1/agents/{id}/messages?last=N`: the latest `n`, oldest first.
    pub async fn last_messages(&self, agent_id: &str, n: u32) -> EngineResult<Vec<Message>> {
        let record = self.read_live(agent_id).await?;
        self.recent_messages(agent_id, record.message_seq, n.clamp(1, PAGE_LIMIT_MAX))
            .await
    }

    /// The latest `n` messages with `seq <= upto`, oldest first.
    pub(crate) async fn recent_messages(
        &self,
        agent_id: &str,
        upto: u64,
        n: u32,
    ) -> EngineResult<Vec<Message>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let floor = self.backlog.purge(agent_id).map_or(0, |t| t.message_seq);
        let pending: Vec<Message> = self
            .backlog
            .messages(agent_id, floor)
            .into_iter()
            .filter(|m| m.seq <= upto)
            .collect();
        let drops = self.backlog.message_drops(agent_id);
        let mut stored_upto = pending.first().map_or(upto, |m| m.seq - 1);
        let mut out: Vec<Message> = Vec::new();
        while out.len() < n as usize {
            while let Some((from, _)) = drops
                .iter()
                .find(|(from, to)| *from <= stored_upto && stored_upto <= *to)
            {
                stored_upto = from.saturating_sub(1);
            }
            if stored_upto <= floor {
                break;
            }
            let page = self.store.last_messages(agent_id, stored_upto, n).await?;
            let full = page.len() >= n as usize;
            stored_upto = page.first().map_or(0, |m| m.seq.saturating_sub(1));
            let mut kept: Vec<Message> = page
                .into_iter()
                .filter(|m| m.seq > floor && !dropped(&drops, m.seq))
                .collect();
            kept.append(&mut out);
            out = kept;
            if !full {
                break;
            }
        }
        out.extend(pending);
        let skip = out.len().saturating_sub(n as usize);
        Ok(out.split_off(skip))
    }

    /// `DELETE /v1/agents/{id}/messages/last`: removes the latest message.
    pub async fn pop_message(
        self: &Arc<Self>,
        agent_id: String,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<PopMessageResponse> {
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let record = engine.live_to_change(&agent_id).await?;
            cond.check(Some(&Current::Live(record.clone())))?;
            let last = engine
                .recent_messages(&agent_id, record.message_seq, 1)
                .await?
                .pop();
            let Some(message) = last else {
                let version = record.state.version;
                return Ok((
                    PopMessageResponse {
                        message: None,
                        version,
                    },
                    None,
                ));
            };
            let mut op = Op::DropMessages {
                record: ops::next(&record, now()).into(),
                from_seq: message.seq,
                to_seq: message.seq,
            };
            let lsn = engine.log(&mut op, durability).await?;
            let version = ops::version_of(&op, &agent_id);
            Ok((
                PopMessageResponse {
                    message: Some(message),
                    version,
                },
                Some(lsn),
            ))
        })
        .await
    }

    /// `DELETE /v1/agents/{id}/messages`: removes the whole conversation.
    pub async fn clear_messages(
        self: &Arc<Self>,
        agent_id: String,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<u64> {
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let record = engine.live_to_change(&agent_id).await?;
            cond.check(Some(&Current::Live(record.clone())))?;
            let mut op = Op::DropMessages {
                record: ops::next(&record, now()).into(),
                from_seq: 1,
                to_seq: record.message_seq,
            };
            let lsn = engine.log(&mut op, durability).await?;
            Ok((ops::version_of(&op, &agent_id), Some(lsn)))
        })
        .await
    }
}

/// Whether `seq` lies in one of the removed ranges.
fn dropped(drops: &[(u64, u64)], seq: u64) -> bool {
    drops.iter().any(|(from, to)| *from <= seq && seq <= *to)
}

/// One page of a log: stored entries with unflushed ones merged in by `seq`.
///
/// Unflushed entries may also be missing from the middle of what is stored (a transfer
/// is flushed ahead of the target's older messages), so they are merged, not appended.
/// When the stored page is full, unflushed entries past its end belong to a later page.
fn merge_by_seq<T>(stored: Vec<T>, pending: Vec<T>, seq: impl Fn(&T) -> u64, limit: u32) -> Vec<T> {
    let full = stored.len() >= limit as usize;
    let last = stored.last().map_or(0, &seq);
    let mut all = stored;
    all.extend(pending.into_iter().filter(|p| !full || seq(p) <= last));
    all.sort_by_key(|t| seq(t));
    all.dedup_by_key(|t| seq(t));
    all.truncate(limit as usize);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_merge_stored_and_unflushed_entries() {
        // Unflushed 5 is missing from the middle of what is stored.
        let page = merge_by_seq(vec![1, 2, 3, 4, 6, 7], vec![5, 6, 7, 8], |s| *s, 100);
        assert_eq!(page, [1, 2, 3, 4, 5, 6, 7, 8]);
        // A full stored page keeps later unflushed entries for the next page.
        let page = merge_by_seq(vec![1, 2, 3], vec![2, 9], |s| *s, 3);
        assert_eq!(page, [1, 2, 3]);
        let page = merge_by_seq(vec![], vec![4, 5], |s| *s, 1);
        assert_eq!(page, [4]);
    }
}
