//! `agentstate export` and `import` against the real binary, on both backends: agents
//! with transitions (one refused, one pending), messages, checkpoints and a transfer,
//! part of it only in the WAL of a killed sidecar, exported and imported into a fresh
//! data dir and database, where every part reads back the same through the API; a
//! second import changes nothing; an agent changed in the target makes the import a
//! conflict, which `--overwrite` settles; a damaged file changes nothing. Threads move
//! with their framework checkpoints, deltas as deltas (a pruned chain's bases too).

#[macro_use]
mod common;

use std::path::Path;
use std::process::Output;

use agentstate_protocol::{
    Checkpoint, Client, Message, NewMessage, NewThreadWrite, PersistedState, PruneStrategy,
    PutThreadCheckpointRequest, PutThreadWritesRequest, SaveStateRequest, SearchCheckpointsRequest,
    StatePersistence, StateTransition, ThreadCheckpointTuple, Transfer, TransferRequest,
    TransitionRequest, Typed,
};
use common::{agentstate, example_config, start_with, stdout, Backend, Mongo, Sidecar};
use serde_json::{json, Value};

fn greeter(state: &str, data: Value) -> SaveStateRequest {
    SaveStateRequest {
        agent_type: Some("greeter".into()),
        state_name: state.into(),
        state_data: Some(data),
        metadata: None,
    }
}

fn msg(role: &str, content: &str) -> NewMessage {
    NewMessage {
        role: role.into(),
        content: content.into(),
        metadata: Default::default(),
    }
}

