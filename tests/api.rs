//! The HTTP API against the real binary on the embedded store: round trips in both
//! codecs, versions and preconditions, transitions, and refusals of bad input.

mod common;

use agentstate_protocol::{
    Client, Codec, ErrorCode, SaveStateRequest, StatePersistence, TransitionRequest,
};
use common::{raw, Sidecar};
use serde_json::json;

fn save_req(state: &str, data: serde_json::Value) -> SaveStateRequest {
    SaveStateRequest {
        agent_type: Some("greeter".into()),
        state_name: state.into(),
        state_data: Some(data),
        metadata: Some(json!({"owner": "test"}).as_object().unwrap().clone()),
    }
}

#[tokio::test]
async fn save_and_load_round_trip_in_both_codecs() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(&dir.path().join("data"), &[]).await;
    for (codec, id) in [
        (Codec::Json, "json-agent"),
        (Codec::MsgPack, "msgpack-agent"),
    ] {
        let client: Client = sidecar.client().with_codec(codec);
        let data =
            json!({"user": "ada", "n": 3, "tags": ["a", "b"], "nested": {"x": 1.5, "nil": null}});
        let v1 = client
            .save_state(id, &save_req("idle", data.clone()), None)
            .await
            .unwrap();
        assert_eq!(v1, 1);
        let got = client
            .load_state(id)
            .await
            .unwrap()
            .expect("saved state loads");
        assert_eq!(got.agent_id, id);
        assert_eq!(got.agent_type.as_deref(), Some("greeter"));
        assert_eq!(got.state_name, "idle");
        assert_eq!(got.state_data, data);
        assert_eq!(got.version, 1);
        assert_eq!(got.metadata["owner"], "test");
        let v2 = client
            .save_state(id, &save_req("greeting", json!({})), Some(1))
            .await
            .unwrap();
        assert_eq!(v2, 2);
        let got2 = client.load_state(id).await.unwrap().unwrap();
        assert_eq!((got2.version, got2.created_at), (2, got.created_at));
    }

    // The response follows Accept, then the request's type; the ETag is the version.
    let url = format!("{}/v1/agents/json-agent", sidecar.url());
    let r = raw("GET", &url, &[("accept", "application/msgpack")], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/msgpack");
    assert_eq!(r.headers["etag"], "\"2\"");
    let decoded: serde_json::Value = rmp_serde::from_slice(&r.body).unwrap();
    assert_eq!(decoded["state_name"], "greeting");
    let r = raw("GET", &url, &[], "").await;
    assert_eq!(r.headers["content-type"], "application/json");
    assert_eq!(r.json()["version"], 2);
}

#[tokio::test]
async fn versions_preconditions_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(&dir.path().join("data"), &[]).await;
    let client = sidecar.client();
    let url = format!("{}/v1/agents/a1", sidecar.url());
    let json = ("content-type", "application/json");

    // Create-only succeeds once.
    let body = r#"{"state_name":"idle"}"#;
    assert_eq!(
        raw("PUT", &url, &[json, ("if-none-match", "*")], body)
            .await
            .status,
        200
    );
    let r = raw("PUT", &url, &[json, ("if-none-match", "*")], body).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (409, "version_conflict")
    );

    // First writer wins on If-Match; the loser learns the current version.
    assert_eq!(
        raw("PUT", &url, &[json, ("if-match", "\"1\"")], body)
            .await
            .json()["version"],
        2
    );
    let r = raw("PUT", &url, &[json, ("if-match", "\"1\"")], body).await;
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["error"]["current_version"], 2);
    // Last writer wins without it.
    assert_eq!(raw("PUT", &url, &[json], body).await.json()["version"], 3);

    // Delete with a stale version is refused; with the right one it goes.
    assert_eq!(
        raw("DELETE", &url, &[("if-match", "2")], "").await.status,
        409
    );
    assert_eq!(
        raw("DELETE", &url, &[("if-match", "3")], "").await.status,
        204
    );
    assert!(client.load_state("a1").await.unwrap().is_none());
    let r = raw("GET", &url, &[], "").await;
    assert_eq!((r.status, r.error_code().as_str()), (404, "not_found"));
    // Deleting again is fine (idempotent) without a precondition.
    assert_eq!(raw("DELETE", &url, &[], "").await.status, 204);
    // Re-created, versions keep counting so no older copy can look newer.
    let v = client
        .save_state("a1", &save_req("idle", json!({})), None)
        .await
        .unwrap();
    assert_eq!(v, 5);
}

