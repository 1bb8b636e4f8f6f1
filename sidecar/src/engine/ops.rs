//! Building operations: pure functions from (the agents' current records, a request) to
//! the [`Op`] to log, or the reason to refuse. No I/O here; the engine reads what they
//! need under the agents' locks and logs what they return.
//!
//! Every input check lives here, so a single call and the same call inside a batch are
//! checked alike.

use std::sync::Arc;

use agentstate_protocol::{ValidationError, ValidationRule};
use chrono::{DateTime, Utc};
use serde_json::json;

use super::{new_id, EngineError, EngineResult};
use crate::config::Limits;
use crate::model::{
    AgentRecord, BatchOperation, BatchRequest, Current, Doc, DocMap, Message, NewMessage, Op,
    PendingTransition, PersistedState, SaveStateRequest, StateTransition, Tombstone, Transfer,
    TransferRequest, TransitionRequest, TransitionResponse,
};
use crate::validate::{self, AgentTypes};

/// An op to log, or a refusal that must be logged too (a refused transition).
pub enum Built {
    Ok(Op),
    Refused(Op, EngineError),
}

/// How a multi-step transition ends.
pub enum Finish {
    /// Completed; the data to set (else the data given at `begin`, else unchanged).
    Complete(Option<Doc>),
    /// Aborted, with a reason.
    Abort(Option<String>),
}

fn invalid(e: impl ToString) -> EngineError {
    EngineError::Validation(e.to_string())
}

fn live<'a>(agent_id: &str, current: Option<&'a Current>) -> EngineResult<&'a Arc<AgentRecord>> {
    current
        .and_then(Current::live)
        .ok_or_else(|| EngineError::NotFound(format!("agent {agent_id} not found")))
}

fn no_pending(agent_id: &str, record: &AgentRecord) -> EngineResult<()> {
    match &record.state.pending_transition {
        None => Ok(()),
        Some(p) => Err(EngineError::Conflict(format!(
            "agent {agent_id} has transition {} ({} -> {}) pending; complete or abort it first",
            p.id, p.from_state, p.to_state
        ))),
    }
}

/// The record after a change: next version, `updated_at` now.
pub(crate) fn next(record: &AgentRecord, at: DateTime<Utc>) -> AgentRecord {
    let mut r = record.clone();
    r.state.version += 1;
    r.state.updated_at = at;
    r
}

/// A save (`PUT`).
pub fn put(
    types: &AgentTypes,
    agent_id: &str,
    current: Option<&Current>,
    req: SaveStateRequest,
    cond: Precondition,
    at: DateTime<Utc>,
) -> EngineResult<Op> {
    validate::name("state_name", &req.state_name).map_err(invalid)?;
    if let Some(t) = &req.agent_type {
        validate::name("agent_type", t).map_err(invalid)?;
    }
    if let Some(d) = &req.state_data {
        validate::document("state_data", d).map_err(invalid)?;
    }
    if let Some(m) = &req.metadata {
        validate::document("metadata", m.doc()).map_err(invalid)?;
    }
    cond.check(current)?;
    let prev = current.and_then(Current::live);
    let agent_type = req
        .agent_type
        .or_else(|| prev.and_then(|p| p.state.agent_type.clone()));
    let state_data = req.state_data.unwrap_or_default();
    types
        .check_save(agent_type.as_deref(), &req.state_name, &state_data)
        .map_err(invalid)?;
    let record = AgentRecord {
        state: PersistedState {
            agent_id: agent_id.to_string(),
            agent_type,
            state_name: req.state_name,
            state_data,
            conversation_context: prev
                .map(|p| p.state.conversation_context.clone())
                .unwrap_or_default(),
            created_at: prev.map_or(at, |p| p.state.created_at),
            updated_at: at,
            version: current.map_or(0, Current::version) + 1,
            metadata: req.metadata.unwrap_or_default(),
            // A save replaces the state; a transition begun before it no longer applies.
            pending_transition: None,
        },
        transition_seq: current.map_or(0, Current::transition_seq),
        message_seq: current.map_or(0, Current::message_seq),
        lease_epoch: 0,
        encoded: Default::default(),
    };
    Ok(Op::Put {
        record: record.into(),
    })
}

