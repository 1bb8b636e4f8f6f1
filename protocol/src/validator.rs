//! The `StateValidator` trait: checks of states, transitions and data against an agent
//! type's definition. The sidecar implements it from its `--config` file; an agent may
//! implement it too, to check before it asks.

use serde_json::Value;

/// Which rule a refused change broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationRule {
    /// The agent type is not declared (and the configuration is strict).
    UnknownAgentType,
    /// The state is not one of the type's states.
    UnknownState,
    /// No declared transition goes from the current state to the target with the trigger.
    TransitionNotAllowed,
    /// `state_data` does not match the state's JSON Schema.
    SchemaMismatch,
}

impl ValidationRule {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationRule::UnknownAgentType => "unknown_agent_type",
            ValidationRule::UnknownState => "unknown_state",
            ValidationRule::TransitionNotAllowed => "transition_not_allowed",
            ValidationRule::SchemaMismatch => "schema_mismatch",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", rule.as_str())]
pub struct ValidationError {
    pub rule: ValidationRule,
    pub message: String,
}

impl ValidationError {
    pub fn new(rule: ValidationRule, message: impl Into<String>) -> Self {
        ValidationError {
            rule,
            message: message.into(),
        }
    }
}

pub trait StateValidator {
    /// `state_name` is a state of `agent_type`.
    fn validate_state(&self, agent_type: &str, state_name: &str) -> Result<(), ValidationError>;

    /// A transition `from --trigger--> to` is declared for `agent_type`.
    fn validate_transition(
        &self,
        agent_type: &str,
        from: &str,
        to: &str,
        trigger: &str,
    ) -> Result<(), ValidationError>;

    /// `data` matches the JSON Schema of `state_name`, if it has one.
    fn validate_data(
        &self,
        agent_type: &str,
        state_name: &str,
        data: &Value,
    ) -> Result<(), ValidationError>;
}