#[tokio::test]
async fn transitions_update_state_and_are_logged_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(&dir.path().join("data"), &[]).await;
    let client = sidecar.client();
    client
        .save_state("t1", &save_req("idle", json!({})), None)
        .await
        .unwrap();
    let steps = [
        ("greeting", "user_message"),
        ("transferring", "handoff"),
        ("done", "finish"),
    ];
    for (i, (to, trigger)) in steps.iter().enumerate() {
        let r = client
            .record_transition(
                "t1",
                &TransitionRequest {
                    to_state: to.to_string(),
                    trigger: trigger.to_string(),
                    state_data: Some(json!({"step": i})),
                },
            )
            .await
            .unwrap();
        assert_eq!(r.version, i as u64 + 2);
        assert_eq!(r.transition.seq, i as u64 + 1);
    }
    let state = client.load_state("t1").await.unwrap().unwrap();
    assert_eq!((state.state_name.as_str(), state.version), ("done", 4));
    assert_eq!(state.state_data, json!({"step": 2}));

    let all = client.get_transitions("t1", 0, 100).await.unwrap();
    let names: Vec<_> = all
        .iter()
        .map(|t| (t.from_state.as_str(), t.to_state.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("idle", "greeting"),
            ("greeting", "transferring"),
            ("transferring", "done")
        ]
    );
    assert!(all.iter().all(|t| t.success && t.error.is_none()));
    let page = client.get_transitions("t1", 1, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].seq, 2);

    // No state yet: a transition has nothing to start from.
    let err = client
        .record_transition(
            "nobody",
            &TransitionRequest {
                to_state: "x".into(),
                trigger: "y".into(),
                state_data: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(&dir.path().join("data"), &["--body-bytes-max", "65536"]).await;
    let client = sidecar.client();
    client
        .save_state("keep", &save_req("idle", json!({"k": 1})), None)
        .await
        .unwrap();
    let base = sidecar.url();
    let url = format!("{base}/v1/agents/keep");
    let json = ("content-type", "application/json");
    let msgpack = ("content-type", "application/msgpack");

    let mut deep = String::new();
    for _ in 0..100 {
        deep.push_str("{\"a\":");
    }
    deep.push('1');
    for _ in 0..100 {
        deep.push('}');
    }
    let deep_body = format!(r#"{{"state_name":"x","state_data":{deep}}}"#);
    let huge = format!(
        r#"{{"state_name":"x","state_data":"{}"}}"#,
        "x".repeat(100_000)
    );
    // (what, url, headers, body, expected status, expected code)
    type Case<'a> = (
        &'a str,
        String,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        u16,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "truncated JSON",
            url.clone(),
            vec![json],
            br#"{"state_name":"#.to_vec(),
            400,
            "malformed",
        ),
        (
            "not JSON",
            url.clone(),
            vec![json],
            b"hello".to_vec(),
            400,
            "malformed",
        ),
        (
            "truncated msgpack",
            url.clone(),
            vec![msgpack],
            vec![0x82, 0xaa, b's'],
            400,
            "malformed",
        ),
        (
            "wrong type",
            url.clone(),
            vec![json],
            br#"{"state_name":42}"#.to_vec(),
            400,
            "malformed",
        ),
        (
            "missing field",
            url.clone(),
            vec![json],
            br#"{"state_data":{}}"#.to_vec(),
            400,
            "malformed",
        ),
        (
            "unknown field",
            url.clone(),
            vec![json],
            br#"{"state_name":"a","nope":1}"#.to_vec(),
            400,
            "malformed",
        ),
        (
            "empty body",
            url.clone(),
            vec![json],
            vec![],
            400,
            "malformed",
        ),
        (
            "content type",
            url.clone(),
            vec![("content-type", "text/plain")],
            b"{}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            "too large",
            url.clone(),
            vec![json],
            huge.into_bytes(),
            413,
            "too_large",
        ),
        (
            "deep nesting",
            url.clone(),
            vec![json],
            deep_body.into_bytes(),
            422,
            "validation_failed",
        ),
        (
            "dollar key",
            url.clone(),
            vec![json],
            br#"{"state_name":"a","state_data":{"$x":1}}"#.to_vec(),
            422,
            "validation_failed",
        ),
        (
            "huge integer",
            url.clone(),
            vec![json],
            br#"{"state_name":"a","state_data":{"n":18446744073709551615}}"#.to_vec(),
            422,
            "validation_failed",
        ),
        (
            "empty state",
            url.clone(),
            vec![json],
            br#"{"state_name":""}"#.to_vec(),
            422,
            "validation_failed",
        ),
        (
            "bad if-match",
            url.clone(),
            vec![json, ("if-match", "banana")],
            br#"{"state_name":"a"}"#.to_vec(),
            400,
            "malformed",
        ),
        (
            "bad durability",
            format!("{url}?durability=disk"),
            vec![json],
            br#"{"state_name":"a"}"#.to_vec(),
            400,
            "malformed",
        ),
        (
            "odd agent id",
            format!("{base}/v1/agents/a%2Fb"),
            vec![json],
            br#"{"state_name":"a"}"#.to_vec(),
            400,
            "malformed",
        ),
        (
            "long agent id",
            format!("{base}/v1/agents/{}", "a".repeat(200)),
            vec![json],
            br#"{"state_name":"a"}"#.to_vec(),
            400,
            "malformed",
        ),
        (
            "bad paging",
            format!("{url}/transitions?limit=0"),
            vec![],
            vec![],
            400,
            "malformed",
        ),
        (
            "bad after",
            format!("{url}/transitions?after=x"),
            vec![],
            vec![],
            400,
            "malformed",
        ),
        (
            "no such route",
            format!("{base}/v1/nothing"),
            vec![],
            vec![],
            404,
            "not_found",
        ),
        (
            "wrong method",
            url.clone(),
            vec![],
            vec![],
            405,
            "method_not_allowed",
        ),
    ];
    for (what, url, headers, body, status, code) in cases {
        let method = match what {
            "bad paging" | "bad after" | "no such route" => "GET",
            "wrong method" => "PATCH",
            _ => "PUT",
        };
        let r = raw(method, &url, &headers, body).await;
        assert_eq!(r.status, status, "{what}: {:?}", r.body);
        assert_eq!(r.error_code(), code, "{what}");
        let message = r.json()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(!message.is_empty(), "{what}: the error says what is wrong");
    }

    // Still serving, and the stored state is untouched.
    let state = client.load_state("keep").await.unwrap().unwrap();
    assert_eq!(
        (state.version, state.state_data.clone()),
        (1, json!({"k": 1}))
    );
}

