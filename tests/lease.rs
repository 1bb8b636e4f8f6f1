//! Two sidecars, one database: a per-agent ownership lease in MongoDB with a fencing
//! epoch. The second sidecar gets a clear conflict while the first owns an agent; it may
//! take the agent over once the lease expires; and a write the first sidecar accepted
//! before it lost the agent is fenced off at flush time, kept aside, never written over
//! the new owner's.

mod common;

use std::path::Path;
use std::time::Duration;

use agentstate_protocol::{
    Durability, ErrorCode, NewMessage, NewThreadWrite, Payload, PutThreadCheckpointRequest,
    PutThreadWritesRequest, SaveStateRequest, SearchCheckpointsRequest, StatePersistence,
    ThreadBlob, TransferRequest, Typed,
};
use common::{eventually, raw, Mongo, Proxy, Sidecar};
use mongodb::bson::{doc, Bson, Document};
use serde_json::json;

fn save(by: &str, n: u64) -> SaveStateRequest {
    SaveStateRequest {
        state_name: "idle".into(),
        state_data: Some(json!({ "by": by, "n": n })),
        ..Default::default()
    }
}

fn typed(s: &str) -> Typed {
    Typed {
        type_: "json".into(),
        data: Payload(s.as_bytes().to_vec().into()),
    }
}

