//! The threads API (framework checkpoints) against the real binary, on both backends:
//! puts with blobs stored once per channel version, pending writes and their
//! first-wins / last-wins rules, searches (namespaces, `before`, metadata filters,
//! across threads), copy, prune, delete for runs, delete, delta history, everything
//! surviving `kill -9` and reaching the backend; removing messages; bad input refused.

#[macro_use]
mod common;

use std::collections::BTreeMap;

use agentstate_protocol::{
    Client, DeltaHistoryRequest, NewMessage, NewThreadWrite, Payload, PruneStrategy,
    PutThreadCheckpointRequest, PutThreadWritesRequest, SaveStateRequest, SearchCheckpointsRequest,
    StatePersistence, ThreadBlob, Typed,
};
use bytes::Bytes;
use common::{drained, eventually, raw, start_with, Backend};
use mongodb::bson::{doc, Document};
use serde_json::{json, Map, Value};

fn typed(s: &str) -> Typed {
    Typed {
        type_: "json".into(),
        data: Payload(Bytes::from(s.as_bytes().to_vec())),
    }
}

fn meta(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// A checkpoint `id` in `ns` with channel versions `versions` and new blobs `blobs`.
fn put(
    id: &str,
    ns: &str,
    parent: Option<&str>,
    metadata: Value,
    versions: &[(&str, &str)],
    blobs: &[(&str, &str, &str)],
) -> PutThreadCheckpointRequest {
    PutThreadCheckpointRequest {
        checkpoint_ns: ns.into(),
        checkpoint_id: id.into(),
        parent_checkpoint_id: parent.map(str::to_string),
        checkpoint: typed(&format!("{{\"id\":\"{id}\"}}")),
        metadata: meta(metadata),
        channel_versions: versions
            .iter()
            .map(|(c, v)| (c.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        blobs: blobs
            .iter()
            .map(|(c, v, data)| ThreadBlob {
                channel: c.to_string(),
                version: v.to_string(),
                value: if *data == "empty" {
                    Typed {
                        type_: "empty".into(),
                        data: Payload::default(),
                    }
                } else {
                    typed(data)
                },
                extends: None,
            })
            .collect(),
    }
}

fn writes(id: &str, task: &str, w: &[(i64, &str, &str)]) -> PutThreadWritesRequest {
    PutThreadWritesRequest {
        checkpoint_ns: String::new(),
        checkpoint_id: id.into(),
        task_id: task.into(),
        task_path: String::new(),
        writes: w
            .iter()
            .map(|(idx, ch, v)| NewThreadWrite {
                idx: *idx,
                channel: ch.to_string(),
                value: typed(v),
            })
            .collect(),
    }
}

fn search(thread: Option<&str>) -> SearchCheckpointsRequest {
    SearchCheckpointsRequest {
        thread_id: thread.map(str::to_string),
        ..Default::default()
    }
}

async fn ids(c: &Client, q: &SearchCheckpointsRequest) -> Vec<String> {
    c.search_checkpoints(q)
        .await
        .unwrap()
        .into_iter()
        .map(|t| format!("{}/{}", t.thread_id, t.checkpoint_id))
        .collect()
}

/// What the thread `t` holds, as a comparable summary: per checkpoint its id, blob
/// values and writes.
async fn summary(c: &Client, t: &str) -> Vec<String> {
    let mut q = search(Some(t));
    q.limit = Some(1000);
    c.search_checkpoints(&q)
        .await
        .unwrap()
        .into_iter()
        .map(|t| {
            let blobs: Vec<String> = t
                .blobs
                .iter()
                .map(|b| {
                    format!(
                        "{}@{}={}",
                        b.channel,
                        b.version,
                        String::from_utf8_lossy(&b.value.data.0)
                    )
                })
                .collect();
            let writes: Vec<String> = t
                .writes
                .iter()
                .map(|w| {
                    format!(
                        "{}#{}:{}={}",
                        w.task_id,
                        w.idx,
                        w.channel,
                        String::from_utf8_lossy(&w.value.data.0)
                    )
                })
                .collect();
            format!(
                "{:?}/{} [{}] [{}]",
                t.checkpoint_ns,
                t.checkpoint_id,
                blobs.join(","),
                writes.join(",")
            )
        })
        .collect()
}

both_backends!(checkpoints_writes_and_searches_survive_kill9);
async fn checkpoints_writes_and_searches_survive_kill9(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (mut sidecar, mongo) = start_with(backend, "threads_basic", dir.path(), &[]).await;
    let c = sidecar.client();

    c.put_thread_checkpoint(
        "t1",
        &put(
            "01",
            "",
            None,
            json!({"source": "input", "step": -1, "run_id": "r1"}),
            &[("a", "1")],
            &[("a", "1", "\"x\"")],
        ),
    )
    .await
    .unwrap();
    c.put_thread_checkpoint(
        "t1",
        &put(
            "02",
            "",
            Some("01"),
            json!({"source": "loop", "step": 0, "run_id": "r1"}),
            &[("a", "1"), ("b", "1")],
            &[("b", "1", "\"y\"")],
        ),
    )
    .await
    .unwrap();
    c.put_thread_checkpoint(
        "t1",
        &put(
            "03",
            "",
            Some("02"),
            json!({"source": "loop", "step": 1, "run_id": "r2", "score": 42}),
            &[("a", "2"), ("b", "1")],
            &[("a", "2", "\"x2\"")],
        ),
    )
    .await
    .unwrap();
    c.put_thread_checkpoint(
        "t1",
        &put(
            "01",
            "child:1",
            None,
            json!({"source": "loop", "step": 0}),
            &[("a", "1")],
            &[("a", "1", "\"child\"")],
        ),
    )
    .await
    .unwrap();
    // At idx >= 0 the first write of a key wins; below 0 the last.
    c.put_thread_writes(
        "t1",
        &writes(
            "03",
            "task",
            &[(0, "a", "\"first\""), (-1, "__error__", "\"e1\"")],
        ),
    )
    .await
    .unwrap();
    c.put_thread_writes(
        "t1",
        &writes(
            "03",
            "task",
            &[(0, "a", "\"second\""), (-1, "__error__", "\"e2\"")],
        ),
    )
    .await
    .unwrap();
    c.put_thread_writes("t1", &writes("02", "task", &[(0, "a", "\"w2\"")]))
        .await
        .unwrap();

    let check = |c: Client| async move {
        // The latest of the root namespace, whole: blobs of mixed versions, writes.
        let latest = c
            .thread_checkpoint("t1", "", None)
            .await
            .unwrap()
            .expect("latest");
        assert_eq!(latest.checkpoint_id, "03");
        assert_eq!(latest.parent_checkpoint_id.as_deref(), Some("02"));
        assert_eq!(
            latest.checkpoint.data.0,
            Bytes::from_static(b"{\"id\":\"03\"}")
        );
        let blobs: Vec<(String, String)> = latest
            .blobs
            .iter()
            .map(|b| {
                (
                    b.channel.clone(),
                    String::from_utf8_lossy(&b.value.data.0).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            blobs,
            [("a".into(), "\"x2\"".into()), ("b".into(), "\"y\"".into())]
        );
        let w: Vec<(i64, String)> = latest
            .writes
            .iter()
            .map(|w| (w.idx, String::from_utf8_lossy(&w.value.data.0).into_owned()))
            .collect();
        assert_eq!(
            w,
            [(-1, "\"e2\"".to_string()), (0, "\"first\"".to_string())]
        );
        let child = c
            .thread_checkpoint("t1", "child:1", None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            child.blobs[0].value.data.0,
            Bytes::from_static(b"\"child\"")
        );
        assert!(c
            .thread_checkpoint("t1", "", Some("99"))
            .await
            .unwrap()
            .is_none());
        assert!(c
            .thread_checkpoint("nope", "", None)
            .await
            .unwrap()
            .is_none());

        // Searches: one namespace, newest first; before; filters; across threads.
        let mut q = search(Some("t1"));
        q.checkpoint_ns = Some(String::new());
        assert_eq!(ids(&c, &q).await, ["t1/03", "t1/02", "t1/01"]);
        q.before = Some("03".into());
        q.limit = Some(1);
        assert_eq!(ids(&c, &q).await, ["t1/02"]);
        let mut q = search(Some("t1"));
        q.filter = Some(meta(json!({"source": "loop", "step": 1})));
        assert_eq!(ids(&c, &q).await, ["t1/03"]);
        q.filter = Some(meta(json!({"score": 42})));
        assert_eq!(ids(&c, &q).await, ["t1/03"]);
        q.filter = Some(meta(json!({"source": "update"})));
        assert!(ids(&c, &q).await.is_empty());
        assert_eq!(
            ids(&c, &search(Some("t1"))).await.len(),
            4,
            "every namespace"
        );
        assert_eq!(ids(&c, &search(None)).await.len(), 4, "every thread");
    };
    check(c.clone()).await;
    sidecar.kill9();
    sidecar.restart().await;
    check(sidecar.client()).await;

    // Flushed: the backend has the documents.
    if let Some(m) = &mongo {
        let db = m.db().await;
        eventually(
            std::time::Duration::from_secs(10),
            "checkpoints in MongoDB",
            || {
                let db = db.clone();
                async move {
                    let n = db
                        .collection::<Document>("thread_checkpoints")
                        .count_documents(doc! { "thread_id": "t1" })
                        .await
                        .unwrap();
                    (n == 4).then_some(())
                }
            },
        )
        .await;
        let blobs = db
            .collection::<Document>("thread_blobs")
            .count_documents(doc! { "thread_id": "t1" })
            .await
            .unwrap();
        assert_eq!(
            blobs, 4,
            "a blob per (namespace, channel, version), not per checkpoint"
        );
    }
    // After the flush, reads come from the backend and say the same.
    drained(&sidecar.client()).await;
    check(sidecar.client()).await;
}

both_backends!(copy_prune_delete_for_runs_and_delete);
async fn copy_prune_delete_for_runs_and_delete(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (mut sidecar, _mongo) = start_with(backend, "threads_admin", dir.path(), &[]).await;
    let c = sidecar.client();
    for (i, run) in ["r1", "r1", "r2", "r3"].iter().enumerate() {
        let id = format!("0{i}");
        let parent = (i > 0).then(|| format!("0{}", i - 1));
        let v = (i + 1).to_string();
        c.put_thread_checkpoint(
            "src",
            &put(
                &id,
                "",
                parent.as_deref(),
                json!({"run_id": run}),
                &[("m", &v)],
                &[("m", &v, &format!("\"m{i}\""))],
            ),
        )
        .await
        .unwrap();
    }
    c.put_thread_writes("src", &writes("03", "t", &[(0, "m", "\"w\"")]))
        .await
        .unwrap();

    // Copy: every checkpoint with its blobs and writes; the source stays.
    assert_eq!(c.copy_thread("src", "dst").await.unwrap(), 4);
    let src = summary(&c, "src").await;
    let dst = summary(&c, "dst").await;
    assert_eq!(src, dst);
    assert!(c.copy_thread("nothing", "dst2").await.is_err());

    // Delete for runs: in every thread.
    assert_eq!(c.delete_for_runs(vec!["r1".into()]).await.unwrap(), 4);
    assert_eq!(ids(&c, &search(Some("src"))).await, ["src/03", "src/02"]);
    assert_eq!(ids(&c, &search(Some("dst"))).await, ["dst/03", "dst/02"]);

    // Prune: keep the latest (with its writes), or delete all.
    assert_eq!(
        c.prune_threads(vec!["src".into()], PruneStrategy::KeepLatest)
            .await
            .unwrap(),
        1
    );
    let s = summary(&c, "src").await;
    assert_eq!(s, [r#"""/03 [m@4="m3"] [t#0:m="w"]"#]);
    assert_eq!(
        c.prune_threads(vec!["dst".into()], PruneStrategy::Delete)
            .await
            .unwrap(),
        2
    );
    assert!(summary(&c, "dst").await.is_empty());

    sidecar.kill9();
    sidecar.restart().await;
    let c = sidecar.client();
    assert_eq!(summary(&c, "src").await, s, "after kill -9");
    assert!(summary(&c, "dst").await.is_empty());

    // Delete: the thread and its agent; a second delete is fine.
    c.delete_thread("src").await.unwrap();
    c.delete_thread("src").await.unwrap();
    assert!(summary(&c, "src").await.is_empty());
    assert!(c.load_state("src").await.unwrap().is_none());
    // Re-created after the delete: only the new checkpoint shows, also once flushed.
    c.put_thread_checkpoint(
        "src",
        &put(
            "09",
            "",
            None,
            json!({}),
            &[("m", "1")],
            &[("m", "1", "\"new\"")],
        ),
    )
    .await
    .unwrap();
    assert_eq!(summary(&c, "src").await, [r#"""/09 [m@1="new"] []"#]);
    sidecar.kill9();
    sidecar.restart().await;
    drained(&sidecar.client()).await;
    assert_eq!(
        summary(&sidecar.client(), "src").await,
        [r#"""/09 [m@1="new"] []"#]
    );
}

both_backends!(delta_history_walks_the_parent_chain);
async fn delta_history_walks_the_parent_chain(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (sidecar, _mongo) = start_with(backend, "threads_delta", dir.path(), &[]).await;
    let c = sidecar.client();
    // 01 has a stored value of "m"; 02 and 03 only writes.
    c.put_thread_checkpoint(
        "d",
        &put(
            "01",
            "",
            None,
            json!({}),
            &[("m", "1")],
            &[("m", "1", "\"seed\"")],
        ),
    )
    .await
    .unwrap();
    c.put_thread_writes("d", &writes("01", "t1", &[(0, "m", "\"a\"")]))
        .await
        .unwrap();
    c.put_thread_checkpoint(
        "d",
        &put(
            "02",
            "",
            Some("01"),
            json!({}),
            &[("m", "2")],
            &[("m", "2", "empty")],
        ),
    )
    .await
    .unwrap();
    c.put_thread_writes(
        "d",
        &writes("02", "t2", &[(0, "m", "\"b\""), (1, "other", "\"o\"")]),
    )
    .await
    .unwrap();
    c.put_thread_checkpoint(
        "d",
        &put("03", "", Some("02"), json!({}), &[("m", "3")], &[]),
    )
    .await
    .unwrap();
    let h = c
        .delta_history(
            "d",
            &DeltaHistoryRequest {
                checkpoint_ns: String::new(),
                checkpoint_id: None,
                channels: vec!["m".into(), "none".into()],
            },
        )
        .await
        .unwrap();
    let m = &h.channels["m"];
    let w: Vec<String> = m
        .writes
        .iter()
        .map(|w| String::from_utf8_lossy(&w.value.data.0).into_owned())
        .collect();
    assert_eq!(w, ["\"a\"", "\"b\""], "oldest first");
    assert_eq!(
        m.seed.as_ref().unwrap().data.0,
        Bytes::from_static(b"\"seed\"")
    );
    assert!(h.channels["none"].writes.is_empty() && h.channels["none"].seed.is_none());
}

both_backends!(messages_can_be_removed_from_the_end_or_all_at_once);
async fn messages_can_be_removed_from_the_end_or_all_at_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (mut sidecar, _mongo) = start_with(backend, "threads_messages", dir.path(), &[]).await;
    let c = sidecar.client();
    c.save_state(
        "s",
        &SaveStateRequest {
            state_name: "active".into(),
            ..Default::default()
        },
        None,
    )
    .await
    .unwrap();
    let msgs: Vec<NewMessage> = (1..=5)
        .map(|i| NewMessage {
            role: "user".into(),
            content: format!("m{i}"),
            metadata: Default::default(),
        })
        .collect();
    c.append_messages("s", msgs, None).await.unwrap();
    // Flushed first, so the removal must hide what the backend has.
    eventually(
        std::time::Duration::from_secs(10),
        "backlog drained",
        || {
            let c = c.clone();
            async move { (c.status().await.unwrap().backlog_agents == 0).then_some(()) }
        },
    )
    .await;
    let popped = c.pop_message("s").await.unwrap().message.unwrap();
    assert_eq!(popped.content, "m5");
    assert_eq!(
        c.pop_message("s").await.unwrap().message.unwrap().content,
        "m4"
    );
    let contents =
        |v: Vec<agentstate_protocol::Message>| v.into_iter().map(|m| m.content).collect::<Vec<_>>();
    assert_eq!(
        contents(c.last_messages("s", 10).await.unwrap()),
        ["m1", "m2", "m3"]
    );
    assert_eq!(
        contents(c.last_messages("s", 2).await.unwrap()),
        ["m2", "m3"]
    );
    assert_eq!(
        contents(c.get_messages("s", 0, 2).await.unwrap()),
        ["m1", "m2"]
    );
    sidecar.kill9();
    sidecar.restart().await;
    let c = sidecar.client();
    assert_eq!(
        contents(c.get_messages("s", 0, 100).await.unwrap()),
        ["m1", "m2", "m3"]
    );
    let new = NewMessage {
        role: "user".into(),
        content: "m6".into(),
        metadata: Default::default(),
    };
    let seqs = c.append_messages("s", vec![new], None).await.unwrap().seqs;
    assert_eq!(seqs, [6], "seqs keep counting");
    c.clear_messages("s").await.unwrap();
    assert!(c.get_messages("s", 0, 100).await.unwrap().is_empty());
    assert!(c.pop_message("s").await.unwrap().message.is_none());
    sidecar.kill9();
    sidecar.restart().await;
    assert!(sidecar
        .client()
        .get_messages("s", 0, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(
        sidecar.client().load_state("s").await.unwrap().is_some(),
        "the agent stays"
    );
}

#[tokio::test]
async fn bad_thread_input_gets_a_clear_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let (sidecar, _m) = start_with(Backend::Embedded, "threads_bad", dir.path(), &[]).await;
    let base = sidecar.url();
    let json = ("content-type", "application/json");
    let good = r#"{"checkpoint_id":"1","checkpoint":{"type":"json","data":"e30="}}"#;
    let cases: Vec<(&str, String, &str, String, u16, &str)> = vec![
        ("bad base64", format!("{base}/v1/threads/t/checkpoints"), "POST", r#"{"checkpoint_id":"1","checkpoint":{"type":"json","data":"%%%"}}"#.into(), 400, "malformed"),
        ("no checkpoint id", format!("{base}/v1/threads/t/checkpoints"), "POST", r#"{"checkpoint":{"type":"json","data":""}}"#.into(), 400, "malformed"),
        ("unknown field", format!("{base}/v1/threads/t/checkpoints"), "POST", r#"{"checkpoint_id":"1","checkpoint":{"type":"json","data":""},"extra":1}"#.into(), 400, "malformed"),
        ("control character in namespace", format!("{base}/v1/threads/t/checkpoints"), "POST", r#"{"checkpoint_ns":"a\u0001","checkpoint_id":"1","checkpoint":{"type":"json","data":""}}"#.into(), 422, "validation_failed"),
        ("empty checkpoint id", format!("{base}/v1/threads/t/checkpoints"), "POST", r#"{"checkpoint_id":"","checkpoint":{"type":"json","data":""}}"#.into(), 422, "validation_failed"),
        ("$ key in metadata", format!("{base}/v1/threads/t/checkpoints"), "POST", r#"{"checkpoint_id":"1","checkpoint":{"type":"json","data":""},"metadata":{"$where":1}}"#.into(), 422, "validation_failed"),
        ("bad thread id", format!("{base}/v1/threads/a%20b/checkpoints"), "POST", good.into(), 400, "malformed"),
        ("no writes", format!("{base}/v1/threads/t/writes"), "POST", r#"{"checkpoint_id":"1","task_id":"x","writes":[]}"#.into(), 422, "validation_failed"),
        ("unknown strategy", format!("{base}/v1/checkpoints/prune"), "POST", r#"{"thread_ids":["t"],"strategy":"all"}"#.into(), 400, "malformed"),
        ("copy onto itself", format!("{base}/v1/threads/t/copy"), "POST", r#"{"target_thread_id":"t"}"#.into(), 422, "validation_failed"),
        ("search limit 0", format!("{base}/v1/checkpoints/search"), "POST", r#"{"limit":0}"#.into(), 400, "malformed"),
        ("search limit 1001", format!("{base}/v1/checkpoints/search"), "POST", r#"{"limit":1001}"#.into(), 400, "malformed"),
        ("GET on writes", format!("{base}/v1/threads/t/writes"), "GET", String::new(), 405, "method_not_allowed"),
        ("bad last", format!("{base}/v1/agents/t/messages?last=0"), "GET", String::new(), 400, "malformed"),
    ];
    for (what, url, method, body, status, code) in cases {
        let r = raw(method, &url, &[json], body).await;
        assert_eq!(r.status, status, "{what}: {:?}", r.body);
        assert_eq!(r.error_code(), code, "{what}");
    }
    // Nothing was stored, and the process still serves.
    let c = sidecar.client();
    assert!(c
        .search_checkpoints(&search(None))
        .await
        .unwrap()
        .is_empty());
    let r = raw(
        "POST",
        &format!("{base}/v1/threads/t/checkpoints"),
        &[json],
        good.to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// The latest checkpoint is answered from memory once a thread is hot; after every
/// step of a random mix of puts (new heads, forks from older checkpoints, re-puts),
/// writes (to the head, to older checkpoints, to checkpoints not yet put), prunes,
/// copies and deletes, it must equal what a search (backlog and backend) says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latest_checkpoint_from_memory_always_matches_the_store() {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let dir = tempfile::tempdir().unwrap();
    let (sidecar, _m) = start_with(
        Backend::Embedded,
        "threads_heads",
        dir.path(),
        &["--flush-interval-ms", "20"],
    )
    .await;
    let c = sidecar.client();
    let mut rng = StdRng::seed_from_u64(common::seed("threads_heads"));
    let mut next_id = 0u32;
    let mut ids: Vec<String> = Vec::new();
    let mut hits_seen = false;
    for step in 0..300 {
        let ns = if rng.gen_bool(0.8) { "" } else { "sub" };
        match rng.gen_range(0..100) {
            0..=44 => {
                // A new checkpoint, usually on top of the latest, sometimes a fork.
                next_id += 1;
                let id = format!("{next_id:06}");
                let parent = if ids.is_empty() || rng.gen_bool(0.2) {
                    None
                } else {
                    Some(ids[rng.gen_range(0..ids.len())].clone())
                };
                let v = rng.gen_range(1..4).to_string();
                let changed = rng.gen_bool(0.5);
                let blobs: Vec<(&str, &str, &str)> = if changed {
                    vec![("m", &v, "\"value\"")]
                } else {
                    vec![]
                };
                c.put_thread_checkpoint(
                    "h",
                    &put(
                        &id,
                        ns,
                        parent.as_deref(),
                        json!({"step": step}),
                        &[("m", &v)],
                        &blobs,
                    ),
                )
                .await
                .unwrap();
                ids.push(id);
            }
            45..=49 if !ids.is_empty() => {
                // The same checkpoint again.
                let id = ids[rng.gen_range(0..ids.len())].clone();
                c.put_thread_checkpoint(
                    "h",
                    &put(
                        &id,
                        ns,
                        None,
                        json!({"again": true}),
                        &[("m", "1")],
                        &[("m", "1", "\"again\"")],
                    ),
                )
                .await
                .unwrap();
            }
            50..=84 => {
                // Writes: to a known checkpoint, or to one not put yet.
                let id = if ids.is_empty() || rng.gen_bool(0.15) {
                    format!("{:06}", next_id + 1)
                } else {
                    ids[rng.gen_range(0..ids.len())].clone()
                };
                let mut w = writes(
                    &id,
                    &format!("task{}", rng.gen_range(0..3)),
                    &[(rng.gen_range(-1..2), "m", &format!("\"w{step}\""))],
                );
                w.checkpoint_ns = ns.to_string();
                c.put_thread_writes("h", &w).await.unwrap();
            }
            85..=89 => {
                let strategy = if rng.gen_bool(0.8) {
                    PruneStrategy::KeepLatest
                } else {
                    PruneStrategy::Delete
                };
                c.prune_threads(vec!["h".into()], strategy).await.unwrap();
            }
            90..=93 => {
                let _ = c.copy_thread("h2", "h").await;
            }
            94..=95 => {
                c.delete_thread("h").await.unwrap();
                ids.clear();
            }
            _ => {
                // Let a flush happen, so the store answers too.
                tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            }
        }
        for ns in ["", "sub"] {
            let mut q = search(Some("h"));
            q.checkpoint_ns = Some(ns.to_string());
            q.limit = Some(1);
            let expected = c.search_checkpoints(&q).await.unwrap().pop();
            let got = c.thread_checkpoint("h", ns, None).await.unwrap();
            assert_eq!(got, expected, "step {step}, namespace {ns:?}");
        }
        hits_seen = hits_seen || step % 50 == 49 && cache_hits(&sidecar.url()).await > 0.0;
        if step >= 20
            && c.search_checkpoints(&search(Some("h2")))
                .await
                .unwrap()
                .is_empty()
        {
            // A second thread to copy from, once there is something to copy.
            let _ = c.copy_thread("h", "h2").await;
        }
    }
    assert!(
        hits_seen,
        "reads of the latest checkpoint were answered from memory"
    );
}

/// `agentstate_thread_cache_reads_total{outcome="hit"}` from /metrics.
async fn cache_hits(base: &str) -> f64 {
    let r = raw("GET", &format!("{base}/metrics"), &[], "").await;
    String::from_utf8_lossy(&r.body)
        .lines()
        .find(|l| l.starts_with("agentstate_thread_cache_reads_total{outcome=\"hit\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Puts checkpoints `ids` in `t`'s namespace `ns`, each a step of a chain: the channel
/// `static` is written once (by the first) and used by all, `msgs` gets a new version
/// per step.
async fn put_chain(c: &Client, t: &str, ns: &str, ids: std::ops::RangeInclusive<u32>) {
    for i in ids {
        let (id, parent) = (format!("{i:02}"), format!("{:02}", i - 1));
        let version = i.to_string();
        let mut blobs = vec![("msgs", version.as_str(), "\"m\"")];
        if i == 1 {
            blobs.push(("static", "1", "\"s\""));
        }
        let req = put(
            &id,
            ns,
            (i > 1).then_some(parent.as_str()),
            json!({"step": i}),
            &[("static", "1"), ("msgs", &version)],
            &blobs,
        );
        c.put_thread_checkpoint(t, &req).await.unwrap();
    }
}

both_backends!(retention_thins_threads_through_the_wal);
async fn retention_thins_threads_through_the_wal(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut sidecar, mongo) = start_with(backend, "threads_retention", dir.path(), &[]).await;
    let c = sidecar.client();
    put_chain(&c, "t1", "", 1..=5).await;
    put_chain(&c, "t2", "", 1..=2).await;
    drained(&c).await;
    // The rest stays in the WAL only: the newest checkpoints use a blob (`static`) that
    // only the backend has, which retention must not drop with the old ones.
    sidecar.kill9();
    sidecar
        .extra_args
        .extend(["--flush-interval-ms".into(), "600000".into()]);
    sidecar.restart().await;
    let c = sidecar.client();
    put_chain(&c, "t1", "", 6..=10).await;
    put_chain(&c, "t1", "sub", 1..=3).await;
    for id in ["08", "10"] {
        c.put_thread_writes("t1", &writes(id, "task", &[(0, "msgs", "\"w\"")]))
            .await
            .unwrap();
    }

    let backend_args: Vec<String> = mongo.as_ref().map(|m| m.sidecar_args()).unwrap_or_default();
    let cleanup = |limit: &str, n: &str| {
        let mut args = backend_args.clone();
        args.extend([limit.to_string(), n.to_string()]);
        common::agentstate(&["cleanup"], &data, &args)
    };
    let out = cleanup("--thread-checkpoints-max-count", "3");
    assert!(!out.status.success(), "refused beside a live sidecar");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stop the sidecar"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sidecar.kill9();

    // By count: the newest 3 of each thread and namespace.
    let out = cleanup("--thread-checkpoints-max-count", "3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        common::stdout(&out).contains("7 thread checkpoints"),
        "{}",
        common::stdout(&out)
    );
    sidecar.restart().await;
    let c = sidecar.client();
    let expect = |ids: &[(&str, &str, bool)]| -> Vec<String> {
        ids.iter()
            .map(|(ns, id, written)| {
                let step: u32 = id.parse().unwrap();
                let w = if *written { "task#0:msgs=\"w\"" } else { "" };
                format!("{ns:?}/{id} [msgs@{step}=\"m\",static@1=\"s\"] [{w}]")
            })
            .collect()
    };
    assert_eq!(
        summary(&c, "t1").await,
        expect(&[
            ("", "10", true),
            ("", "09", false),
            ("", "08", true),
            ("sub", "03", false),
            ("sub", "02", false),
            ("sub", "01", false),
        ])
    );
    assert_eq!(
        summary(&c, "t2").await,
        expect(&[("", "02", false), ("", "01", false)])
    );
    let _ = sidecar.terminate();

    // By age: 0 days keeps only the newest of each thread and namespace.
    let out = cleanup("--thread-checkpoints-max-age-days", "0");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        common::stdout(&out).contains("5 thread checkpoints"),
        "{}",
        common::stdout(&out)
    );
    sidecar.restart().await;
    let c = sidecar.client();
    assert_eq!(
        summary(&c, "t1").await,
        expect(&[("", "10", true), ("sub", "03", false)])
    );
    assert_eq!(summary(&c, "t2").await, expect(&[("", "02", false)]));
    // The backend lost the dropped blobs and writes with them.
    if let Some(m) = &mongo {
        let db = m.db().await;
        let count = |coll: &'static str| {
            let db = db.clone();
            async move {
                db.collection::<Document>(coll)
                    .count_documents(doc! { "thread_id": "t1" })
                    .await
                    .unwrap()
            }
        };
        assert_eq!(count("thread_checkpoints").await, 2);
        assert_eq!(
            count("thread_blobs").await,
            4,
            "static and msgs, per namespace"
        );
        assert_eq!(count("thread_writes").await, 1);
    }
}