/// A delete.
pub fn delete(
    agent_id: &str,
    current: Option<&Current>,
    cond: Precondition,
    at: DateTime<Utc>,
) -> EngineResult<Op> {
    cond.check(current)?;
    let r = live(agent_id, current)?;
    Ok(Op::Delete {
        agent_id: agent_id.to_string(),
        tombstone: Tombstone {
            version: r.state.version + 1,
            transition_seq: r.transition_seq,
            message_seq: r.message_seq,
        },
        at,
    })
}

fn check_transition_request(req: &TransitionRequest) -> EngineResult<()> {
    validate::name("to_state", &req.to_state).map_err(invalid)?;
    validate::name("trigger", &req.trigger).map_err(invalid)?;
    if let Some(d) = &req.state_data {
        validate::document("state_data", d).map_err(invalid)?;
    }
    Ok(())
}

/// The log entry of a refused transition, and the record whose only change is its
/// `transition_seq`.
/// A refused transition, logged with the rule it broke and the data it brought (the
/// rejected payload; replay skips refused entries).
fn refused(
    prev: &AgentRecord,
    to_state: &str,
    trigger: &str,
    error: String,
    state_data: Option<Doc>,
    at: DateTime<Utc>,
) -> Op {
    let mut record = prev.clone();
    record.transition_seq += 1;
    Op::Transition {
        transition: StateTransition {
            id: new_id(),
            seq: record.transition_seq,
            agent_id: prev.state.agent_id.clone(),
            from_state: prev.state.state_name.clone(),
            to_state: to_state.to_string(),
            trigger: trigger.to_string(),
            timestamp: at,
            success: false,
            error: Some(error),
            state_data,
            reason: None,
        },
        record: record.into(),
    }
}

/// What one-step and multi-step transitions check first: the request, the agent, the
/// precondition, no other transition pending, and the agent type's rules (against
/// the data after it, when known: a multi-step transition without data brings it when it
/// completes). `Err(Built::Refused)` is a refusal to log.
fn admit<'a>(
    types: &AgentTypes,
    agent_id: &str,
    current: Option<&'a Current>,
    req: &TransitionRequest,
    cond: Precondition,
    data_known_now: bool,
    at: DateTime<Utc>,
) -> EngineResult<Result<&'a Arc<AgentRecord>, Built>> {
    check_transition_request(req)?;
    let prev = live(agent_id, current)?;
    cond.check(current)?;
    no_pending(agent_id, prev)?;
    let data_after = req
        .state_data
        .as_ref()
        .or(data_known_now.then_some(&prev.state.state_data));
    match types.check_transition(
        prev.state.agent_type.as_deref(),
        &prev.state.state_name,
        &req.to_state,
        &req.trigger,
        data_after,
    ) {
        Ok(()) => Ok(Ok(prev)),
        Err(e) => {
            let op = refused(
                prev,
                &req.to_state,
                &req.trigger,
                e.to_string(),
                req.state_data.clone(),
                at,
            );
            Ok(Err(Built::Refused(op, invalid(e))))
        }
    }
}

/// A one-step transition.
pub fn transition(
    types: &AgentTypes,
    agent_id: &str,
    current: Option<&Current>,
    req: TransitionRequest,
    cond: Precondition,
    at: DateTime<Utc>,
) -> EngineResult<Built> {
    let prev = match admit(types, agent_id, current, &req, cond, true, at)? {
        Ok(prev) => prev,
        Err(refusal) => return Ok(refusal),
    };
    let from = &prev.state.state_name;
    let data_after = req
        .state_data
        .clone()
        .unwrap_or_else(|| prev.state.state_data.clone());
    let mut record = next(prev, at);
    record.transition_seq += 1;
    record.state.state_name = req.to_state.clone();
    record.state.state_data = data_after;
    let transition = StateTransition {
        id: new_id(),
        seq: record.transition_seq,
        agent_id: agent_id.to_string(),
        from_state: from.clone(),
        to_state: req.to_state,
        trigger: req.trigger,
        timestamp: at,
        success: true,
        error: None,
        state_data: req.state_data,
        reason: None,
    };
    Ok(Built::Ok(Op::Transition {
        record: record.into(),
        transition,
    }))
}

