//! Calls that change an agent's state: saves, deletes, transitions (one-step and
//! multi-step) and batches.

use std::collections::HashMap;
use std::sync::Arc;

use agentstate_protocol::{AbortTransitionRequest, BatchResponse, BatchResult, Durability};

use crate::model::{
    AgentRecord, BatchRequest, BeginTransitionResponse, CompleteTransitionRequest, Current, Op,
    SaveStateRequest, TransitionRequest, TransitionResponse,
};
use crate::validate::AgentTypes;

use super::ops::Built;
use super::{now, ops, Engine, EngineError, EngineResult, Precondition};

impl Engine {
    /// `GET /v1/agents/{id}`.
    /// The agent's record; its state's body comes from [`AgentRecord::state_body`].
    pub async fn get(&self, agent_id: &str) -> EngineResult<Arc<AgentRecord>> {
        self.read_live(agent_id).await
    }

    /// The shape of most one-agent changes, under the agent's lock: read its record,
    /// `build` the op (a refusal that must be logged is logged), log it, `answer`.
    pub(super) async fn change<R: Send + 'static>(
        self: &Arc<Self>,
        agent_id: String,
        durability: Durability,
        build: impl FnOnce(&AgentTypes, &str, Option<&Current>) -> EngineResult<Built> + Send + 'static,
        answer: impl FnOnce(&Op, &str) -> R + Send + 'static,
    ) -> EngineResult<R> {
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let current = engine.current_to_change(&agent_id).await?;
            let built = build(&engine.types, &agent_id, current.as_ref())?;
            let (op, lsn) = engine.log_built(built, durability).await?;
            Ok((answer(&op, &agent_id), Some(lsn)))
        })
        .await
    }

    /// `PUT /v1/agents/{id}`: returns the new version.
    pub async fn save(
        self: &Arc<Self>,
        agent_id: String,
        req: SaveStateRequest,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<u64> {
        self.change(
            agent_id,
            durability,
            move |types, id, current| ops::put(types, id, current, req, cond, now()).map(Built::Ok),
            ops::version_of,
        )
        .await
    }

    /// `DELETE /v1/agents/{id}`: `Ok(None)` if there was nothing to delete.
    pub async fn delete(
        self: &Arc<Self>,
        agent_id: String,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<Option<u64>> {
        let engine = self.clone();
        self.critical(durability, async move {
            let _g = engine.lock(&[&agent_id]).await;
            let current = engine.current_to_change(&agent_id).await?;
            match ops::delete(&agent_id, current.as_ref(), cond, now()) {
                Ok(mut op) => {
                    let lsn = engine.log(&mut op, durability).await?;
                    Ok((Some(ops::version_of(&op, &agent_id)), Some(lsn)))
                }
                Err(EngineError::NotFound(_)) if cond == Precondition::None => Ok((None, None)),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// `POST /v1/agents/{id}/transitions`. A refused transition is logged too, and
    /// answered with `Validation` naming the rule.
    pub async fn transition(
        self: &Arc<Self>,
        agent_id: String,
        req: TransitionRequest,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<TransitionResponse> {
        self.change(
            agent_id,
            durability,
            move |types, id, current| ops::transition(types, id, current, req, cond, now()),
            |op, _| ops::transition_response(op),
        )
        .await
    }

    /// `POST /v1/agents/{id}/transitions/begin`: the first step of a multi-step
    /// transition, recorded as the agent's `pending_transition`.
    pub async fn begin_transition(
        self: &Arc<Self>,
        agent_id: String,
        req: TransitionRequest,
        cond: Precondition,
        durability: Durability,
    ) -> EngineResult<BeginTransitionResponse> {
        self.change(
            agent_id,
            durability,
            move |types, id, current| ops::begin(types, id, current, req, cond, now()),
            |op, _| {
                let Op::Put { record } = op else {
                    unreachable!("begin builds a Put")
                };
                BeginTransitionResponse {
                    pending_transition: record
                        .state
                        .pending_transition
                        .clone()
                        .expect("begin sets the pending transition"),
                    version: record.state.version,
                }
            },
        )
        .await
    }

    /// `POST .../transitions/{tid}/complete` or `.../abort`.
    pub async fn finish_transition(
        self: &Arc<Self>,
        agent_id: String,
        transition_id: String,
        finish: ops::Finish,
        cond: Precondition,
        durability: Durability,
        reason: Option<String>,
    ) -> EngineResult<TransitionResponse> {
        self.change(
            agent_id,
            durability,
            move |types, id, current| {
                let mut op = ops::finish(types, id, current, &transition_id, finish, cond, now())?;
                ops::set_reason(&mut op, reason);
                Ok(Built::Ok(op))
            },
            |op, _| ops::transition_response(op),
        )
        .await
    }

    /// Convenience for the API: complete with the given data.
    pub fn complete(req: CompleteTransitionRequest) -> ops::Finish {
        ops::Finish::Complete(req.state_data)
    }

    /// Convenience for the API: abort with the given reason.
    pub fn abort(req: AbortTransitionRequest) -> ops::Finish {
        ops::Finish::Abort(req.error)
    }
    /// `POST /v1/batch`: every operation or none; one WAL record.
    pub async fn batch(
        self: &Arc<Self>,
        req: BatchRequest,
        durability: Durability,
    ) -> EngineResult<BatchResponse> {
        ops::check_batch(&req, &self.opts.limits)?;
        let engine = self.clone();
        self.critical(durability, async move {
            let ids: Vec<String> = req
                .operations
                .iter()
                .map(|o| ops::batch_agent(o).to_string())
                .collect();
            let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
            let _g = engine.lock(&keys).await;
            let mut overlay: HashMap<String, Option<Current>> = HashMap::new();
            for id in &ids {
                if !overlay.contains_key(id) {
                    overlay.insert(id.clone(), engine.current_to_change(id).await?);
                }
            }
            let at = now();
            let mut built = Vec::with_capacity(req.operations.len());
            let mut results = Vec::with_capacity(req.operations.len());
            for (i, operation) in req.operations.into_iter().enumerate() {
                let id = ops::batch_agent(&operation).to_string();
                let current = overlay.get(&id).cloned().flatten();
                let op = ops::batch_op(&engine.types, operation, current.as_ref(), at)
                    .map_err(|e| prefix_error(e, &format!("operation {i} ({id})")))?;
                if let Some(c) = op.resulting(&id) {
                    overlay.insert(id.clone(), Some(c));
                }
                results.push(BatchResult {
                    version: ops::version_of(&op, &id),
                    agent_id: id,
                });
                built.push(op);
            }
            let lsn = engine
                .log(&mut Op::Batch { ops: built }, durability)
                .await?;
            Ok((BatchResponse { results }, Some(lsn)))
        })
        .await
    }
}

/// The same error, its message prefixed with where it happened.
fn prefix_error(e: EngineError, at: &str) -> EngineError {
    match e {
        EngineError::NotFound(m) => EngineError::NotFound(format!("{at}: {m}")),
        EngineError::Conflict(m) => EngineError::Conflict(format!("{at}: {m}")),
        EngineError::Validation(m) => EngineError::Validation(format!("{at}: {m}")),
        EngineError::Malformed(m) => EngineError::Malformed(format!("{at}: {m}")),
        other => other,
    }
}
