//! The Haiku writer: composes a haiku on the topic it was handed, for the user it was
//! handed, then passes the conversation on. Composing is a multi-step transition
//! (`begin` ... `complete`), so a crash in the middle is found and finished on restore.

use agentstate_protocol::{
    Agent, AgentError, Client, PendingTransition, PersistedState, Transfer, TransferRequest,
    TransitionRequest, ValidationError, ValidationRule,
};
use serde_json::{json, Value};

const STATES: &[&str] = &["idle", "composing", "reviewing", "transferring", "done"];

pub struct HaikuAgent {
    id: String,
    state: String,
    topic: String,
    user_name: String,
    haiku: Option<String>,
    version: Option<u64>,
}

impl HaikuAgent {
    /// Restores the agent from the sidecar; the topic and user come from the context
    /// the transfer handed over.
    pub async fn restore(client: &Client, id: &str) -> Result<Self, AgentError> {
        let mut agent = HaikuAgent {
            id: id.to_string(),
            state: "idle".into(),
            topic: String::new(),
            user_name: String::new(),
            haiku: None,
            version: None,
        };
        if !agent.restore_state(client).await? {
            return Err(AgentError::Invalid(ValidationError::new(
                ValidationRule::UnknownState,
                format!("haiku agent {id} was never handed a conversation"),
            )));
        }
        Ok(agent)
    }

    pub fn user_name(&self) -> &str {
        &self.user_name
    }

    /// Writes the haiku: `composing -> reviewing`, as a multi-step transition.
    pub async fn compose(&mut self, client: &Client) -> Result<String, AgentError> {
        let begun = client
            .begin_transition(
                &self.id,
                &TransitionRequest {
                    to_state: "reviewing".into(),
                    trigger: "composed".into(),
                    state_data: None,
                },
            )
            .await?;
        let haiku = write_haiku(&self.topic);
        let done = client
            .complete_transition(
                &self.id,
                &begun.pending_transition.id,
                Some(json!({ "haiku": haiku, "topic": self.topic })),
            )
            .await?;
        let reply = format!("Here is your haiku, {}:\n{haiku}", self.user_name);
        super::exchange(
            client,
            &self.id,
            &format!("(haiku about {})", self.topic),
            &reply,
        )
        .await?;
        self.state = "reviewing".into();
        self.haiku = Some(haiku.clone());
        self.version = Some(done.version);
        Ok(haiku)
    }

    pub async fn on_user_message(&mut self, client: &Client, text: &str) -> Result<(), AgentError> {
        let reply = format!(
            "Happy to help, {}. That one is for the Git assistant.",
            self.user_name
        );
        super::exchange(client, &self.id, text, &reply).await
    }

    /// Hands the conversation to a Git assistant, with the user's last question.
    pub async fn hand_off(
        &mut self,
        client: &Client,
        git_id: &str,
        transfer_id: &str,
    ) -> Result<Transfer, AgentError> {
        let last_user = client
            .get_messages(&self.id, 0, 1000)
            .await?
            .into_iter()
            .rev()
            .find(|m| m.role == "user")
            .map(|m| m.content)
            .unwrap_or_default();
        let transfer = client
            .transfer(&TransferRequest {
                transfer_id: transfer_id.into(),
                from_agent: self.id.clone(),
                to_agent: git_id.into(),
                trigger: "handoff".into(),
                to_trigger: Some("question".into()),
                to_agent_type: Some("git_assistant".into()),
                context: Some(json!({ "user_name": self.user_name, "question": last_user })),
                messages_max: Some(20),
            })
            .await?;
        self.state = "transferring".into();
        self.version = Some(transfer.from_version);
        Ok(transfer)
    }
}

/// A haiku (5-7-5) on a topic, deterministically.
pub fn write_haiku(topic: &str) -> String {
    format!("Quiet {topic} light\nleaves drift where the river bends\nthe day folds away")
}

impl Agent for HaikuAgent {
    fn agent_id(&self) -> &str {
        &self.id
    }

    fn agent_type(&self) -> &str {
        "haiku"
    }

    fn state_name(&self) -> &str {
        &self.state
    }

    fn state_data(&self) -> Value {
        match &self.haiku {
            Some(h) => json!({ "haiku": h, "topic": self.topic }),
            None => json!({ "topic": self.topic }),
        }
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
        self.topic = context["topic"].as_str().unwrap_or("the sea").to_string();
        self.user_name = context["user_name"]
            .as_str()
            .unwrap_or("friend")
            .to_string();
        self.haiku = state.state_data["haiku"].as_str().map(str::to_string);
        self.version = Some(state.version);
    }

    fn validate_state(&self, state_name: &str, _data: &Value) -> Result<(), ValidationError> {
        if STATES.contains(&state_name) {
            Ok(())
        } else {
            Err(ValidationError::new(
                ValidationRule::UnknownState,
                format!("the haiku agent has no state {state_name:?}"),
            ))
        }
    }

    async fn handle_recovery(
        &mut self,
        client: &Client,
        pending: &PendingTransition,
    ) -> Result<(), AgentError> {
        // A haiku half-written when the process died: writing it is deterministic, so
        // finish the job.
        let haiku = write_haiku(&self.topic);
        client
            .complete_transition(
                &self.id,
                &pending.id,
                Some(json!({ "haiku": haiku, "topic": self.topic })),
            )
            .await?;
        Ok(())
    }
}