/// The first step of a multi-step transition: validated now, recorded as pending.
pub fn begin(
    types: &AgentTypes,
    agent_id: &str,
    current: Option<&Current>,
    req: TransitionRequest,
    cond: Precondition,
    at: DateTime<Utc>,
) -> EngineResult<Built> {
    let prev = match admit(types, agent_id, current, &req, cond, false, at)? {
        Ok(prev) => prev,
        Err(refusal) => return Ok(refusal),
    };
    let from = &prev.state.state_name;
    let mut record = next(prev, at);
    record.state.pending_transition = Some(PendingTransition {
        id: new_id(),
        from_state: from.clone(),
        to_state: req.to_state,
        trigger: req.trigger,
        started_at: at,
        state_data: req.state_data,
    });
    Ok(Built::Ok(Op::Put {
        record: record.into(),
    }))
}

/// Completes or aborts the pending transition `transition_id`.
pub fn finish(
    types: &AgentTypes,
    agent_id: &str,
    current: Option<&Current>,
    transition_id: &str,
    how: Finish,
    cond: Precondition,
    at: DateTime<Utc>,
) -> EngineResult<Op> {
    let prev = live(agent_id, current)?;
    cond.check(current)?;
    let pending = match &prev.state.pending_transition {
        Some(p) if p.id == transition_id => p.clone(),
        _ => {
            return Err(EngineError::NotFound(format!(
                "agent {agent_id} has no pending transition {transition_id}"
            )))
        }
    };
    let mut record = next(prev, at);
    record.transition_seq += 1;
    record.state.pending_transition = None;
    let mut transition = StateTransition {
        id: pending.id.clone(),
        seq: record.transition_seq,
        agent_id: agent_id.to_string(),
        from_state: pending.from_state.clone(),
        to_state: pending.to_state.clone(),
        trigger: pending.trigger.clone(),
        timestamp: at,
        success: true,
        error: None,
        state_data: None,
        reason: None,
    };
    match how {
        Finish::Complete(data) => {
            if let Some(d) = &data {
                validate::document("state_data", d).map_err(invalid)?;
            }
            let data_after = data
                .or(pending.state_data)
                .unwrap_or_else(|| prev.state.state_data.clone());
            types
                .check_save(
                    prev.state.agent_type.as_deref(),
                    &pending.to_state,
                    &data_after,
                )
                .map_err(invalid)?;
            record.state.state_name = pending.to_state;
            record.state.state_data = data_after.clone();
            transition.state_data = Some(data_after);
        }
        Finish::Abort(reason) => {
            if let Some(r) = &reason {
                if r.chars().count() > validate::NAME_CHARS_MAX * 16 {
                    return Err(invalid("error is too long"));
                }
            }
            transition.success = false;
            transition.error = Some(match reason {
                Some(r) => format!("aborted: {r}"),
                None => "aborted".to_string(),
            });
        }
    }
    Ok(Op::Transition {
        record: record.into(),
        transition,
    })
}

/// Shape and size of messages to append.
pub fn check_messages(messages: &[NewMessage], limits: &Limits) -> EngineResult<()> {
    if messages.is_empty() || messages.len() > limits.messages_per_request_max {
        return Err(invalid(format!(
            "a request appends 1 to {} messages, not {}",
            limits.messages_per_request_max,
            messages.len()
        )));
    }
    for (i, m) in messages.iter().enumerate() {
        validate::name("role", &m.role).map_err(|e| invalid(format!("message {i}: {e}")))?;
        if m.content.len() > limits.message_bytes_max {
            return Err(EngineError::Validation(format!(
                "message {i}: content is {} bytes, more than the {} allowed",
                m.content.len(),
                limits.message_bytes_max
            )));
        }
        validate::document("metadata", m.metadata.doc())
            .map_err(|e| invalid(format!("message {i}: {e}")))?;
    }
    Ok(())
}

