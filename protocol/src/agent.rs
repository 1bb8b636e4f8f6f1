//! The `Agent` trait: what an agent implements to persist, restore and recover its state
//! through the sidecar.
//!
//! An agent keeps its own working state in memory and describes it with
//! [`Agent::state_name`] and [`Agent::state_data`]. The provided methods do the rest:
//! [`Agent::persist_state`] validates and saves it (first writer wins against the last
//! version this agent saw), [`Agent::restore_state`] loads it back after a restart and
//! hands any transition left half-done to [`Agent::handle_recovery`].

use serde_json::Value;

use crate::client::{Client, ClientError};
use crate::persistence::StatePersistence;
use crate::types::{PendingTransition, PersistedState, SaveStateRequest};
use crate::validator::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("invalid state: {0}")]
    Invalid(#[from] ValidationError),
}

#[allow(async_fn_in_trait)]
pub trait Agent {
    fn agent_id(&self) -> &str;
    fn agent_type(&self) -> &str;
    /// The current state of the agent's state machine.
    fn state_name(&self) -> &str;
    /// The data that goes with it.
    fn state_data(&self) -> Value;
    /// The version this agent last saw (for `If-Match`); `None` before the first save.
    fn version(&self) -> Option<u64>;
    fn set_version(&mut self, version: u64);
    /// Takes over a state loaded from the sidecar.
    fn adopt(&mut self, state: &PersistedState);

    /// Checks a state before it is saved or adopted.
    fn validate_state(&self, state_name: &str, data: &Value) -> Result<(), ValidationError>;

    /// Deals with a multi-step transition found pending on restore: complete it, or
    /// abort it. Called by [`Agent::restore_state`].
    async fn handle_recovery(
        &mut self,
        client: &Client,
        pending: &PendingTransition,
    ) -> Result<(), AgentError>;

    /// Validates and saves the current state; returns the new version.
    async fn persist_state(&mut self, client: &Client) -> Result<u64, AgentError> {
        let data = self.state_data();
        self.validate_state(self.state_name(), &data)?;
        let req = SaveStateRequest {
            agent_type: Some(self.agent_type().to_string()),
            state_name: self.state_name().to_string(),
            state_data: Some(data),
            metadata: None,
        };
        let version = client
            .save_state(self.agent_id(), &req, self.version())
            .await?;
        self.set_version(version);
        Ok(version)
    }

    /// Loads the agent's state from the sidecar; `Ok(false)` if it has none yet. A
    /// pending transition goes to [`Agent::handle_recovery`], after which the state is
    /// loaded again.
    async fn restore_state(&mut self, client: &Client) -> Result<bool, AgentError> {
        let Some(state) = client.load_state(self.agent_id()).await? else {
            return Ok(false);
        };
        self.validate_state(&state.state_name, &state.state_data)?;
        self.adopt(&state);
        if let Some(pending) = &state.pending_transition {
            self.handle_recovery(client, pending).await?;
            if let Some(state) = client.load_state(self.agent_id()).await? {
                self.adopt(&state);
            }
        }
        Ok(true)
    }
}
