//! The Greeter: learns the user's name, then hands the conversation on.

use agentstate_protocol::{
    Agent, AgentError, Client, PendingTransition, PersistedState, Transfer, TransferRequest,
    ValidationError, ValidationRule,
};
use serde_json::{json, Value};

const STATES: &[&str] = &["idle", "greeting", "transferring", "done"];

pub struct GreeterAgent {
    id: String,
    state: String,
    user_name: Option<String>,
    version: Option<u64>,
}

impl GreeterAgent {
    /// Restores the greeter, or creates it in `idle`.
    pub async fn start(client: &Client, id: &str) -> Result<Self, AgentError> {
        let mut agent = GreeterAgent {
            id: id.to_string(),
            state: "idle".into(),
            user_name: None,
            version: None,
        };
        if !agent.restore_state(client).await? {
            agent.persist_state(client).await?;
        }
        Ok(agent)
    }

    pub fn user_name(&self) -> Option<&str> {
        self.user_name.as_deref()
    }

    /// Greets; the first message that names the user moves `idle -> greeting`.
    pub async fn on_user_message(
        &mut self,
        client: &Client,
        text: &str,
    ) -> Result<String, AgentError> {
        if self.user_name.is_none() {
            self.user_name = name_in(text);
        }
        let name = self.user_name.clone().unwrap_or_else(|| "friend".into());
        let reply = if self.state == "idle" {
            format!("Hello, {name}! How can I help you today?")
        } else {
            format!("Of course, {name}. Let me find the right agent for that.")
        };
        super::exchange(client, &self.id, text, &reply).await?;
        let version = super::step(
            client,
            &self.id,
            "greeting",
            "user_message",
            Some(self.state_data()),
        )
        .await?;
        self.state = "greeting".into();
        self.version = Some(version);
        Ok(reply)
    }

    /// Hands the conversation to a haiku agent (created by the transfer).
    pub async fn hand_off(
        &mut self,
        client: &Client,
        haiku_id: &str,
        transfer_id: &str,
        topic: &str,
    ) -> Result<Transfer, AgentError> {
        let transfer = client
            .transfer(&TransferRequest {
                transfer_id: transfer_id.into(),
                from_agent: self.id.clone(),
                to_agent: haiku_id.into(),
                trigger: "handoff".into(),
                to_trigger: Some("request".into()),
                to_agent_type: Some("haiku".into()),
                context: Some(json!({ "user_name": self.user_name, "topic": topic })),
                messages_max: None,
            })
            .await?;
        self.state = "transferring".into();
        self.version = Some(transfer.from_version);
        Ok(transfer)
    }
}

/// The user's name in "I'm Ada" / "my name is Ada", deterministically.
fn name_in(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    let start = ["i'm ", "i am ", "my name is "]
        .iter()
        .find_map(|p| lower.find(p).map(|i| i + p.len()))?;
    let word: String = text[start..]
        .chars()
        .take_while(|c| c.is_alphabetic())
        .collect();
    (!word.is_empty()).then_some(word)
}

impl Agent for GreeterAgent {
    fn agent_id(&self) -> &str {
        &self.id
    }

    fn agent_type(&self) -> &str {
        "greeter"
    }

    fn state_name(&self) -> &str {
        &self.state
    }

    fn state_data(&self) -> Value {
        match &self.user_name {
            Some(n) => json!({ "user_name": n }),
            None => json!({}),
        }
    }

    fn version(&self) -> Option<u64> {
        self.version
    }

    fn set_version(&mut self, version: u64) {
        self.version = Some(version);
    }

    fn adopt(&mut self, state: &PersistedState) {
        self.state = state.state_name.clone();
        self.user_name = state.state_data["user_name"].as_str().map(str::to_string);
        self.version = Some(state.version);
    }

    fn validate_state(&self, state_name: &str, data: &Value) -> Result<(), ValidationError> {
        if !STATES.contains(&state_name) {
            return Err(ValidationError::new(
                ValidationRule::UnknownState,
                format!("the greeter has no state {state_name:?}"),
            ));
        }
        if state_name == "greeting" && !data["user_name"].is_string() {
            return Err(ValidationError::new(
                ValidationRule::SchemaMismatch,
                "greeting needs the user's name",
            ));
        }
        Ok(())
    }

    async fn handle_recovery(
        &mut self,
        client: &Client,
        pending: &PendingTransition,
    ) -> Result<(), AgentError> {
        // The greeter has no multi-step work worth resuming: start over.
        client
            .abort_transition(&self.id, &pending.id, Some("greeter restarted".into()))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_found() {
        assert_eq!(super::name_in("Hi there, I'm Ada").as_deref(), Some("Ada"));
        assert_eq!(
            super::name_in("my name is Grace.").as_deref(),
            Some("Grace")
        );
        assert_eq!(super::name_in("hello"), None);
    }
}
