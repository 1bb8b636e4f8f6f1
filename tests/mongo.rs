//! The sidecar against a real MongoDB-wire server: flushed states land as native BSON
//! with the right versions; with MongoDB down, writes are still acknowledged, and after a
//! `kill -9` of the sidecar, a restart and MongoDB's return, they all arrive.

mod common;

use std::time::Duration;

use agentstate_protocol::{SaveStateRequest, StatePersistence, TransitionRequest};
use common::{eventually, Mongo, Sidecar};
use mongodb::bson::{doc, Document};
use serde_json::json;

fn save(state: &str, n: u64) -> SaveStateRequest {
    SaveStateRequest {
        agent_type: Some("greeter".into()),
        state_name: state.into(),
        state_data: Some(json!({ "n": n, "user": { "name": "ada" } })),
        metadata: Some(json!({ "team": "a" }).as_object().unwrap().clone()),
    }
}

async fn stored_version(db: &mongodb::Database, agent: &str) -> Option<Document> {
    db.collection::<Document>("agent_states")
        .find_one(doc! { "_id": agent })
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn states_written_over_http_appear_in_mongodb() {
    let mongo = Mongo::start("flush");
    let dir = tempfile::tempdir().unwrap();
    let args = mongo.sidecar_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = Sidecar::start(&dir.path().join("data"), &args).await;
    let client = sidecar.client();

    for i in 0..10 {
        let agent = format!("m{i}");
        for n in 1..=3 {
            client
                .save_state(&agent, &save("idle", n), None)
                .await
                .unwrap();
        }
    }
    client
        .record_transition(
            "m0",
            &TransitionRequest {
                to_state: "greeting".into(),
                trigger: "user_message".into(),
                state_data: None,
            },
        )
        .await
        .unwrap();
    // `remote` durability: acknowledged only once MongoDB has it.
    let remote = sidecar
        .client()
        .with_durability(agentstate_protocol::Durability::Remote);
    let v = remote
        .save_state("m9", &save("done", 99), None)
        .await
        .unwrap();
    assert_eq!(v, 4);
    let db = mongo.db().await;
    let d = stored_version(&db, "m9")
        .await
        .expect("remote write is in MongoDB on ack");
    assert_eq!(d.get_i64("version").unwrap(), 4);

    for i in 0..9 {
        let agent = format!("m{i}");
        let want = if i == 0 { 4 } else { 3 };
        let d = eventually(Duration::from_secs(20), "flush to MongoDB", || {
            let db = db.clone();
            let agent = agent.clone();
            async move {
                stored_version(&db, &agent)
                    .await
                    .filter(|d| d.get_i64("version") == Ok(want))
            }
        })
        .await;
        // Native BSON, readable with mongosh.
        assert_eq!(d.get_str("agent_type").unwrap(), "greeter");
        assert_eq!(
            d.get_document("state_data")
                .unwrap()
                .get_document("user")
                .unwrap()
                .get_str("name")
                .unwrap(),
            "ada"
        );
        assert!(d.get_datetime("updated_at").is_ok());
    }
    let t = db
        .collection::<Document>("state_transitions")
        .find_one(doc! { "agent_id": "m0" })
        .await
        .unwrap()
        .expect("transition flushed");
    assert_eq!(
        (
            t.get_str("from_state").unwrap(),
            t.get_str("to_state").unwrap()
        ),
        ("idle", "greeting")
    );
    assert_eq!(t.get_i64("seq").unwrap(), 1);

    // A cold read (a fresh sidecar with an empty WAL and cache) comes from MongoDB.
    drop(sidecar);
    let dir2 = tempfile::tempdir().unwrap();
    let cold = Sidecar::start(&dir2.path().join("data"), &args).await;
    let s = cold.client().load_state("m0").await.unwrap().unwrap();
    assert_eq!((s.state_name.as_str(), s.version), ("greeting", 4));
    let log = cold.client().get_transitions("m0", 0, 10).await.unwrap();
    assert_eq!(log.len(), 1);
}

#[tokio::test]
async fn writes_survive_a_mongodb_outage_and_a_sidecar_kill9() {
    let mut mongo = Mongo::start_local("agentstate_outage".into());
    let dir = tempfile::tempdir().unwrap();
    let args = mongo.sidecar_args();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--backend-timeout-ms", "1000", "--flush-interval-ms", "50"]);
    let mut sidecar = Sidecar::start(&dir.path().join("data"), &args).await;
    let client = sidecar.client();
    for i in 0..5 {
        client
            .save_state(&format!("o{i}"), &save("idle", 0), None)
            .await
            .unwrap();
    }
    let db = mongo.db().await;
    eventually(Duration::from_secs(20), "first flush", || {
        let db = db.clone();
        async move { stored_version(&db, "o4").await }
    })
    .await;

    mongo.kill9();
    // Writes keep being acknowledged while MongoDB is down.
    let mut last = std::collections::HashMap::new();
    for n in 1..=20 {
        for i in 0..5 {
            let agent = format!("o{i}");
            let v = client
                .save_state(&agent, &save("working", n), None)
                .await
                .unwrap();
            last.insert(agent, (v, n));
        }
    }
    let status = client.status().await.unwrap();
    assert!(
        status.backlog_agents > 0,
        "backlog grows while MongoDB is down: {status:?}"
    );

    // The sidecar dies too, and comes back while MongoDB is still down.
    sidecar.kill9();
    sidecar.restart().await;
    let client = sidecar.client();
    for (agent, (v, n)) in &last {
        let s = client.load_state(agent).await.unwrap().unwrap();
        assert_eq!(
            (s.version, s.state_data["n"].as_u64()),
            (*v, Some(*n)),
            "{agent} after restart"
        );
    }

    mongo.restart();
    let db = mongo.db().await;
    for (agent, (v, n)) in &last {
        let d = eventually(
            Duration::from_secs(30),
            "backlog drained into MongoDB",
            || {
                let db = db.clone();
                async move {
                    stored_version(&db, agent)
                        .await
                        .filter(|d| d.get_i64("version") == Ok(*v as i64))
                }
            },
        )
        .await;
        assert_eq!(
            d.get_document("state_data").unwrap().get_i64("n").unwrap(),
            *n as i64
        );
    }
    let status = eventually(Duration::from_secs(10), "empty backlog", || {
        let c = sidecar.client();
        async move { c.status().await.ok().filter(|s| s.backlog_agents == 0) }
    })
    .await;
    assert!(status.backend_reachable);
}

#[tokio::test]
async fn a_full_backlog_refuses_writes_with_retry_after_and_drains_when_mongodb_returns() {
    let mut mongo = Mongo::start_local("agentstate_backlog".into());
    let dir = tempfile::tempdir().unwrap();
    let args = mongo.sidecar_args();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend([
        "--backend-timeout-ms",
        "500",
        "--backlog-bytes-max",
        "65536",
    ]);
    let sidecar = Sidecar::start(&dir.path().join("data"), &args).await;
    let client = sidecar.client();
    for i in 0..4 {
        client
            .save_state(&format!("b{i}"), &save("idle", 0), None)
            .await
            .unwrap();
    }
    let db = mongo.db().await;
    eventually(Duration::from_secs(20), "first flush", || {
        let db = db.clone();
        async move { stored_version(&db, "b3").await }
    })
    .await;

    mongo.kill9();
    let mut last = std::collections::HashMap::new();
    let mut refused = None;
    'fill: for n in 1..=10_000 {
        for i in 0..4 {
            let agent = format!("b{i}");
            match client.save_state(&agent, &save("busy", n), None).await {
                Ok(v) => {
                    last.insert(agent, (v, n));
                }
                Err(e) => {
                    refused = Some(e);
                    break 'fill;
                }
            }
        }
    }
    let e = refused.expect("the backlog bound is reached");
    assert_eq!(
        e.code(),
        Some(agentstate_protocol::ErrorCode::Unavailable),
        "{e}"
    );
    assert!(e.to_string().contains("backlog is full"), "{e}");
    let url = format!("{}/v1/agents/b0", sidecar.url());
    let big = format!(
        r#"{{"state_name":"x","state_data":{{"pad":"{}"}}}}"#,
        "p".repeat(2000)
    );
    let r = common::raw("PUT", &url, &[("content-type", "application/json")], big).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["retry-after"], "1");
    let ready = common::raw("GET", &format!("{}/readyz", sidecar.url()), &[], "").await;
    assert_eq!(ready.status, 503);
    assert!(String::from_utf8_lossy(&ready.body).contains("backlog full"));
    // The flusher notices the outage at its next attempt (bounded by the backend timeout).
    let status = eventually(Duration::from_secs(10), "the outage in the status", || {
        let c = client.clone();
        async move { c.status().await.ok().filter(|s| !s.backend_reachable) }
    })
    .await;
    assert!(
        status.backlog_bytes > 60_000 && status.last_flush_error.is_some(),
        "{status:?}"
    );
    // Reads still work.
    assert_eq!(
        client.load_state("b0").await.unwrap().unwrap().version,
        last["b0"].0
    );

    mongo.restart();
    let db = mongo.db().await;
    for (agent, (v, n)) in &last {
        let d = eventually(Duration::from_secs(30), "the backlog drained", || {
            let db = db.clone();
            async move {
                stored_version(&db, agent)
                    .await
                    .filter(|d| d.get_i64("version") == Ok(*v as i64))
            }
        })
        .await;
        assert_eq!(
            d.get_document("state_data").unwrap().get_i64("n").unwrap(),
            *n as i64
        );
    }
    eventually(Duration::from_secs(10), "ready again", || async {
        let r = common::raw("GET", &format!("{}/readyz", sidecar.url()), &[], "").await;
        (r.status == 200).then_some(())
    })
    .await;
    client
        .save_state("b0", &save("idle", 0), None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_writes_and_flushes_before_exit() {
    let mongo = Mongo::start("sigterm");
    let dir = tempfile::tempdir().unwrap();
    let args = mongo.sidecar_args();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Nothing is flushed on the interval: only the shutdown drain can get it there.
    args.extend([
        "--flush-interval-ms",
        "600000",
        "--shutdown-grace-ms",
        "10000",
    ]);
    let mut sidecar = Sidecar::start(&dir.path().join("data"), &args).await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let client = sidecar.client().with_timeout(Duration::from_secs(5));
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            for n in 1.. {
                match client
                    .save_state(&format!("g{w}"), &save("idle", n), None)
                    .await
                {
                    Ok(v) => {
                        acked.lock().unwrap().insert(format!("g{w}"), v);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let s = sidecar.terminate();
        (s, sidecar)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "exit status {:?}", status.0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "within the grace period"
    );
    for w in writers {
        w.await.unwrap();
    }
    let db = mongo.db().await;
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 4);
    for (agent, v) in acked {
        let d = stored_version(&db, &agent)
            .await
            .unwrap_or_else(|| panic!("{agent} not flushed at shutdown"));
        assert!(
            d.get_i64("version").unwrap() as u64 >= v,
            "{agent}: v{v} acknowledged, not in MongoDB"
        );
    }
}
