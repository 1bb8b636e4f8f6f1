//! The `StatePersistence` trait: what an agent needs from a state store.
//!
//! The HTTP [`crate::Client`] implements it; an agent written against the trait can be
//! tested with any other implementation.

use crate::types::{
    PersistedState, SaveStateRequest, StateTransition, TransitionRequest, TransitionResponse,
};

#[allow(async_fn_in_trait)]
pub trait StatePersistence {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Saves the agent's state. With `expected_version`, the save only happens if the
    /// stored version is that one (first writer wins); without, the last writer wins.
    /// Returns the new version.
    async fn save_state(
        &self,
        agent_id: &str,
        state: &SaveStateRequest,
        expected_version: Option<u64>,
    ) -> Result<u64, Self::Error>;

    /// The agent's current state, or `None` if it has none.
    async fn load_state(&self, agent_id: &str) -> Result<Option<PersistedState>, Self::Error>;

    /// Moves the agent to another state and logs the transition, atomically.
    async fn record_transition(
        &self,
        agent_id: &str,
        transition: &TransitionRequest,
    ) -> Result<TransitionResponse, Self::Error>;

    /// The transition log, oldest first: entries with `seq > after`, at most `limit`.
    async fn get_transitions(
        &self,
        agent_id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StateTransition>, Self::Error>;
}
