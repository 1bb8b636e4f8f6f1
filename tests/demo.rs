//! The example conversation (Greeter -> Haiku -> Git assistant) with a `kill -9` of the
//! sidecar in the middle, on both backends: the context handed over survives.

mod common;

#[path = "../protocol/examples/agents/mod.rs"]
mod agents;

use common::{start_with, Backend};

async fn conversation_survives_a_crash(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (mut sidecar, _mongo) = start_with(backend, "demo", dir.path(), &[]).await;
    let client = sidecar.client();
    let restarting = &mut sidecar;
    let restart = move || async move {
        restarting.restart().await;
    };
    let t = agents::conversation(&client, "c1", restart).await.unwrap();
    assert!(t.haiku_text.contains("autumn"), "{}", t.haiku_text);
    assert!(
        t.answer.starts_with("Ada, `git reset --soft HEAD~1`"),
        "{}",
        t.answer
    );
    assert_eq!(t.git.state_name, "done");
    assert_eq!(t.greeter.state_name, "transferring");
    assert_eq!(t.haiku.state_name, "transferring");
    // Everything said before the crash reached the last agent, in order.
    let contents: Vec<&str> = t.git_messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents[0], "Hi there, I'm Ada");
    assert_eq!(contents.len(), 10, "{contents:#?}");
    let seqs: Vec<u64> = t.git_messages.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    assert_eq!(t.git.conversation_context["from_agent"], "c1-haiku");
    assert_eq!(t.git.conversation_context["context"]["user_name"], "Ada");
}

#[tokio::test]
async fn conversation_survives_a_crash_embedded() {
    conversation_survives_a_crash(Backend::Embedded).await;
}

#[tokio::test]
async fn conversation_survives_a_crash_mongo() {
    conversation_survives_a_crash(Backend::Mongo).await;
}
