//! Three deterministic example agents (no model calls) and the conversation that links
//! them: a Greeter learns the user's name, hands the conversation to a Haiku writer,
//! which hands it to a Git assistant. Used by `conversation_demo` and by the black-box
//! tests, which run the same conversation with a `kill -9` of the sidecar in the middle.

#![allow(dead_code)] // each user of this module uses part of it

pub mod git_assistant;
pub mod greeter;
pub mod haiku;

use std::future::Future;

use agentstate_protocol::{
    AgentError, Client, Message, NewMessage, PersistedState, StatePersistence, TransitionRequest,
};
use serde_json::Value;

pub use git_assistant::GitAssistant;
pub use greeter::GreeterAgent;
pub use haiku::HaikuAgent;

/// Appends a user message and the agent's reply to the agent's conversation.
pub async fn exchange(
    client: &Client,
    agent_id: &str,
    user: &str,
    reply: &str,
) -> Result<(), AgentError> {
    let messages = vec![
        NewMessage {
            role: "user".into(),
            content: user.into(),
            metadata: Default::default(),
        },
        NewMessage {
            role: "assistant".into(),
            content: reply.into(),
            metadata: Default::default(),
        },
    ];
    client.append_messages(agent_id, messages, None).await?;
    Ok(())
}

/// Moves an agent along one of its type's transitions; returns the new version.
pub async fn step(
    client: &Client,
    agent_id: &str,
    to_state: &str,
    trigger: &str,
    state_data: Option<Value>,
) -> Result<u64, AgentError> {
    let req = TransitionRequest {
        to_state: to_state.into(),
        trigger: trigger.into(),
        state_data,
    };
    Ok(client.record_transition(agent_id, &req).await?.version)
}

/// The context a transfer handed to an agent (`conversation_context.context`).
pub fn handed_context(state: &PersistedState) -> &Value {
    &state.conversation_context["context"]
}

/// What the conversation left behind, for the caller to show or check.
pub struct Transcript {
    pub greeter: PersistedState,
    pub haiku: PersistedState,
    pub git: PersistedState,
    pub git_messages: Vec<Message>,
    pub haiku_text: String,
    pub answer: String,
}

/// Runs the whole conversation. `restart` is called once, between the first transfer and
/// the haiku: it must kill and restart the sidecar (same address). The agents after it
/// start from nothing but what the sidecar kept.
pub async fn conversation<F, Fut>(
    client: &Client,
    prefix: &str,
    restart: F,
) -> Result<Transcript, AgentError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let greeter_id = format!("{prefix}-greeter");
    let haiku_id = format!("{prefix}-haiku");
    let git_id = format!("{prefix}-git");

    let mut greeter = GreeterAgent::start(client, &greeter_id).await?;
    greeter.on_user_message(client, "Hi there, I'm Ada").await?;
    greeter
        .on_user_message(client, "Could you write me a haiku about autumn?")
        .await?;
    greeter
        .hand_off(client, &haiku_id, &format!("{prefix}-to-haiku"), "autumn")
        .await?;

    // The sidecar dies (kill -9) and comes back; nothing acknowledged may be lost.
    restart().await;

    let mut haiku = HaikuAgent::restore(client, &haiku_id).await?;
    let haiku_text = haiku.compose(client).await?;
    haiku
        .on_user_message(client, "Lovely. Now, how do I undo my last commit?")
        .await?;
    haiku
        .hand_off(client, &git_id, &format!("{prefix}-to-git"))
        .await?;

    let mut git = GitAssistant::restore(client, &git_id).await?;
    let answer = git.answer_pending_question(client).await?;
    git.resolve(client).await?;

    let load = |id: String| async move {
        client.load_state(&id).await?.ok_or_else(|| {
            AgentError::Client(agentstate_protocol::ClientError::InvalidRequest(format!(
                "{id} vanished"
            )))
        })
    };
    Ok(Transcript {
        greeter: load(greeter_id).await?,
        haiku: load(haiku_id).await?,
        git: load(git_id.clone()).await?,
        git_messages: client.get_messages(&git_id, 0, 1000).await?,
        haiku_text,
        answer,
    })
}
