//! Checks on what agents send, before anything is logged.
//!
//! Two kinds of checks:
//! - shape: ids, names and documents. A change that the backend would refuse must be
//!   refused here, at the door: once in the WAL it would be retried by the flusher
//!   forever. So documents are checked against BSON's limits (integer range, nesting
//!   depth, `$`-prefixed keys) as well as ours.
//! - meaning: [`AgentTypes`], the agent types of the `--config` file, compiled once at
//!   start-up (JSON Schemas included), implementing the protocol's `StateValidator`.

use std::collections::{BTreeMap, HashSet};

use agentstate_protocol::{StateValidator, ValidationError, ValidationRule};
use serde::Deserialize;
use serde_json::Value;

use crate::doc::Doc;

/// Longest agent id.
pub const AGENT_ID_BYTES_MAX: usize = 128;
/// Longest state name, trigger or agent type, in characters: as JSON Schema's
/// `maxLength` counts, so that the OpenAPI description states the rule exactly.
pub const NAME_CHARS_MAX: usize = 256;

/// Agent ids: 1 to 128 of `A-Z a-z 0-9 - _ . :`; they appear in URLs and document ids.
pub fn agent_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > AGENT_ID_BYTES_MAX {
        return Err(format!(
            "agent id must be 1 to {AGENT_ID_BYTES_MAX} bytes long, got {}",
            id.len()
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        return Err(format!(
            "agent id may only use A-Z a-z 0-9 - _ . : (found {c:?})"
        ));
    }
    Ok(())
}

/// State names, triggers, agent types: non-empty, bounded, no control characters.
pub fn name(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.chars().count() > NAME_CHARS_MAX {
        return Err(format!(
            "{field} must be 1 to {NAME_CHARS_MAX} characters long"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("{field} must not contain control characters"));
    }
    Ok(())
}

/// A JSON document the backend can store as BSON (see [`Doc::check`]).
pub fn document(field: &str, doc: &Doc) -> Result<(), String> {
    doc.check(field)
}

/// The same for a document held as a tree (threads' metadata, which the store filters on).
pub fn document_tree(field: &str, value: &Value) -> Result<(), String> {
    Doc::from_value(value).check(field)
}

/// An agent type as the `--config` file declares it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTypeDef {
    pub initial_state: String,
    pub states: Vec<String>,
    #[serde(default)]
    pub transitions: Vec<TransitionDef>,
    /// JSON Schema for `state_data`, per state.
    #[serde(default)]
    pub state_schemas: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
/// A declared transition: `from --trigger--> to`.
pub struct TransitionDef {
    pub from: String,
    pub to: String,
    pub trigger: String,
}

/// The agent types of the configuration, ready to check against.
#[derive(Default)]
pub struct AgentTypes {
    /// Refuse agents whose type is not declared.
    strict: bool,
    types: BTreeMap<String, AgentType>,
}

struct AgentType {
    initial_state: String,
    states: HashSet<String>,
    transitions: Vec<TransitionDef>,
    schemas: BTreeMap<String, jsonschema::Validator>,
}

impl std::fmt::Debug for AgentTypes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTypes")
            .field("strict", &self.strict)
            .field("types", &self.types.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl AgentTypes {
    /// Compiles the file's schemas; a bad schema is a configuration error.
    pub fn compile(strict: bool, defs: &BTreeMap<String, AgentTypeDef>) -> Result<Self, String> {
        let mut types = BTreeMap::new();
        for (name, def) in defs {
            let mut schemas = BTreeMap::new();
            for (state, schema) in &def.state_schemas {
                let schema = serde_json::to_value(schema)
                    .map_err(|e| format!("agent type {name:?} state {state:?}: {e}"))?;
                let validator = jsonschema::validator_for(&schema).map_err(|e| {
                    format!("agent type {name:?}: state_schemas.{state} is not a valid JSON Schema: {e}")
                })?;
                schemas.insert(state.clone(), validator);
            }
            types.insert(
                name.clone(),
                AgentType {
                    initial_state: def.initial_state.clone(),
                    states: def.states.iter().cloned().collect(),
                    transitions: def.transitions.clone(),
                    schemas,
                },
            );
        }
        Ok(AgentTypes { strict, types })
    }

    /// The type's definition, `None` for an agent checked by nothing; refuses an
    /// undeclared type when strict.
    fn lookup(&self, agent_type: Option<&str>) -> Result<Option<&AgentType>, ValidationError> {
        match agent_type.and_then(|t| self.types.get(t)) {
            Some(t) => Ok(Some(t)),
            None if self.strict => Err(ValidationError::new(
                ValidationRule::UnknownAgentType,
                match agent_type {
                    Some(t) => {
                        format!("agent type {t:?} is not declared, and the configuration is strict")
                    }
                    None => "an agent type is required: the configuration is strict".to_string(),
                },
            )),
            None => Ok(None),
        }
    }

    pub fn initial_state(&self, agent_type: &str) -> Option<&str> {
        self.types.get(agent_type).map(|t| t.initial_state.as_str())
    }

    /// A save: the state is declared and the data fits its schema.
    pub fn check_save(
        &self,
        agent_type: Option<&str>,
        state_name: &str,
        data: &Doc,
    ) -> Result<(), ValidationError> {
        let (Some(name), Some(_)) = (agent_type, self.lookup(agent_type)?) else {
            return Ok(());
        };
        self.validate_state(name, state_name)?;
        self.check_data(name, state_name, data)
    }

    /// A transition: declared, and the data after it (when known: a multi-step
    /// transition brings it when it completes) fits the target's schema.
    pub fn check_transition(
        &self,
        agent_type: Option<&str>,
        from: &str,
        to: &str,
        trigger: &str,
        data_after: Option<&Doc>,
    ) -> Result<(), ValidationError> {
        let (Some(name), Some(_)) = (agent_type, self.lookup(agent_type)?) else {
            return Ok(());
        };
        self.validate_transition(name, from, to, trigger)?;
        match data_after {
            Some(data) => self.check_data(name, to, data),
            None => Ok(()),
        }
    }

    /// The data fits the state's schema; decoded to a tree only when there is one.
    fn check_data(&self, agent_type: &str, state: &str, data: &Doc) -> Result<(), ValidationError> {
        let has_schema = self
            .types
            .get(agent_type)
            .is_some_and(|t| t.schemas.contains_key(state));
        if has_schema {
            self.validate_data(agent_type, state, &data.to_value())
        } else {
            Ok(())
        }
    }

    /// Where `trigger` leads from `from`, for a typed agent; `Ok(None)` when untyped.
    pub fn next_state(
        &self,
        agent_type: Option<&str>,
        from: &str,
        trigger: &str,
    ) -> Result<Option<String>, ValidationError> {
        let Some(t) = self.lookup(agent_type)? else {
            return Ok(None);
        };
        t.transitions
            .iter()
            .find(|d| d.from == from && d.trigger == trigger)
            .map(|d| Some(d.to.clone()))
            .ok_or_else(|| {
                ValidationError::new(
                    ValidationRule::TransitionNotAllowed,
                    format!(
                        "agent type {:?} has no transition from {from:?} on trigger {trigger:?}",
                        agent_type.unwrap_or_default()
                    ),
                )
            })
    }
}

impl StateValidator for AgentTypes {
    fn validate_state(&self, agent_type: &str, state_name: &str) -> Result<(), ValidationError> {
        match self.types.get(agent_type) {
            Some(t) if !t.states.contains(state_name) => Err(ValidationError::new(
                ValidationRule::UnknownState,
                format!("state {state_name:?} is not a state of agent type {agent_type:?}"),
            )),
            _ => Ok(()),
        }
    }

    fn validate_transition(
        &self,
        agent_type: &str,
        from: &str,
        to: &str,
        trigger: &str,
    ) -> Result<(), ValidationError> {
        let Some(t) = self.types.get(agent_type) else {
            return Ok(());
        };
        self.validate_state(agent_type, to)?;
        if t.transitions
            .iter()
            .any(|d| d.from == from && d.to == to && d.trigger == trigger)
        {
            Ok(())
        } else {
            Err(ValidationError::new(
                ValidationRule::TransitionNotAllowed,
                format!(
                    "agent type {agent_type:?} does not allow {from:?} -> {to:?} on trigger {trigger:?}"
                ),
            ))
        }
    }

    fn validate_data(
        &self,
        agent_type: &str,
        state_name: &str,
        data: &Value,
    ) -> Result<(), ValidationError> {
        let Some(schema) = self
            .types
            .get(agent_type)
            .and_then(|t| t.schemas.get(state_name))
        else {
            return Ok(());
        };
        let problems: Vec<String> = schema
            .iter_errors(data)
            .take(3)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{e} (at {at})")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationError::new(
                ValidationRule::SchemaMismatch,
                format!(
                    "state_data does not match the schema of {agent_type:?} state {state_name:?}: {}",
                    problems.join("; ")
                ),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_counted_in_characters() {
        assert!(name("state_name", &"a".repeat(NAME_CHARS_MAX)).is_ok());
        assert!(name("state_name", &"\u{1F600}".repeat(NAME_CHARS_MAX)).is_ok());
        assert!(name("state_name", &"\u{1F600}".repeat(NAME_CHARS_MAX + 1)).is_err());
        assert!(name("state_name", "").is_err());
        assert!(
            name("state_name", "a\u{85}b").is_err(),
            "C1 controls are controls"
        );
    }
    use serde_json::json;

    const GREETER: &str = r#"
        [agent_types.greeter]
        initial_state = "idle"
        states = ["idle", "greeting", "transferring", "done"]
        transitions = [
          { from = "idle", to = "greeting", trigger = "user_message" },
          { from = "greeting", to = "transferring", trigger = "handoff" },
        ]
        [agent_types.greeter.state_schemas]
        greeting = { type = "object", required = ["user_name"] }
    "#;

    fn doc(v: serde_json::Value) -> Doc {
        Doc::from_value(&v)
    }

    /// The agent-type part of a `--config` file.
    #[derive(serde::Deserialize)]
    struct TypesFile {
        #[serde(default)]
        strict: bool,
        agent_types: BTreeMap<String, AgentTypeDef>,
    }

    fn types(text: &str) -> AgentTypes {
        let file: TypesFile = toml::from_str(text).unwrap();
        AgentTypes::compile(file.strict, &file.agent_types).unwrap()
    }

    #[test]
    fn transitions_states_and_schemas_are_checked() {
        let t = types(GREETER);
        let g = Some("greeter");
        let ok = doc(json!({"user_name": "ada"}));
        assert!(t
            .check_transition(g, "idle", "greeting", "user_message", Some(&ok))
            .is_ok());
        let e = t
            .check_transition(g, "idle", "done", "user_message", Some(&ok))
            .unwrap_err();
        assert_eq!(e.rule, ValidationRule::TransitionNotAllowed);
        let e = t
            .check_transition(g, "idle", "greeting", "user_message", Some(&doc(json!({}))))
            .unwrap_err();
        assert_eq!(e.rule, ValidationRule::SchemaMismatch);
        assert!(e.message.contains("user_name"), "{}", e.message);
        let e = t.check_save(g, "sleeping", &doc(json!(null))).unwrap_err();
        assert_eq!(e.rule, ValidationRule::UnknownState);
        assert_eq!(
            t.next_state(g, "greeting", "handoff").unwrap().as_deref(),
            Some("transferring")
        );
        // Undeclared types pass unless strict.
        assert!(t
            .check_save(Some("other"), "anything", &doc(json!(1)))
            .is_ok());
        assert!(t.check_save(None, "anything", &doc(json!(1))).is_ok());
        let strict = types(&format!("strict = true\n{GREETER}"));
        let e = strict
            .check_save(Some("other"), "x", &doc(json!(1)))
            .unwrap_err();
        assert_eq!(e.rule, ValidationRule::UnknownAgentType);
    }

    #[test]
    fn a_bad_schema_is_a_config_error() {
        let bad = GREETER.replace("type = \"object\"", "type = 7");
        let file: TypesFile = toml::from_str(&bad).unwrap();
        let err = AgentTypes::compile(file.strict, &file.agent_types)
            .err()
            .unwrap();
        assert!(err.contains("not a valid JSON Schema"), "{err}");
    }

    #[test]
    fn agent_ids() {
        assert!(agent_id("greeter-1:conv.7_a").is_ok());
        assert!(agent_id("").is_err());
        assert!(agent_id("a/b").is_err());
        assert!(agent_id("é").is_err());
        assert!(agent_id(&"a".repeat(129)).is_err());
    }
}