/// Messages appended to the conversation: each gets the next `seq`.
pub fn messages(
    agent_id: &str,
    current: Option<&Current>,
    new: Vec<NewMessage>,
    cond: Precondition,
    at: DateTime<Utc>,
) -> EngineResult<Op> {
    let prev = live(agent_id, current)?;
    cond.check(current)?;
    let mut record = next(prev, at);
    let messages = new
        .into_iter()
        .map(|m| {
            record.message_seq += 1;
            Message {
                seq: record.message_seq,
                role: m.role,
                content: m.content,
                timestamp: at,
                metadata: m.metadata,
            }
        })
        .collect();
    Ok(Op::Messages {
        record: record.into(),
        messages,
    })
}

/// Makes `state` (a checkpoint's, or one recomputed from it) current: a new version,
/// logged as a transition with `trigger`.
pub fn restore(
    record: &AgentRecord,
    state: &PersistedState,
    trigger: &str,
    at: DateTime<Utc>,
) -> Op {
    let mut after = next(record, at);
    after.transition_seq += 1;
    after.state.agent_type = state.agent_type.clone();
    after.state.state_name = state.state_name.clone();
    after.state.state_data = state.state_data.clone();
    after.state.metadata = state.metadata.clone();
    after.state.conversation_context = state.conversation_context.clone();
    after.state.pending_transition = None;
    Op::Transition {
        transition: StateTransition {
            id: new_id(),
            seq: after.transition_seq,
            agent_id: record.state.agent_id.clone(),
            from_state: record.state.state_name.clone(),
            to_state: state.state_name.clone(),
            trigger: trigger.to_string(),
            timestamp: at,
            success: true,
            error: None,
            state_data: Some(state.state_data.clone()),
            reason: None,
        },
        record: after.into(),
    }
}

pub fn check_transfer_request(req: &TransferRequest) -> EngineResult<()> {
    let malformed = |m: String| EngineError::Malformed(m);
    validate::agent_id(&req.transfer_id).map_err(|e| malformed(format!("transfer_id: {e}")))?;
    validate::agent_id(&req.from_agent).map_err(|e| malformed(format!("from_agent: {e}")))?;
    validate::agent_id(&req.to_agent).map_err(|e| malformed(format!("to_agent: {e}")))?;
    if req.from_agent == req.to_agent {
        return Err(invalid("from_agent and to_agent must differ"));
    }
    validate::name("trigger", &req.trigger).map_err(invalid)?;
    if let Some(t) = &req.to_trigger {
        validate::name("to_trigger", t).map_err(invalid)?;
    }
    if let Some(t) = &req.to_agent_type {
        validate::name("to_agent_type", t).map_err(invalid)?;
    }
    if let Some(c) = &req.context {
        validate::document("context", c).map_err(invalid)?;
    }
    Ok(())
}