fn to(state: &str, trigger: &str, data: Option<Value>) -> TransitionRequest {
    TransitionRequest {
        to_state: state.into(),
        trigger: trigger.into(),
        state_data: data,
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Everything of one agent, as the API shows it.
#[derive(Debug, PartialEq)]
struct AgentView {
    state: PersistedState,
    transitions: Vec<StateTransition>,
    messages: Vec<Message>,
    checkpoints: Vec<Checkpoint>,
}

const AGENTS: [&str; 4] = ["g1", "h1", "p1", "u:1"];

/// Every agent of the scenario and the transfer, read through the API.
async fn snapshot(c: &Client) -> (Vec<AgentView>, Option<Transfer>) {
    let mut agents = Vec::new();
    for id in AGENTS {
        let state = c
            .load_state(id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("agent {id} missing"));
        agents.push(AgentView {
            state,
            transitions: c.get_transitions(id, 0, 1000).await.unwrap(),
            messages: c.get_messages(id, 0, 1000).await.unwrap(),
            checkpoints: c.list_checkpoints(id).await.unwrap(),
        });
    }
    assert!(c.load_state("gone").await.unwrap().is_none());
    (agents, c.get_transfer("t-1").await.unwrap())
}

/// The flags of a sidecar or command on `database` (MongoDB) or the embedded store.
fn backend_args(mongo: Option<&Mongo>, database: &str) -> Vec<String> {
    let mut args = vec![
        "--config".to_string(),
        example_config().display().to_string(),
    ];
    if let Some(m) = mongo {
        args.extend([
            "--mongodb-uri".into(),
            m.uri.clone(),
            "--database".into(),
            format!("{}{database}", m.database),
        ]);
    }
    args
}

async fn start_on(data: &Path, args: &[String]) -> Sidecar {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Sidecar::start(data, &args).await
}

fn import(file: &Path, data: &Path, args: &[String], extra: &[&str]) -> Output {
    let mut cmd = vec!["import", file.to_str().unwrap()];
    cmd.extend_from_slice(extra);
    agentstate(&cmd, data, args)
}

both_backends!(export_and_import_round_trip);
async fn export_and_import_round_trip(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    // Flushed only on demand (start, SIGTERM): what happens after a restart stays in
    // the WAL until the kill.
    let (mut source, mongo) = start_with(
        backend,
        "export",
        dir.path(),
        &["--flush-interval-ms", "600000"],
    )
    .await;
    let c = source.client();
    c.save_state("g1", &greeter("idle", json!({})), None)
        .await
        .unwrap();
    c.record_transition(
        "g1",
        &to(
            "greeting",
            "user_message",
            Some(json!({"user_name": "Ada"})),
        ),
    )
    .await
    .unwrap();
    // Refused, and logged as such.
    assert!(c
        .record_transition("g1", &to("done", "bogus", None))
        .await
        .is_err());
    c.append_messages(
        "g1",
        vec![msg("user", "hi, I'm Ada"), msg("assistant", "hello Ada")],
        None,
    )
    .await
    .unwrap();
    c.checkpoint("g1", Some("greeted".into())).await.unwrap();
    c.save_state("p1", &greeter("idle", json!({"n": 1})), None)
        .await
        .unwrap();
    c.begin_transition(
        "p1",
        &to("greeting", "user_message", Some(json!({"user_name": "Bo"}))),
    )
    .await
    .unwrap();
    c.save_state(
        "u:1",
        &SaveStateRequest {
            agent_type: None,
            state_name: "free".into(),
            state_data: Some(json!({"nested": {"list": [1, 2.5, "three", null, true]}})),
            metadata: Some(json!({"owner": "ops"}).as_object().unwrap().clone()),
        },
        None,
    )
    .await
    .unwrap();
    c.save_state("gone", &greeter("idle", json!({})), None)
        .await
        .unwrap();
    assert!(source.terminate().success(), "SIGTERM flushes");

    // After a restart: a transfer, more messages and a checkpoint, a delete; all only
    // in the WAL when the sidecar is killed.
    source.restart().await;
    let c = source.client();
    c.transfer(&TransferRequest {
        transfer_id: "t-1".into(),
        from_agent: "g1".into(),
        to_agent: "h1".into(),
        trigger: "handoff".into(),
        to_trigger: Some("request".into()),
        to_agent_type: Some("haiku".into()),
        context: Some(json!({"topic": "rain"})),
        messages_max: None,
    })
    .await
    .unwrap();
    c.append_messages("h1", vec![msg("assistant", "a haiku about rain?")], None)
        .await
        .unwrap();
    c.checkpoint("h1", None).await.unwrap();
    c.append_messages("u:1", vec![msg("user", "multi\nline ünïcode")], None)
        .await
        .unwrap();
    c.delete_agent("gone", None).await.unwrap();
    let before = snapshot(&c).await;
    assert!(before.1.is_some());
    source.kill9();
    let data_a = dir.path().join("data");
    let args_a = backend_args(mongo.as_ref(), "");
    let out = agentstate(&["check"], &data_a, &args_a);
    assert_eq!(out.status.code(), Some(1), "unflushed: {}", stdout(&out));

    // Export: what the WAL holds is in it.
    let file = dir.path().join("agents.jsonl");
    let started = std::time::Instant::now();
    let out = agentstate(&["export", file.to_str().unwrap()], &data_a, &args_a);
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("export: {:?}", started.elapsed());
    let count = |f: fn(&AgentView) -> usize| before.0.iter().map(f).sum::<usize>();
    let summary = format!(
        "exported 4 agents ({} transitions, {} messages, {} checkpoints; threads: 0 checkpoints, 0 blobs, 0 writes) and 1 transfers",
        count(|a| a.transitions.len()),
        count(|a| a.messages.len()),
        count(|a| a.checkpoints.len())
    );
    assert!(stdout(&out).contains(&summary), "{}", stdout(&out));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with(r#"{"type":"header","format":"agentstate-export","version":2"#));
    assert!(
        !text.contains("\"gone\""),
        "a deleted agent is not exported"
    );

    // Import into a fresh data dir and database: every part the same.
    let data_b = dir.path().join("copy");
    let args_b = backend_args(mongo.as_ref(), "_copy");
    let started = std::time::Instant::now();
    let out = import(&file, &data_b, &args_b, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("import: {:?}", started.elapsed());
    assert!(
        stdout(&out).contains("agents: 4 added, 0 replaced, 0 unchanged; transfers: 1 added"),
        "{}",
        stdout(&out)
    );
    let mut target = start_on(&data_b, &args_b).await;
    assert_eq!(snapshot(&target.client()).await, before);
    assert!(target.terminate().success());

    // Again: nothing changes.
    let out = import(&file, &data_b, &args_b, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("nothing changed") && stdout(&out).contains("4 unchanged"),
        "{}",
        stdout(&out)
    );

    // An agent changed in the target: refused, naming it and both versions; nothing
    // imported.
    target.restart().await;
    let tc = target.client();
    let v = tc
        .save_state(
            "g1",
            &greeter("greeting", json!({"user_name": "Bob"})),
            None,
        )
        .await
        .unwrap();
    let changed = tc.load_state("g1").await.unwrap().unwrap();
    target.kill9();
    let out = import(&file, &data_b, &args_b, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let file_version = before.0[0].state.version;
    assert!(
        stdout(&out).contains(&format!(
            "CONFLICT line 2: agent g1 is at version {v} here and at version {file_version} in the file"
        )),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("nothing imported; --overwrite"),
        "{}",
        stderr(&out)
    );
    target.restart().await;
    assert_eq!(
        target.client().load_state("g1").await.unwrap(),
        Some(changed)
    );
    target.kill9();

    // With --overwrite: the file's agent again, its history with it.
    let out = import(&file, &data_b, &args_b, &["--overwrite"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("agents: 0 added, 1 replaced, 3 unchanged"),
        "{}",
        stdout(&out)
    );
    target.restart().await;
    assert_eq!(snapshot(&target.client()).await, before);
    // Life goes on from the imported counters, across a kill -9.
    let r = target
        .client()
        .append_messages("g1", vec![msg("user", "still there?")], None)
        .await
        .unwrap();
    assert_eq!(r.seqs, [3]);
    target.restart().await;
    let (after, _) = snapshot(&target.client()).await;
    assert_eq!(after[0].messages.len(), 3);
    assert_eq!(after[0].messages[..2], before.0[0].messages[..]);
    assert_eq!(after[0].transitions, before.0[0].transitions);
    assert_eq!(after[1..], before.0[1..]);
    target.kill9();

    // A damaged file is refused naming the line, before anything is touched.
    let data_c = dir.path().join("damaged");
    let args_c = backend_args(mongo.as_ref(), "_damaged");
    let lines: Vec<&str> = text.lines().collect();
    let cut = dir.path().join("cut.jsonl");
    std::fs::write(&cut, &text[..text.len() * 3 / 5]).unwrap();
    let out = import(&cut, &data_c, &args_c, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is damaged: line "),
        "{}",
        stderr(&out)
    );
    let garbled = dir.path().join("garbled.jsonl");
    let mut g: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    g[2] = "{\"type\": \"transition\", garbage".into();
    std::fs::write(&garbled, g.join("\n")).unwrap();
    let out = import(&garbled, &data_c, &args_c, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is damaged: line 3: not a JSON object"),
        "{}",
        stderr(&out)
    );
    assert!(!data_c.exists(), "the data dir is not even opened");
    // Well formed, but not storable (a `$` key, as BSON refuses): refused by the
    // checks before anything is written.
    let mut g: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let last_agent = g
        .iter()
        .rposition(|l| l.starts_with("{\"type\":\"agent\""))
        .unwrap();
    g[last_agent] = g[last_agent].replace("\"owner\":\"ops\"", "\"$owner\":\"ops\"");
    std::fs::write(&garbled, g.join("\n") + "\n").unwrap();
    let out = import(&garbled, &data_c, &args_c, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("line {} (agent u:1)", last_agent + 1))
            && stderr(&out).contains("key \"$owner\" at metadata"),
        "{}",
        stderr(&out)
    );
    let empty = start_on(&data_c, &args_c).await;
    for id in AGENTS {
        assert!(
            empty.client().load_state(id).await.unwrap().is_none(),
            "{id} written"
        );
    }
}

both_backends!(a_large_agent_moves_in_several_records);
async fn a_large_agent_moves_in_several_records(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (mut source, mongo) = start_with(backend, "export_large", dir.path(), &[]).await;
    let c = source.client();
    c.save_state("big", &greeter("idle", json!({})), None)
        .await
        .unwrap();
    // 6 MB of conversation: more than one import record, more than the target's
    // backlog holds at once.
    let text = "x".repeat(12 * 1024);
    for _ in 0..50 {
        let batch = (0..10).map(|_| msg("user", &text)).collect();
        c.append_messages("big", batch, None).await.unwrap();
    }
    let state = c.load_state("big").await.unwrap().unwrap();
    let mut messages = Vec::new();
    while messages.len() < 500 {
        let after = messages.last().map_or(0, |m: &Message| m.seq);
        messages.extend(c.get_messages("big", after, 1000).await.unwrap());
    }
    source.kill9();
    let data_a = dir.path().join("data");
    let file = dir.path().join("big.jsonl");
    let out = agentstate(
        &["export", file.to_str().unwrap()],
        &data_a,
        &backend_args(mongo.as_ref(), ""),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    let data_b = dir.path().join("copy");
    let mut args_b = backend_args(mongo.as_ref(), "_copy");
    args_b.extend(["--backlog-bytes-max".into(), "4194304".into()]);
    let started = std::time::Instant::now();
    let out = import(&file, &data_b, &args_b, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    eprintln!("import of 6 MB: {:?}", started.elapsed());
    let out = agentstate(&["dump", "--agent", "big"], &data_b, &[]);
    let parts = stdout(&out).matches("(part; the record follows)").count();
    let target = start_on(&data_b, &args_b).await;
    let t = target.client();
    assert_eq!(t.load_state("big").await.unwrap(), Some(state));
    let mut copied = Vec::new();
    while copied.len() < 500 {
        let after = copied.last().map_or(0, |m: &Message| m.seq);
        let page = t.get_messages("big", after, 1000).await.unwrap();
        assert!(!page.is_empty(), "{} messages of 500", copied.len());
        copied.extend(page);
    }
    assert_eq!(copied, messages);
    // The import's WAL segment is still there (one segment, the last one open).
    assert!(parts >= 1, "several import records: {}", stdout(&out));
}

fn items(from: usize, to: usize) -> Typed {
    common::msgpack_list("m", from, to)
}

/// Checkpoint `id` after `parent`, `m` at `version` (a delta when it `extends`), with
/// metadata to carry.
fn thread_put(
    id: &str,
    parent: Option<&str>,
    version: &str,
    value: Typed,
    extends: Option<&str>,
) -> PutThreadCheckpointRequest {
    let blob = common::thread_blob("m", version, value, extends);
    let mut put = common::thread_put(id, parent, &[("m", version)], vec![blob]);
    put.metadata = json!({"step": id}).as_object().unwrap().clone();
    put
}

async fn thread_view(c: &Client, thread: &str) -> Vec<ThreadCheckpointTuple> {
    let q = SearchCheckpointsRequest {
        thread_id: Some(thread.into()),
        limit: Some(1000),
        ..Default::default()
    };
    c.search_checkpoints(&q).await.unwrap()
}

both_backends!(threads_move_with_their_checkpoints);
async fn threads_move_with_their_checkpoints(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (mut source, mongo) = start_with(
        backend,
        "export_threads",
        dir.path(),
        &["--flush-interval-ms", "600000"],
    )
    .await;
    let c = source.client();
    let t = "chat";
    c.put_thread_checkpoint(t, &thread_put("01", None, "v1", items(0, 3), None))
        .await
        .unwrap();
    c.put_thread_checkpoint(
        t,
        &thread_put("02", Some("01"), "v2", items(3, 5), Some("v1")),
    )
    .await
    .unwrap();
    c.put_thread_checkpoint(
        t,
        &thread_put("03", Some("02"), "v3", items(5, 6), Some("v2")),
    )
    .await
    .unwrap();
    let writes = PutThreadWritesRequest {
        checkpoint_ns: String::new(),
        checkpoint_id: "03".into(),
        task_id: "task".into(),
        task_path: String::new(),
        writes: vec![NewThreadWrite {
            idx: 0,
            channel: "m".into(),
            value: items(6, 7),
        }],
    };
    c.put_thread_writes(t, &writes).await.unwrap();
    // Pruned to the latest: its chain's bases stay, named by no checkpoint left.
    c.prune_threads(vec![t.into()], PruneStrategy::KeepLatest)
        .await
        .unwrap();
    assert!(source.terminate().success(), "SIGTERM flushes");
    // After the restart, only in the WAL when the sidecar is killed.
    source.restart().await;
    let c = source.client();
    c.put_thread_checkpoint(
        t,
        &thread_put("04", Some("03"), "v4", items(6, 8), Some("v3")),
    )
    .await
    .unwrap();
    c.put_thread_checkpoint("plain", &thread_put("01", None, "p1", items(0, 1), None))
        .await
        .unwrap();
    let before = (thread_view(&c, t).await, thread_view(&c, "plain").await);
    assert_eq!(before.0.len(), 2);
    source.kill9();

    let data_a = dir.path().join("data");
    let args_a = backend_args(mongo.as_ref(), "");
    let file = dir.path().join("threads.jsonl");
    let out = agentstate(&["export", file.to_str().unwrap()], &data_a, &args_a);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("threads: 3 checkpoints, 5 blobs, 1 writes"),
        "{}",
        stdout(&out)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(r#""extends":"v3""#), "a delta stays a delta");

    let data_b = dir.path().join("copy");
    let args_b = backend_args(mongo.as_ref(), "_threads_copy");
    for round in ["first", "again"] {
        let out = import(&file, &data_b, &args_b, &[]);
        assert!(out.status.success(), "{round}: {}", stderr(&out));
        let mut target = start_on(&data_b, &args_b).await;
        let tc = target.client();
        let after = (thread_view(&tc, t).await, thread_view(&tc, "plain").await);
        assert_eq!(
            after, before,
            "{round}: every checkpoint whole, with its writes"
        );
        // The thread goes on from what was imported: a delta on the imported value.
        if round == "first" {
            assert!(stdout(&out).contains("agents: 2 added"), "{}", stdout(&out));
        } else {
            assert!(stdout(&out).contains("2 unchanged"), "{}", stdout(&out));
        }
        target.kill9();
    }
    let mut target = start_on(&data_b, &args_b).await;
    let tc = target.client();
    tc.put_thread_checkpoint(
        t,
        &thread_put("05", Some("04"), "v5", items(8, 9), Some("v4")),
    )
    .await
    .unwrap();
    let latest = tc.thread_checkpoint(t, "", None).await.unwrap().unwrap();
    let whole: Vec<String> = rmp_serde::from_slice(&latest.blobs[0].value.data.0).unwrap();
    assert_eq!(whole, (0..9).map(|i| format!("m{i}")).collect::<Vec<_>>());
    target.kill9();
}
