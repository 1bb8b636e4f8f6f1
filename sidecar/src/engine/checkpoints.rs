//! Checkpoints of an agent, rollback to one, and replay of the log from one.

use std::sync::Arc;

use agentstate_protocol::{CheckpointRequest, CheckpointResponse, Durability};

use crate::model::{Checkpoint, Current, Op, ReplayResponse, TransitionResponse};
use crate::validate;

use super::{new_id, now, ops, Engine, EngineError, EngineResult, Precondition, PAGE_LIMIT_MAX};

/// Most log entries a replay walks through.
const REPLAY_TRANSITIONS_MAX: usize = 100_000;

impl Engine {
    /// `POST /v1/agents/{id}/checkpoints`.
    pub async fn checkpoint(
        self: &Arc<Self>,
        agent_id: String,
        req: CheckpointRequest,
        durability: Durability,
    ) -> EngineResult<CheckpointResponse> {
        if let Some(label) = &req.label {
            validate::name("label", label).map_err(EngineError::Validation)?;
        }
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let record = engine.live_to_change(&agent_id).await?;
            let checkpoint = Checkpoint {
                checkpoint_id: new_id(),
                agent_id: agent_id.clone(),
                version: record.state.version,
                state: record.state.clone(),
                transition_seq: record.transition_seq,
                message_seq: record.message_seq,
                created_at: now(),
                label: req.label,
            };
            let resp = CheckpointResponse {
                checkpoint_id: checkpoint.checkpoint_id.clone(),
                version: checkpoint.version,
            };
            let lsn = engine
                .log(&mut Op::Checkpoint { checkpoint }, durability)
                .await?;
            Ok((resp, Some(lsn)))
        })
        .await
    }

    /// `GET /v1/agents/{id}/checkpoints`, oldest first.
    pub async fn checkpoints(&self, agent_id: &str) -> EngineResult<Vec<Checkpoint>> {
        self.read_live(agent_id).await?;
        self.all_checkpoints(agent_id).await
    }

    async fn all_checkpoints(&self, agent_id: &str) -> EngineResult<Vec<Checkpoint>> {
        // The backlog before the store: an entry moves from the one to the other only
        // after the store has it, so this order cannot miss one in transit.
        let pending = self.backlog.checkpoints(agent_id);
        let floor = self.backlog.purge(agent_id).map_or(0, |t| t.version);
        let mut all: Vec<Checkpoint> = self
            .store
            .checkpoints(agent_id)
            .await?
            .into_iter()
            .filter(|c| c.version >= floor)
            .collect();
        for c in pending {
            if !all.iter().any(|s| s.checkpoint_id == c.checkpoint_id) {
                all.push(c);
            }
        }
        all.sort_by_key(|c| (c.created_at, c.version));
        Ok(all)
    }

    async fn find_checkpoint(
        &self,
        agent_id: &str,
        checkpoint_id: &str,
    ) -> EngineResult<Checkpoint> {
        self.all_checkpoints(agent_id)
            .await?
            .into_iter()
            .find(|c| c.checkpoint_id == checkpoint_id)
            .ok_or_else(|| {
                EngineError::NotFound(format!(
                    "agent {agent_id} has no checkpoint {checkpoint_id}"
                ))
            })
    }

    /// `POST /v1/agents/{id}/rollback`: restores a checkpoint as a new version, logged as
    /// a transition with trigger `rollback`.
    pub async fn rollback(
        self: &Arc<Self>,
        agent_id: String,
        checkpoint_id: String,
        cond: Precondition,
        durability: Durability,
        reason: Option<String>,
    ) -> EngineResult<TransitionResponse> {
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let record = engine.live_to_change(&agent_id).await?;
            cond.check(Some(&Current::Live(record.clone())))?;
            let checkpoint = engine.find_checkpoint(&agent_id, &checkpoint_id).await?;
            let mut op = ops::restore(&record, &checkpoint.state, "rollback", now());
            ops::set_reason(&mut op, reason);
            let lsn = engine.log(&mut op, durability).await?;
            Ok((ops::transition_response(&op), Some(lsn)))
        })
        .await
    }

    /// `POST /v1/agents/{id}/replay`: recomputes the state from a checkpoint and the
    /// successful transitions logged after it; with `apply`, makes it current (a new
    /// version, logged with trigger `replay`).
    pub async fn replay(
        self: &Arc<Self>,
        agent_id: String,
        checkpoint_id: String,
        apply: bool,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<ReplayResponse> {
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let record = engine.live_to_change(&agent_id).await?;
            cond.check(Some(&Current::Live(record.clone())))?;
            let checkpoint = engine.find_checkpoint(&agent_id, &checkpoint_id).await?;
            let mut state = checkpoint.state.clone();
            let mut applied = 0u64;
            let mut after = checkpoint.transition_seq;
            let mut walked = 0usize;
            loop {
                let page = engine.transitions(&agent_id, after, PAGE_LIMIT_MAX).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                walked += page.len();
                if walked > REPLAY_TRANSITIONS_MAX {
                    return Err(EngineError::Validation(format!(
                        "more than {REPLAY_TRANSITIONS_MAX} transitions after the checkpoint; take a newer checkpoint"
                    )));
                }
                for t in page.iter().filter(|t| t.success && t.seq <= record.transition_seq) {
                    state.state_name = t.to_state.clone();
                    if let Some(d) = &t.state_data {
                        state.state_data = d.clone();
                    }
                    applied += 1;
                }
            }
            if !apply {
                return Ok((
                    ReplayResponse {
                        state,
                        transitions_applied: applied,
                        applied: false,
                        version: record.state.version,
                    },
                    None,
                ));
            }
            let mut op = ops::restore(&record, &state, "replay", now());
            let lsn = engine.log(&mut op, durability).await?;
            let Op::Transition { record: after_record, .. } = &op else {
                unreachable!("restore builds a Transition")
            };
            Ok((
                ReplayResponse {
                    state: after_record.state.clone(),
                    transitions_applied: applied,
                    applied: true,
                    version: after_record.state.version,
                },
                Some(lsn),
            ))
        })
        .await
    }
}
