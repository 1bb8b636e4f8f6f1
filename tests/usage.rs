//! Storage usage against the real binary, on both backends: `GET /v1/usage` names every
//! table (collection) with its rows and bytes and the agents holding the most bytes,
//! threads included; the `agentstate_storage_*` gauges follow; `agentstate usage
//! --top N` prints the same beside the running sidecar; a bad `top` is a 400.

#[macro_use]
mod common;

use agentstate_protocol::{
    Payload, PutThreadCheckpointRequest, SaveStateRequest, StatePersistence, ThreadBlob, Typed,
    UsageResponse,
};
use bytes::Bytes;
use common::{agentstate, drained, eventually, raw, start_with, stdout, Backend};
use serde_json::json;

fn save(data_bytes: usize) -> SaveStateRequest {
    SaveStateRequest {
        agent_type: None,
        state_name: "idle".into(),
        state_data: Some(json!({ "text": "x".repeat(data_bytes) })),
        metadata: None,
    }
}

async fn usage(url: &str, query: &str) -> (u16, Vec<u8>) {
    let r = raw("GET", &format!("{url}/v1/usage{query}"), &[], Bytes::new()).await;
    (r.status, r.body.to_vec())
}

both_backends!(usage_names_tables_and_the_largest_agents);
async fn usage_names_tables_and_the_largest_agents(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (sidecar, mongo) = start_with(
        backend,
        "usage",
        dir.path(),
        &["--usage-interval-secs", "1"],
    )
    .await;
    let c = sidecar.client();
    for (id, bytes) in [("small-1", 10), ("big", 60_000), ("small-2", 10)] {
        c.save_state(id, &save(bytes), None).await.unwrap();
    }
    let blob = Typed {
        type_: "json".into(),
        data: Payload(Bytes::from(format!("\"{}\"", "t".repeat(20_000)))),
    };
    let put = PutThreadCheckpointRequest {
        checkpoint_ns: String::new(),
        checkpoint_id: "01".into(),
        parent_checkpoint_id: None,
        checkpoint: Typed {
            type_: "json".into(),
            data: Payload(Bytes::from_static(b"{}")),
        },
        metadata: Default::default(),
        channel_versions: [("m".to_string(), "1".to_string())].into(),
        blobs: vec![ThreadBlob {
            channel: "m".into(),
            version: "1".into(),
            value: blob,
            extends: None,
        }],
    };
    c.put_thread_checkpoint("thread-1", &put).await.unwrap();
    // Flushed: usage is what the backend holds.
    drained(&c).await;

    let (status, body) = usage(&sidecar.url(), "?top=2").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let u: UsageResponse = serde_json::from_slice(&body).unwrap();
    let table = |name: &str| {
        u.tables
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("no {name} in {u:?}"))
            .clone()
    };
    let states = table("agent_states");
    assert_eq!(states.rows, 4, "three agents and the thread's: {states:?}");
    assert!(states.data_bytes >= 60_000, "{states:?}");
    assert!(states.storage_bytes >= states.data_bytes / 2, "{states:?}");
    assert_eq!(table("thread_checkpoints").rows, 1);
    assert_eq!(table("thread_blobs").rows, 1);
    assert!(table("thread_blobs").data_bytes >= 20_000);
    assert_eq!(u.largest.len(), 2, "{u:?}");
    assert_eq!(u.largest[0].agent_id, "big");
    assert!(u.largest[0].bytes >= 60_000, "{u:?}");
    assert_eq!(
        u.largest[1].agent_id, "thread-1",
        "a thread's checkpoints count"
    );
    assert!(u.largest[1].bytes >= 20_000, "{u:?}");

    // The gauges follow (read every second here).
    eventually(std::time::Duration::from_secs(10), "storage gauges", || {
        let url = sidecar.url();
        async move {
            let m = raw("GET", &format!("{url}/metrics"), &[], Bytes::new()).await;
            let text = String::from_utf8_lossy(&m.body).into_owned();
            text.lines()
                .any(|l| l == "agentstate_storage_rows{table=\"agent_states\"} 4")
                .then_some(())
        }
    })
    .await;

    for bad in ["?top=-1", "?top=1001", "?top=many"] {
        let (status, body) = usage(&sidecar.url(), bad).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body.contains("top must be an integer from 0 to 1000"),
            "{body}"
        );
    }

    // The command, beside the running sidecar.
    let mut args = vec![
        "--config".to_string(),
        common::example_config().display().to_string(),
    ];
    if let Some(m) = &mongo {
        args.extend(m.sidecar_args());
    }
    let out = agentstate(&["usage", "--top", "1"], &dir.path().join("data"), &args);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("agent_states"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.trim_end().ends_with(" big") && !l.contains("small")),
        "{text}"
    );
    assert!(!text.contains("thread-1"), "--top 1: {text}");
}