/// A transfer: the source moves on `trigger`, the target (created if asked) gets the
/// conversation's latest messages and the context, and may move on `to_trigger`.
/// A refusal is logged as a refused transition of the source.
pub fn transfer(
    types: &AgentTypes,
    req: &TransferRequest,
    source: Option<&Current>,
    target: Option<&Current>,
    history: Vec<Message>,
    at: DateTime<Utc>,
) -> EngineResult<Built> {
    let src = live(&req.from_agent, source)?;
    no_pending(&req.from_agent, src)?;
    let refuse = |why: String| {
        let error = format!("transfer {} refused: {why}", req.transfer_id);
        let op = refused(
            src,
            &src.state.state_name,
            &req.trigger,
            error.clone(),
            None,
            at,
        );
        Ok(Built::Refused(op, EngineError::Validation(error)))
    };

    // The source's move.
    let src_type = src.state.agent_type.as_deref();
    let src_to = match types.next_state(src_type, &src.state.state_name, &req.trigger) {
        Ok(to) => to.unwrap_or_else(|| src.state.state_name.clone()),
        Err(e) => return refuse(e.to_string()),
    };
    if let Err(e) = types.check_transition(
        src_type,
        &src.state.state_name,
        &src_to,
        &req.trigger,
        Some(&src.state.state_data),
    ) {
        return refuse(e.to_string());
    }

    // The target: as it is, or created in its type's initial state.
    let tgt_prev: AgentRecord = match target {
        Some(Current::Live(t)) => {
            no_pending(&req.to_agent, t)?;
            (**t).clone()
        }
        other => {
            let Some(ty) = req.to_agent_type.as_deref() else {
                return Err(EngineError::NotFound(format!(
                    "agent {} not found; give to_agent_type to create it with the transfer",
                    req.to_agent
                )));
            };
            let Some(initial) = types.initial_state(ty) else {
                return refuse(
                    ValidationError::new(
                        ValidationRule::UnknownAgentType,
                        format!("to_agent_type {ty:?} is not declared"),
                    )
                    .to_string(),
                );
            };
            AgentRecord {
                state: PersistedState {
                    agent_id: req.to_agent.clone(),
                    agent_type: Some(ty.to_string()),
                    state_name: initial.to_string(),
                    state_data: Doc::null(),
                    conversation_context: Doc::null(),
                    created_at: at,
                    updated_at: at,
                    version: other.map_or(0, Current::version),
                    metadata: Default::default(),
                    pending_transition: None,
                },
                transition_seq: other.map_or(0, Current::transition_seq),
                message_seq: other.map_or(0, Current::message_seq),
                lease_epoch: 0,
                encoded: Default::default(),
            }
        }
    };
    let tgt_type = tgt_prev.state.agent_type.clone();
    let tgt_to = match &req.to_trigger {
        None => None,
        Some(trigger) => {
            match types.next_state(tgt_type.as_deref(), &tgt_prev.state.state_name, trigger) {
                Ok(to) => Some((
                    trigger.clone(),
                    to.unwrap_or_else(|| tgt_prev.state.state_name.clone()),
                )),
                Err(e) => return refuse(format!("target: {e}")),
            }
        }
    };

    let context = req
        .context
        .clone()
        .unwrap_or_else(|| src.state.state_data.clone());
    let mut transitions = Vec::new();

    let mut src_after = next(src, at);
    src_after.transition_seq += 1;
    src_after.state.state_name = src_to.clone();
    transitions.push(StateTransition {
        id: new_id(),
        seq: src_after.transition_seq,
        agent_id: req.from_agent.clone(),
        from_state: src.state.state_name.clone(),
        to_state: src_to,
        trigger: req.trigger.clone(),
        timestamp: at,
        success: true,
        error: None,
        state_data: None,
        reason: None,
    });

    let mut tgt_after = next(&tgt_prev, at);
    tgt_after.state.conversation_context = Doc::from_value(&json!({
        "transfer_id": req.transfer_id,
        "from_agent": req.from_agent,
        "context": context.to_value(),
    }));
    if let Some((trigger, to)) = tgt_to {
        tgt_after.transition_seq += 1;
        transitions.push(StateTransition {
            id: new_id(),
            seq: tgt_after.transition_seq,
            agent_id: req.to_agent.clone(),
            from_state: tgt_prev.state.state_name.clone(),
            to_state: to.clone(),
            trigger,
            timestamp: at,
            success: true,
            error: None,
            state_data: None,
            reason: None,
        });
        tgt_after.state.state_name = to;
    }
    let messages: Vec<Message> = history
        .into_iter()
        .map(|m| {
            tgt_after.message_seq += 1;
            let mut metadata = m.metadata.to_map();
            metadata.insert(
                "transferred_from".into(),
                json!({ "agent_id": req.from_agent, "seq": m.seq, "transfer_id": req.transfer_id }),
            );
            Message {
                seq: tgt_after.message_seq,
                role: m.role,
                content: m.content,
                timestamp: m.timestamp,
                metadata: DocMap::from_map(metadata),
            }
        })
        .collect();

    let transfer = Transfer {
        transfer_id: req.transfer_id.clone(),
        from_agent: req.from_agent.clone(),
        to_agent: req.to_agent.clone(),
        trigger: req.trigger.clone(),
        to_trigger: req.to_trigger.clone(),
        context,
        messages_copied: messages.len() as u64,
        from_version: src_after.state.version,
        to_version: tgt_after.state.version,
        created_at: at,
    };
    Ok(Built::Ok(Op::Transfer {
        transfer,
        records: vec![src_after.into(), tgt_after.into()],
        transitions,
        messages,
    }))
}