#[tokio::test]
async fn metrics_and_health_report_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = Sidecar::start(&dir.path().join("data"), &[]).await;
    let client = sidecar.client();
    client
        .save_state("m1", &save_req("idle", json!({})), None)
        .await
        .unwrap();
    client
        .save_state("m1", &save_req("idle", json!({})), Some(7))
        .await
        .unwrap_err();
    let base = sidecar.url();
    assert_eq!(
        raw("GET", &format!("{base}/healthz"), &[], "").await.status,
        200
    );
    assert_eq!(
        raw("GET", &format!("{base}/readyz"), &[], "").await.status,
        200
    );
    let status = client.status().await.unwrap();
    assert!(status.ready && status.wal_last_lsn >= 1, "{status:?}");

    let r = raw("GET", &format!("{base}/metrics"), &[], "").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(r.body.to_vec()).unwrap();
    for needle in [
        r#"agentstate_requests_total{route="/v1/agents/{id}",status="200"}"#,
        r#"agentstate_requests_total{route="/v1/agents/{id}",status="409"}"#,
        r#"agentstate_conflicts_total{kind="version"} 1"#,
        "agentstate_wal_fsync_duration_seconds_bucket",
        "agentstate_request_duration_seconds_bucket",
        "agentstate_ready 1",
        "agentstate_recovery_runs_total{outcome=\"ok\"} 1",
        // Sized by the memory budget: 256 MiB where no limit is found.
        "agentstate_backlog_bytes_max ",
        "agentstate_memory_bound_bytes{part=\"cache\"}",
        "agentstate_memory_limit_bytes ",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
    // Labels never carry an agent id.
    assert!(!text.contains("m1"), "an agent id leaked into the metrics");
}