/// Checkpoint `id` of a thread, with one new blob on channel `messages` written by `by`.
fn checkpoint(id: &str, by: &str) -> PutThreadCheckpointRequest {
    PutThreadCheckpointRequest {
        checkpoint_id: id.into(),
        checkpoint: typed(&format!(r#"{{"id":"{id}"}}"#)),
        channel_versions: [("messages".to_string(), format!("{by}-1"))].into(),
        blobs: vec![ThreadBlob {
            channel: "messages".into(),
            version: format!("{by}-1"),
            value: typed(&format!(r#"["hi from {by}"]"#)),
            extends: None,
        }],
        checkpoint_ns: String::new(),
        parent_checkpoint_id: None,
        metadata: Default::default(),
    }
}

/// Sidecars A and B on one database, with a 1.5 s lease and `extra` flags. A flushes
/// nothing on its own (its writes stay in its WAL unless `remote`); B flushes at once.
async fn two_sidecars(mongo: &Mongo, dir: &Path, extra: &[&str]) -> (Sidecar, Sidecar) {
    let shared = mongo.sidecar_args();
    let mut args: Vec<&str> = shared.iter().map(String::as_str).collect();
    args.extend(extra);
    args.extend(["--lease-ms", "1500", "--flush-interval-ms"]);
    let a = Sidecar::start(&dir.join("a"), &[args.as_slice(), &["600000"]].concat()).await;
    let b = Sidecar::start(&dir.join("b"), &[args.as_slice(), &["20"]].concat()).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_never_silently_overwrite_each_other() {
    let mongo = Mongo::start("lease");
    let dir = tempfile::tempdir().unwrap();
    let (mut a, b) = two_sidecars(&mongo, dir.path(), &[]).await;

    // A owns x; B is refused with a conflict naming the owner.
    assert_eq!(
        a.client()
            .save_state("x", &save("a", 1), None)
            .await
            .unwrap(),
        1
    );
    let e = b
        .client()
        .save_state("x", &save("b", 1), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
    assert!(e.to_string().contains("is owned by sidecar"), "{e}");
    let metrics = raw("GET", &format!("{}/metrics", b.url()), &[], "").await;
    assert!(String::from_utf8_lossy(&metrics.body)
        .contains(r#"agentstate_conflicts_total{kind="lease"} 1"#));

    // A dies with its write unflushed. Once its lease expires, B takes x over.
    a.kill9();
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let v = b
        .client()
        .save_state("x", &save("b", 2), None)
        .await
        .unwrap();
    let db = mongo.db().await;
    eventually(Duration::from_secs(20), "B's write flushed", || {
        let db = db.clone();
        async move {
            let d = db
                .collection::<Document>("agent_states")
                .find_one(doc! { "_id": "x" })
                .await
                .ok()??;
            (d.get_document("state_data").ok()?.get_str("by").ok()? == "b").then_some(())
        }
    })
    .await;

    // A comes back and replays its write of x under its old epoch: fenced off, kept in
    // agent_state_conflicts, B's document untouched.
    a.restart().await;
    let conflict = eventually(
        Duration::from_secs(20),
        "A's fenced write kept aside",
        || {
            let db = db.clone();
            async move {
                db.collection::<Document>("agent_state_conflicts")
                    .find_one(doc! { "agent_id": "x" })
                    .await
                    .ok()?
            }
        },
    )
    .await;
    assert_eq!(
        conflict
            .get_document("record")
            .unwrap()
            .get_document("state_data")
            .unwrap()
            .get_str("by")
            .unwrap(),
        "a"
    );
    let d = db
        .collection::<Document>("agent_states")
        .find_one(doc! { "_id": "x" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        d.get_document("state_data").unwrap().get_str("by").unwrap(),
        "b"
    );
    assert_eq!(d.get_i64("version").unwrap() as u64, v);
    let metrics = raw("GET", &format!("{}/metrics", a.url()), &[], "").await;
    assert!(String::from_utf8_lossy(&metrics.body)
        .contains(r#"agentstate_conflicts_total{kind="lease"}"#));

    // While B keeps writing x, A is refused; A reads B's state.
    b.client()
        .save_state("x", &save("b", 3), None)
        .await
        .unwrap();
    let e = a
        .client()
        .save_state("x", &save("a", 2), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
    eventually(Duration::from_secs(10), "A sees B's state", || {
        let c = a.client();
        async move {
            c.load_state("x")
                .await
                .ok()?
                .filter(|s| s.state_data["by"] == "b")
        }
    })
    .await;
}

/// A transfer a sidecar made under leases it then lost (it was killed before flushing,
/// and another sidecar took both agents over) is set aside whole when it restarts: none
/// of it reaches the new owner's agents, both records go to `agent_state_conflicts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_under_a_lost_lease_is_set_aside_whole() {
    let mongo = Mongo::start("lease_transfer");
    let dir = tempfile::tempdir().unwrap();
    let config = common::example_config().display().to_string();
    let (mut a, b) = two_sidecars(&mongo, dir.path(), &["--config", &config]).await;

    // The source is in MongoDB (remote durability); the transfer only in A's WAL.
    let a_remote = a.client().with_durability(Durability::Remote);
    let greeting = SaveStateRequest {
        agent_type: Some("greeter".into()),
        state_name: "greeting".into(),
        state_data: Some(json!({ "user_name": "ada" })),
        ..Default::default()
    };
    a_remote.save_state("src", &greeting, None).await.unwrap();
    let hello = |content: &str| NewMessage {
        role: "user".into(),
        content: content.into(),
        metadata: Default::default(),
    };
    a_remote
        .append_messages("src", vec![hello("hi from a")], None)
        .await
        .unwrap();
    a.client()
        .transfer(&TransferRequest {
            transfer_id: "t-a".into(),
            from_agent: "src".into(),
            to_agent: "dst".into(),
            trigger: "handoff".into(),
            to_trigger: None,
            to_agent_type: Some("haiku".into()),
            context: None,
            messages_max: None,
        })
        .await
        .unwrap();
    a.kill9();

    // B takes both agents over once A's leases expire.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let b_remote = b.client().with_durability(Durability::Remote);
    b_remote.save_state("src", &greeting, None).await.unwrap();
    let haiku = SaveStateRequest {
        agent_type: Some("haiku".into()),
        state_name: "idle".into(),
        ..Default::default()
    };
    b_remote.save_state("dst", &haiku, None).await.unwrap();
    b_remote
        .append_messages("dst", vec![hello("hi from b")], None)
        .await
        .unwrap();

    // A replays its transfer: fenced off whole.
    a.restart().await;
    let db = mongo.db().await;
    let kept = eventually(
        Duration::from_secs(20),
        "the transfer's records kept aside",
        || {
            let db = db.clone();
            async move {
                let kept = common::find_all(&db, "agent_state_conflicts", doc! {}).await;
                (kept.len() == 2).then_some(kept)
            }
        },
    )
    .await;
    let mut agents: Vec<&str> = kept
        .iter()
        .map(|d| d.get_str("agent_id").unwrap())
        .collect();
    agents.sort();
    assert_eq!(agents, ["dst", "src"]);
    eventually(Duration::from_secs(20), "A's backlog empty", || {
        let c = a.client();
        async move { c.status().await.ok().filter(|s| s.backlog_agents == 0) }
    })
    .await;
    assert!(common::find_all(&db, "transfers", doc! {}).await.is_empty());
    let dst = common::find_all(&db, "conversation_history", doc! { "agent_id": "dst" }).await;
    let contents: Vec<&str> = dst.iter().map(|d| d.get_str("content").unwrap()).collect();
    assert_eq!(contents, ["hi from b"]);
    for (agent, state) in [("src", "greeting"), ("dst", "idle")] {
        let d = common::find_all(&db, "agent_states", doc! { "_id": agent }).await;
        assert_eq!(d[0].get_str("state_name").unwrap(), state, "{agent}");
        assert_eq!(
            b.client()
                .load_state(agent)
                .await
                .unwrap()
                .unwrap()
                .state_name,
            state
        );
    }
}

/// Framework checkpoints a sidecar wrote to a thread under a lease it then lost (it was
/// killed before flushing, and another sidecar took the thread over) are kept aside when
/// it restarts, with their blobs and pending writes: none of them reaches the new
/// owner's thread, and none is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thread_checkpoints_under_a_lost_lease_are_kept_aside() {
    let mongo = Mongo::start("lease_thread");
    let dir = tempfile::tempdir().unwrap();
    let (mut a, b) = two_sidecars(&mongo, dir.path(), &[]).await;

    // A's checkpoint, its blob and a pending write stay in A's WAL.
    a.client()
        .put_thread_checkpoint("t", &checkpoint("a1", "a"))
        .await
        .unwrap();
    let pending = PutThreadWritesRequest {
        checkpoint_id: "a1".into(),
        task_id: "task".into(),
        writes: vec![NewThreadWrite {
            idx: 0,
            channel: "messages".into(),
            value: typed(r#"["next from a"]"#),
        }],
        checkpoint_ns: String::new(),
        task_path: String::new(),
    };
    a.client().put_thread_writes("t", &pending).await.unwrap();
    a.kill9();

    // B takes the thread over once A's lease expires.
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let b_remote = b.client().with_durability(Durability::Remote);
    b_remote
        .put_thread_checkpoint("t", &checkpoint("b1", "b"))
        .await
        .unwrap();

    // A replays its writes under its old epoch: kept aside whole.
    a.restart().await;
    let db = mongo.db().await;
    let kept = eventually(Duration::from_secs(20), "A's thread kept aside", || {
        let db = db.clone();
        async move {
            let kept = common::find_all(&db, "agent_state_conflicts", doc! { "agent_id": "t" });
            kept.await.pop()
        }
    })
    .await;
    let field = |name: &str| -> Vec<(String, String)> {
        kept.get_array(name)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .iter()
            .map(|d| {
                let d = d.as_document().unwrap();
                let data = d.get_binary_generic("data").unwrap();
                (
                    d.get_str("_id").unwrap().to_string(),
                    String::from_utf8_lossy(data).into_owned(),
                )
            })
            .collect()
    };
    assert_eq!(
        field("thread_checkpoints"),
        [(r#"["t","","a1"]"#.into(), r#"{"id":"a1"}"#.into())]
    );
    assert_eq!(
        field("thread_blobs"),
        [(
            r#"["t","","messages","a-1"]"#.into(),
            r#"["hi from a"]"#.into()
        )]
    );
    assert_eq!(
        field("thread_writes"),
        [(
            r#"["t","","a1","task","0"]"#.into(),
            r#"["next from a"]"#.into()
        )]
    );
    eventually(Duration::from_secs(20), "A's backlog empty", || {
        let c = a.client();
        async move { c.status().await.ok().filter(|s| s.backlog_agents == 0) }
    })
    .await;

    // The thread is B's alone, in MongoDB and as B serves it.
    for (collection, ids) in [
        ("thread_checkpoints", vec![r#"["t","","b1"]"#]),
        ("thread_blobs", vec![r#"["t","","messages","b-1"]"#]),
        ("thread_writes", vec![]),
    ] {
        let stored = common::find_all(&db, collection, doc! { "thread_id": "t" }).await;
        let stored: Vec<&str> = stored.iter().map(|d| d.get_str("_id").unwrap()).collect();
        assert_eq!(stored, ids, "{collection}");
    }
    let search = SearchCheckpointsRequest {
        thread_id: Some("t".into()),
        ..Default::default()
    };
    let served: Vec<String> = b
        .client()
        .search_checkpoints(&search)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.checkpoint_id)
        .collect();
    assert_eq!(served, ["b1"]);
}

/// A local MongoDB and two sidecars on one database: A reaches it through a proxy that
/// can hold its traffic, B directly; each with its own further arguments.
async fn pair_behind_proxy(
    test: &str,
    a_args: &[&str],
    b_args: &[&str],
) -> (Mongo, Proxy, tempfile::TempDir, Sidecar, Sidecar) {
    let mongo = Mongo::start_local(format!(
        "agentstate_test_lease_{test}_{}",
        std::process::id()
    ));
    let proxy = Proxy::start(mongo.local_port()).await;
    let dir = tempfile::tempdir().unwrap();
    let database = ["--database", mongo.database.as_str()];
    let a_uri = proxy.mongodb_uri();
    let a_args = [&["--mongodb-uri", a_uri.as_str()][..], &database, a_args].concat();
    let a = Sidecar::start(&dir.path().join("a"), &a_args).await;
    let b_args = [
        &["--mongodb-uri", mongo.uri.as_str()][..],
        &database,
        b_args,
    ]
    .concat();
    let b = Sidecar::start(&dir.path().join("b"), &b_args).await;
    (mongo, proxy, dir, a, b)
}

/// A `remote` write is answered with success only once it is in MongoDB. A sidecar cut
/// off from MongoDB (not from its clients) past its lease accepts a `remote` write into
/// its WAL; another sidecar takes the agent over; when the first reaches MongoDB again
/// its flush is set aside, and the waiting write is answered 409, not 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_write_set_aside_at_flush_is_refused() {
    let lease = ["--lease-ms", "1500", "--flush-interval-ms", "20"];
    let a_args = [
        &lease[..],
        &[
            "--backend-timeout-ms",
            "300",
            "--remote-timeout-ms",
            "20000",
        ],
    ]
    .concat();
    let (mongo, proxy, _dir, a, b) = pair_behind_proxy("remote", &a_args, &lease).await;
    let a_remote = a.client().with_durability(Durability::Remote);
    let b_remote = b.client().with_durability(Durability::Remote);
    assert_eq!(
        a_remote.save_state("x", &save("a", 1), None).await.unwrap(),
        1
    );

    // A loses MongoDB; its clients still reach it, and it still holds x.
    proxy.cut();
    let late = tokio::spawn(async move { a_remote.save_state("x", &save("a", 2), None).await });
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(
        !late.is_finished(),
        "A answered a remote write it could not flush"
    );

    // B takes x over once A's lease has expired; then A reaches MongoDB again.
    assert_eq!(
        b_remote.save_state("x", &save("b", 2), None).await.unwrap(),
        2
    );
    proxy.heal();
    let e = tokio::time::timeout(Duration::from_secs(20), late)
        .await
        .expect("A answers once MongoDB is back")
        .unwrap()
        .expect_err("A's write was set aside, not written");
    assert_eq!(e.code(), Some(ErrorCode::Conflict), "{e}");
    assert!(e.to_string().contains("agent_state_conflicts"), "{e}");

    let db = mongo.db().await;
    let kept = common::find_all(&db, "agent_state_conflicts", doc! { "agent_id": "x" }).await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    let by = |d: &Document| {
        d.get_document("state_data")
            .and_then(|s| s.get_str("by"))
            .map(str::to_string)
    };
    assert_eq!(by(kept[0].get_document("record").unwrap()).unwrap(), "a");
    let x = common::find_all(&db, "agent_states", doc! { "_id": "x" }).await;
    assert_eq!(by(&x[0]).unwrap(), "b");
    assert_eq!(x[0].get_i64("version").unwrap(), 2);
}

/// A flush that outlasts its lease writes nothing, and a flush is all or nothing across
/// the agents it carries. A's flush of x, y and z is held on the wire (the proxy stops
/// A's traffic from its `update` of `agent_states` on, after the messages) until A's
/// lease on x has run out: while held, nothing of it can be seen. B takes x over and
/// appends its own fourth message. When A's flush goes on, its changes to x are kept
/// aside (its lease is lost), B's message stands at seq 4, and y and z, still A's, are
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_that_outlasts_its_lease_writes_nothing() {
    // A flushes only when a `remote` write asks, so that x, y and z go in one batch;
    // its backend timeout outlasts the hold.
    let a_args = [
        "--lease-ms",
        "1500",
        "--flush-interval-ms",
        "600000",
        "--backend-timeout-ms",
        "60000",
        "--remote-timeout-ms",
        "60000",
    ];
    let b_args = ["--lease-ms", "1500", "--flush-interval-ms", "20"];
    let (mongo, proxy, _dir, a, b) = pair_behind_proxy("held", &a_args, &b_args).await;
    let said = |content: &str| {
        vec![NewMessage {
            role: "user".into(),
            content: content.into(),
            metadata: Default::default(),
        }]
    };
    let a_remote = a.client().with_durability(Durability::Remote);
    for agent in ["x", "y", "z"] {
        a_remote
            .save_state(agent, &save("a", 1), None)
            .await
            .unwrap();
    }
    for m in ["a1", "a2", "a3"] {
        a_remote.append_messages("x", said(m), None).await.unwrap();
    }

    // A's next flush carries x, y and z, and is held from its records on.
    proxy.hold_from("update", "agent_states");
    let a_local = a.client().with_durability(Durability::Local);
    a_local
        .append_messages("x", said("a4"), None)
        .await
        .unwrap();
    a_local
        .append_messages("y", said("y1"), None)
        .await
        .unwrap();
    a_local.save_state("y", &save("a", 2), None).await.unwrap();
    let z = tokio::spawn(async move { a_remote.save_state("z", &save("a", 2), None).await });
    eventually(Duration::from_secs(20), "A's flush held", || async {
        proxy.holding().then_some(())
    })
    .await;
    let db = mongo.db().await;
    let log = |agent: &'static str| {
        let db = db.clone();
        async move { common::mongo_log(&db, "conversation_history", agent, "content").await }
    };
    assert_eq!(log("x").await.len(), 3, "part of a flush in flight is seen");
    assert!(
        log("y").await.is_empty(),
        "part of a flush in flight is seen"
    );

    // A's lease on x runs out; B takes x over and appends its own fourth message.
    let b_local = b.client().with_durability(Durability::Local);
    eventually(Duration::from_secs(20), "B owns x", || {
        let b = b_local.clone();
        async move { b.save_state("x", &save("b", 2), None).await.ok() }
    })
    .await;
    let seqs = b_local
        .append_messages("x", said("b4"), None)
        .await
        .unwrap()
        .seqs;
    assert_eq!(seqs, [4]);

    // A's flush goes on.
    proxy.release();
    let z = tokio::time::timeout(Duration::from_secs(60), z)
        .await
        .expect("A answers its remote write")
        .unwrap();
    assert_eq!(z.unwrap(), 2);
    let conflict = eventually(Duration::from_secs(30), "A's x kept aside", || {
        let db = db.clone();
        async move {
            db.collection::<Document>("agent_state_conflicts")
                .find_one(doc! { "agent_id": "x" })
                .await
                .ok()?
        }
    })
    .await;
    let kept: Vec<&str> = conflict
        .get_array("messages")
        .unwrap()
        .iter()
        .filter_map(|m| m.as_document()?.get_str("content").ok())
        .collect();
    assert_eq!(kept, ["a4"]);
    eventually(Duration::from_secs(30), "B's message flushed", || {
        let log = log("x");
        async move { (log.await.len() == 4).then_some(()) }
    })
    .await;
    let x: Vec<String> = log("x").await.into_values().collect();
    assert_eq!(x, ["a1", "a2", "a3", "b4"]);
    let y: Vec<String> = log("y").await.into_values().collect();
    assert_eq!(y, ["y1"]);
    let by = |agent: &'static str| {
        let db = db.clone();
        async move {
            let d = common::find_all(&db, "agent_states", doc! { "_id": agent }).await;
            let s = d[0].get_document("state_data").unwrap();
            let n = match s.get("n") {
                Some(Bson::Int32(n)) => i64::from(*n),
                Some(Bson::Int64(n)) => *n,
                other => panic!("n is {other:?}"),
            };
            (s.get_str("by").unwrap().to_string(), n)
        }
    };
    assert_eq!(by("y").await, ("a".to_string(), 2));
    assert_eq!(by("z").await, ("a".to_string(), 2));
    eventually(Duration::from_secs(30), "B's x flushed", || {
        let by = by("x");
        async move { (by.await.0 == "b").then_some(()) }
    })
    .await;
}
