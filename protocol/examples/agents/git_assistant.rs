//! The Git assistant: answers the question it was handed from a small table of recipes.

use agentstate_protocol::{
    Agent, AgentError, Client, PendingTransition, PersistedState, ValidationError, ValidationRule,
};
use serde_json::{json, Value};

const STATES: &[&str] = &["idle", "assisting", "done"];

/// (words that must all appear, answer).
const RECIPES: &[(&[&str], &str)] = &[
    (
        &["undo", "commit"],
        "`git reset --soft HEAD~1` undoes the last commit and keeps its changes staged.",
    ),
    (
        &["new", "branch"],
        "`git switch -c <name>` creates a branch and switches to it.",
    ),
    (
        &["discard", "changes"],
        "`git restore <file>` discards unstaged changes to a file.",
    ),
];

pub struct GitAssistant {
    id: String,
    state: String,
    user_name: String,
    question: String,
    answered: u64,
    version: Option<u64>,
}

impl GitAssistant {
    pub async fn restore(client: &Client, id: &str) -> Result<Self, AgentError> {
        let mut agent = GitAssistant {
            id: id.to_string(),
            state: "idle".into(),
            user_name: String::new(),
            question: String::new(),
            answered: 0,
            version: None,
        };
        if !agent.restore_state(client).await? {
            return Err(AgentError::Invalid(ValidationError::new(
                ValidationRule::UnknownState,
                format!("git assistant {id} was never handed a conversation"),
            )));
        }
        Ok(agent)
    }

    pub fn question(&self) -> &str {
        &self.question
    }

    /// Answers the question handed over with the conversation.
    pub async fn answer_pending_question(&mut self, client: &Client) -> Result<String, AgentError> {
        let answer = format!("{}, {}", self.user_name, answer(&self.question));
        super::exchange(client, &self.id, &self.question.clone(), &answer).await?;
        self.answered += 1;
        let data = self.state_data();
        self.version =
            Some(super::step(client, &self.id, "assisting", "question", Some(data)).await?);
        Ok(answer)
    }

    pub async fn resolve(&mut self, client: &Client) -> Result<(), AgentError> {
        self.version = Some(super::step(client, &self.id, "done", "resolved", None).await?);
        self.state = "done".into();
        Ok(())
    }
}

/// The recipe for a question, deterministically.
pub fn answer(question: &str) -> &'static str {
    let q = question.to_lowercase();
    RECIPES
        .iter()
        .find(|(words, _)| words.iter().all(|w| q.contains(w)))
        .map_or(
            "I only know a few git recipes; try asking about commits or branches.",
            |(_, a)| a,
        )
}

impl Agent for GitAssistant {
    fn agent_id(&self) -> &str {
        &self.id
    }

    fn agent_type(&self) -> &str {
        "git_assistant"
    }

    fn state_name(&self) -> &str {
        &self.state
    }

    fn state_data(&self) -> Value {
        json!({ "question": self.question, "answered": self.answered })
    }

    fn version(&self) -> Option<u64> {
        self.version
    }

    fn set_version(&mut self, version: u64) {
        self.version = Some(version);
    }

    fn adopt(&mut self, state: &PersistedState) {
        let context = super::handed_context(state);
        self.state = state.state_name.clone();
        self.user_name = context["user_name"]
            .as_str()
            .unwrap_or("friend")
            .to_string();
        self.question = context["question"].as_str().unwrap_or_default().to_string();
        self.answered = state.state_data["answered"].as_u64().unwrap_or(0);
        self.version = Some(state.version);
    }

    fn validate_state(&self, state_name: &str, _data: &Value) -> Result<(), ValidationError> {
        if STATES.contains(&state_name) {
            Ok(())
        } else {
            Err(ValidationError::new(
                ValidationRule::UnknownState,
                format!("the git assistant has no state {state_name:?}"),
            ))
        }
    }

    async fn handle_recovery(
        &mut self,
        client: &Client,
        pending: &PendingTransition,
    ) -> Result<(), AgentError> {
        client
            .abort_transition(
                &self.id,
                &pending.id,
                Some("git assistant restarted".into()),
            )
            .await?;
        Ok(())
    }
}
