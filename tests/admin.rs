//! The admin commands against the real binary: `dump`, `check`, `recover` (replay,
//! rollback, corrupt segment) and `cleanup`, on the data dir of a killed sidecar; and the
//! data dir's lock.

mod common;

use std::process::Command;

use agentstate_protocol::{NewMessage, SaveStateRequest, StatePersistence, TransitionRequest};
use common::{agentstate, start_with, stdout, Backend, Mongo, Sidecar};
use serde_json::json;

fn save(state: &str) -> SaveStateRequest {
    SaveStateRequest {
        agent_type: Some("greeter".into()),
        state_name: state.into(),
        state_data: Some(json!({"user_name": "Ada"})),
        metadata: None,
    }
}

#[test]
fn every_command_has_help() {
    for cmd in [
        "serve", "dump", "check", "recover", "cleanup", "export", "import",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_agentstate"))
            .args([cmd, "--help"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd} --help");
        assert!(
            stdout(&out).contains("--data-dir"),
            "{cmd} --help names --data-dir"
        );
    }
}

async fn check_recover_check(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    // Nothing is flushed before the kill.
    let (mut sidecar, mongo) = start_with(
        backend,
        "admin_check",
        dir.path(),
        &["--flush-interval-ms", "600000"],
    )
    .await;
    let c = sidecar.client();
    for i in 0..5 {
        c.save_state(&format!("a{i}"), &save("idle"), None)
            .await
            .unwrap();
    }
    c.record_transition(
        "a0",
        &TransitionRequest {
            to_state: "greeting".into(),
            trigger: "user_message".into(),
            state_data: None,
        },
    )
    .await
    .unwrap();
    sidecar.kill9();
    let data = dir.path().join("data");
    let backend_args: Vec<String> = mongo.as_ref().map(Mongo::sidecar_args).unwrap_or_default();

    // dump reads a stopped sidecar's WAL.
    let out = agentstate(&["dump"], &data, &[]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.contains("put a3 v1 state=idle"), "{text}");
    assert!(
        text.contains("transition a0 #1 idle -> greeting on user_message (ok) v2"),
        "{text}"
    );
    let out = agentstate(&["dump", "--agent", "a0", "--json"], &data, &[]);
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .take_while(|l| l.starts_with('{') && l.contains("\"lsn\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "a0's two records");
    assert!(
        stdout(&out).contains("\"state_name\": \"greeting\""),
        "a0's latest state"
    );

    // check sees what is not in the backend yet, recover flushes it, check agrees.
    let out = agentstate(&["check"], &data, &backend_args);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("DIFF a0: v2 in the WAL, missing in the backend"),
        "{}",
        stdout(&out)
    );
    let out = agentstate(&["recover"], &data, &backend_args);
    assert!(
        out.status.success(),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = agentstate(&["check"], &data, &backend_args);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(stdout(&out).contains("0 differences"));
}

#[tokio::test]
async fn check_and_recover_embedded() {
    check_recover_check(Backend::Embedded).await;
}

#[tokio::test]
async fn check_and_recover_mongo() {
    check_recover_check(Backend::Mongo).await;
}

#[tokio::test]
async fn recover_rolls_an_agent_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sidecar, _m) = start_with(Backend::Embedded, "rollback", dir.path(), &[]).await;
    let c = sidecar.client();
    c.save_state("r", &save("idle"), None).await.unwrap();
    let cp = c.checkpoint("r", None).await.unwrap();
    c.save_state("r", &save("greeting"), None).await.unwrap();
    sidecar.kill9();
    let data = dir.path().join("data");
    let out = agentstate(
        &[
            "recover",
            "--rollback",
            "r",
            "--checkpoint",
            &cp.checkpoint_id,
        ],
        &data,
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("now v3 in state idle"),
        "{}",
        stdout(&out)
    );
    sidecar.restart().await;
    let s = sidecar.client().load_state("r").await.unwrap().unwrap();
    assert_eq!((s.state_name.as_str(), s.version), ("idle", 3));
}

#[tokio::test]
async fn recover_moves_a_corrupt_record_aside() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut sidecar = Sidecar::start(&data, &["--flush-interval-ms", "600000"]).await;
    let c = sidecar.client();
    for n in 0..20 {
        c.save_state(
            "k",
            &SaveStateRequest {
                state_name: format!("s{n}"),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    }
    sidecar.kill9();
    let seg = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    // Within the records, not the zero fill after them.
    let records_end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
    let middle = records_end / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();

    let out = agentstate(&["dump"], &data, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt WAL record"));
    let out = agentstate(&["recover", "--truncate-corrupt"], &data, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("kept a copy in"), "{}", stdout(&out));
    assert!(data.join("wal/quarantine").read_dir().unwrap().count() >= 1);

    // The sidecar starts, with the records before the damage.
    sidecar.restart().await;
    let s = sidecar.client().load_state("k").await.unwrap().unwrap();
    assert!(
        s.version >= 1 && s.version < 20,
        "the records before the damage survive: v{}",
        s.version
    );
}

async fn cleanup_applies_retention(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let (mut sidecar, mongo) = start_with(backend, "cleanup", dir.path(), &[]).await;
    let c = sidecar.client();
    c.save_state("c", &save("idle"), None).await.unwrap();
    for i in 0..30 {
        c.append_messages(
            "c",
            vec![NewMessage {
                role: "user".into(),
                content: format!("m{i}"),
                metadata: Default::default(),
            }],
            None,
        )
        .await
        .unwrap();
    }
    for _ in 0..4 {
        c.checkpoint("c", None).await.unwrap();
    }
    // Stopped cleanly: SIGTERM flushes the backlog before exit.
    let status = sidecar.terminate();
    assert!(status.success(), "graceful shutdown exits 0");
    let data = dir.path().join("data");
    let mut args: Vec<String> = mongo.as_ref().map(Mongo::sidecar_args).unwrap_or_default();
    args.extend([
        "--messages-max-count".into(),
        "10".into(),
        "--checkpoints-max-count".into(),
        "1".into(),
    ]);
    let out = agentstate(&["cleanup"], &data, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("deleted 0 transitions, 20 messages, 3 checkpoints"),
        "{}",
        stdout(&out)
    );
    // Age: everything older than 0 days, that is, all of it.
    let mut args: Vec<String> = mongo.as_ref().map(Mongo::sidecar_args).unwrap_or_default();
    args.extend(["--messages-max-age-days".into(), "0".into()]);
    let out = agentstate(&["cleanup"], &data, &args);
    assert!(stdout(&out).contains("10 messages"), "{}", stdout(&out));
    let out = agentstate(
        &["cleanup"],
        &data,
        &mongo.as_ref().map(Mongo::sidecar_args).unwrap_or_default(),
    );
    assert!(!out.status.success(), "no limits is an error");

    sidecar.restart().await;
    let c = sidecar.client();
    assert!(c.get_messages("c", 0, 100).await.unwrap().is_empty());
    assert_eq!(c.list_checkpoints("c").await.unwrap().len(), 1);
    // The state itself is never touched, and seqs keep counting.
    let r = c
        .append_messages(
            "c",
            vec![NewMessage {
                role: "user".into(),
                content: "again".into(),
                metadata: Default::default(),
            }],
            None,
        )
        .await
        .unwrap();
    assert_eq!(r.seqs, [31]);
}

#[tokio::test]
async fn cleanup_embedded() {
    cleanup_applies_retention(Backend::Embedded).await;
}

#[tokio::test]
async fn cleanup_mongo() {
    cleanup_applies_retention(Backend::Mongo).await;
}

#[tokio::test]
async fn one_process_per_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _sidecar = Sidecar::start(&data, &[]).await;
    let out = agentstate(&["serve", "--listen", "127.0.0.1:0"], &data, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("another agentstate process is using the data dir"));
}

#[tokio::test]
async fn commands_that_run_the_sidecar_carry_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "admin-token-0123456789\n").unwrap();
    let args = [
        "--auth-token-file".to_string(),
        token_file.display().to_string(),
    ];
    let mut sidecar = Sidecar::start(
        &data,
        &[&args[0], &args[1], "--flush-interval-ms", "600000"],
    )
    .await;
    let c = sidecar.client().with_token("admin-token-0123456789");
    c.save_state("k", &save("idle"), None).await.unwrap();
    sidecar.kill9();
    // `recover` asks its own sidecar when the backlog is flushed.
    let out = agentstate(&["recover"], &data, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.path().join("k.jsonl");
    let out = agentstate(&["export", file.to_str().unwrap()], &data, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = agentstate(
        &["import", file.to_str().unwrap()],
        &dir.path().join("copy"),
        &args,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("agents: 1 added"), "{}", stdout(&out));
}
