//! Realistic agent states of a chosen size: what a conversational agent keeps between
//! steps (the user's name, a plan, recent tool results, a scratchpad), not random bytes,
//! so the codecs and BSON see the mix of maps, strings and numbers they will see live.

use agentstate_protocol::{Metadata, PersistedState, SaveStateRequest};
use chrono::Utc;
use serde_json::{json, Value};

/// `state_data` whose JSON encoding is about `target_bytes` long (never much shorter;
/// the smallest is about 200 bytes).
pub fn state_data(target_bytes: usize) -> Value {
    let mut data = json!({
        "user_name": "Ada Lovelace",
        "locale": "en-GB",
        "turns": 7,
        "intent": {"name": "compose_haiku", "confidence": 0.93},
        "plan": [],
        "tool_results": [],
    });
    let mut step = 0u64;
    while serde_json::to_vec(&data).map_or(0, |v| v.len()) < target_bytes {
        let obj = data.as_object_mut().expect("built as an object");
        if step.is_multiple_of(3) {
            obj["plan"]
                .as_array_mut()
                .expect("plan is an array")
                .push(json!({
                    "step": step,
                    "action": "search_knowledge_base",
                    "args": {"query": format!("haiku about autumn, variant {step}"), "top_k": 5},
                    "done": step.is_multiple_of(2),
                }));
        } else {
            obj["tool_results"]
                .as_array_mut()
                .expect("tool_results is an array")
                .push(json!({
                    "tool": "kb.search",
                    "ok": true,
                    "latency_ms": 12.5 + step as f64,
                    "text": "Autumn moonlight / a worm digs silently / into the chestnut. \
                             Basho wrote it in 1687; the season word is moonlight.",
                }));
        }
        step += 1;
    }
    data
}

fn metadata() -> Metadata {
    json!({"tenant": "acme", "model": "gpt-x", "trace_id": "7f3c2a9e41d04b8f"})
        .as_object()
        .cloned()
        .unwrap_or_default()
}

/// A full `PersistedState` (every field set) with `state_data` of about `target_bytes`.
pub fn persisted_state(target_bytes: usize) -> PersistedState {
    let now = Utc::now();
    PersistedState {
        agent_id: "greeter-7f3c2a9e".into(),
        agent_type: Some("greeter".into()),
        state_name: "greeting".into(),
        state_data: state_data(target_bytes),
        conversation_context: json!({"from_agent": "router-1", "summary": "wants a haiku"}),
        created_at: now,
        updated_at: now,
        version: 42,
        metadata: metadata(),
        pending_transition: None,
    }
}

/// A save of an untyped agent with `state_data` of about `target_bytes`.
pub fn save_request(target_bytes: usize) -> SaveStateRequest {
    SaveStateRequest {
        agent_type: None,
        state_name: "working".into(),
        state_data: Some(state_data(target_bytes)),
        metadata: Some(metadata()),
    }
}

/// The sidecar's record of an agent in `state`, every counter at its default. Built
/// through serde rather than a struct literal, so fields the sidecar adds with defaults
/// do not break the benches.
pub fn agent_record(state: &PersistedState) -> agentstate_sidecar::model::AgentRecord {
    serde_json::from_value(json!({ "state": state }))
        .expect("an AgentRecord needs only its state; the rest has defaults")
}