pub fn check_batch(req: &BatchRequest, limits: &Limits) -> EngineResult<()> {
    if req.operations.is_empty() || req.operations.len() > limits.batch_operations_max {
        return Err(invalid(format!(
            "a batch holds 1 to {} operations, not {}",
            limits.batch_operations_max,
            req.operations.len()
        )));
    }
    for (i, op) in req.operations.iter().enumerate() {
        validate::agent_id(batch_agent(op))
            .map_err(|e| EngineError::Malformed(format!("operation {i}: {e}")))?;
        if let BatchOperation::Messages { messages, .. } = op {
            check_messages(messages, limits).map_err(|e| invalid(format!("operation {i}: {e}")))?;
        }
    }
    Ok(())
}

pub fn batch_agent(op: &BatchOperation) -> &str {
    match op {
        BatchOperation::Put { agent_id, .. }
        | BatchOperation::Delete { agent_id, .. }
        | BatchOperation::Transition { agent_id, .. }
        | BatchOperation::Messages { agent_id, .. } => agent_id,
    }
}

/// One operation of a batch; a refused transition refuses the whole batch.
pub fn batch_op(
    types: &AgentTypes,
    operation: BatchOperation,
    current: Option<&Current>,
    at: DateTime<Utc>,
) -> EngineResult<Op> {
    match operation {
        BatchOperation::Put {
            agent_id,
            if_match,
            agent_type,
            state_name,
            state_data,
            metadata,
        } => put(
            types,
            &agent_id,
            current,
            SaveStateRequest {
                agent_type,
                state_name,
                state_data,
                metadata,
            },
            Precondition::from_if_match(if_match),
            at,
        ),
        BatchOperation::Delete { agent_id, if_match } => delete(
            &agent_id,
            current,
            Precondition::from_if_match(if_match),
            at,
        ),
        BatchOperation::Transition {
            agent_id,
            if_match,
            to_state,
            trigger,
            state_data,
        } => match transition(
            types,
            &agent_id,
            current,
            TransitionRequest {
                to_state,
                trigger,
                state_data,
            },
            Precondition::from_if_match(if_match),
            at,
        )? {
            Built::Ok(op) => Ok(op),
            Built::Refused(_, e) => Err(e),
        },
        BatchOperation::Messages {
            agent_id,
            if_match,
            messages: new,
        } => messages(
            &agent_id,
            current,
            new,
            Precondition::from_if_match(if_match),
            at,
        ),
    }
}

/// The agent's version after `op`.
pub fn version_of(op: &Op, agent_id: &str) -> u64 {
    op.resulting(agent_id).map_or(0, |c| c.version())
}

/// The answer to a call that logged a transition.
/// Records why an operator made a logged transition (a rollback or abort from the
/// inspector).
pub fn set_reason(op: &mut Op, reason: Option<String>) {
    if let Op::Transition { transition, .. } = op {
        transition.reason = reason;
    }
}

pub fn transition_response(op: &Op) -> TransitionResponse {
    match op {
        Op::Transition { record, transition } => TransitionResponse {
            transition: transition.clone(),
            version: record.state.version,
        },
        other => unreachable!("a transition response from {other:?}"),
    }
}

/// A condition on the agent's current version (`If-Match`, `If-None-Match: *`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    None,
    /// The agent must exist at this version.
    Version(u64),
    /// The agent must not exist.
    Absent,
}

impl Precondition {
    pub fn from_if_match(v: Option<u64>) -> Self {
        v.map_or(Precondition::None, Precondition::Version)
    }

    pub fn check(self, current: Option<&Current>) -> EngineResult<()> {
        let live_version = current.and_then(Current::live).map(|r| r.state.version);
        let ok = match self {
            Precondition::None => true,
            Precondition::Version(v) => live_version == Some(v),
            Precondition::Absent => live_version.is_none(),
        };
        if ok {
            return Ok(());
        }
        Err(EngineError::VersionConflict {
            expected: match self {
                Precondition::Version(v) => v.to_string(),
                _ => "none (agent must not exist)".into(),
            },
            current: live_version.unwrap_or(0),
        })
    }
}
