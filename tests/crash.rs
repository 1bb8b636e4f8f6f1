//! Crash recovery against the real binary: `kill -9` mid-stream loses nothing that was
//! acknowledged; a torn WAL tail is cut; damage in the middle of the WAL stops start-up
//! with a message naming the file and offset.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentstate_protocol::{SaveStateRequest, StatePersistence};
use common::{agentstate, seed, Sidecar};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::json;

fn save(n: u64) -> SaveStateRequest {
    SaveStateRequest {
        agent_type: None,
        state_name: format!("s{}", n % 5),
        state_data: Some(json!({ "n": n })),
        metadata: None,
    }
}

/// Per agent: the last acknowledged `n` and its version.
type Acked = Arc<Mutex<HashMap<String, (u64, u64)>>>;

/// Writers save increasing `n` to their own agents until the process dies under them,
/// `kill_after` past the first acknowledged save.
async fn write_until_killed(sidecar: &mut Sidecar, writers: usize, kill_after: Duration) -> Acked {
    let acked: Acked = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let client = sidecar.client().with_timeout(Duration::from_secs(2));
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let agent = format!("agent-{w}");
            let mut n = acked.lock().unwrap().get(&agent).map_or(0, |a| a.0);
            loop {
                n += 1;
                match client.save_state(&agent, &save(n), None).await {
                    Ok(version) => {
                        acked.lock().unwrap().insert(agent.clone(), (n, version));
                    }
                    Err(_) => return, // the sidecar is gone
                }
            }
        }));
    }
    // The kill comes `kill_after` past the first acknowledgement, not past the start: on a
    // busy machine the first writes after a restart can take longer than that.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline && !tasks.iter().all(|t| t.is_finished()),
            "no write was acknowledged after the start (the writers stop at their first error)"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(kill_after).await;
    sidecar.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    acked
}

async fn assert_all_present(sidecar: &Sidecar, acked: &Acked) {
    let client = sidecar.client();
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "some writes were acknowledged before the kill"
    );
    for (agent, (n, version)) in acked {
        let state = client
            .load_state(&agent)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{agent}: acknowledged v{version} lost entirely"));
        // A write in flight at the kill may have landed too, but nothing acknowledged
        // may be missing.
        assert!(
            state.version >= version,
            "{agent}: acknowledged v{version} but found v{}",
            state.version
        );
        if state.version == version {
            assert_eq!(state.state_data, json!({ "n": n }), "{agent} v{version}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_no_acknowledged_write() {
    let seed = seed("kill9_loses_no_acknowledged_write");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    // A slow flush keeps most writes only in the WAL when the kill comes.
    let mut sidecar =
        Sidecar::start(&dir.path().join("data"), &["--flush-interval-ms", "2000"]).await;
    for round in 0..3 {
        let kill_after = Duration::from_millis(rng.gen_range(100..600));
        let acked = write_until_killed(&mut sidecar, 8, kill_after).await;
        sidecar.restart().await;
        eprintln!(
            "round {round}: killed after {kill_after:?}, checking {} agents",
            acked.lock().unwrap().len()
        );
        assert_all_present(&sidecar, &acked).await;
    }
}

#[tokio::test]
async fn torn_tail_is_truncated_and_acknowledged_writes_survive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut sidecar = Sidecar::start(&data, &["--flush-interval-ms", "60000"]).await;
    let client = sidecar.client();
    for n in 1..=20 {
        client.save_state("torn", &save(n), None).await.unwrap();
    }
    sidecar.kill9();

    // A crash mid-write: half a record's worth of bytes after the last whole record,
    // over the zero fill the writer keeps ahead of its records.
    let segment = last_segment(&data);
    let mut bytes = std::fs::read(&segment).unwrap();
    let records_end = records_bytes(&data);
    let torn = [0x2a, 0x00, 0x00, 0x00, 0xde, 0xad, 0xbe, 0xef, 21, 0, 0];
    let torn_end = records_end + torn.len();
    if bytes.len() < torn_end {
        bytes.resize(torn_end, 0);
    }
    bytes[records_end..torn_end].copy_from_slice(&torn);
    std::fs::write(&segment, &bytes).unwrap();

    sidecar.restart().await;
    let state = sidecar.client().load_state("torn").await.unwrap().unwrap();
    assert_eq!((state.version, state.state_data), (20, json!({"n": 20})));
    let after = std::fs::read(&segment).unwrap();
    assert_eq!(after[..records_end], bytes[..records_end]);
    assert!(
        after[records_end..].iter().all(|b| *b == 0),
        "the torn bytes are cut (zeroed)"
    );
    assert!(sidecar.log().contains("torn WAL tail cut"));
    // And it keeps working after the cut.
    assert_eq!(
        sidecar
            .client()
            .save_state("torn", &save(21), None)
            .await
            .unwrap(),
        21
    );
}

#[tokio::test]
async fn corruption_in_the_middle_stops_startup_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut sidecar = Sidecar::start(&data, &["--flush-interval-ms", "60000"]).await;
    let client = sidecar.client();
    for n in 1..=20 {
        client.save_state("mid", &save(n), None).await.unwrap();
    }
    sidecar.kill9();
    let segment = last_segment(&data);
    let mut bytes = std::fs::read(&segment).unwrap();
    // Within the records, not the zero fill after them.
    let middle = records_bytes(&data) / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&segment, &bytes).unwrap();

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentstate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success(), "must not start over a corrupt WAL");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("corrupt WAL record"), "{stderr}");
    assert!(
        stderr.contains(&segment.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(stderr.contains("offset"), "names the offset: {stderr}");
}

/// The bytes of whole records in the WAL (one segment here), as `agentstate dump` counts
/// them: a record may end in zero bytes, so the zero fill's start does not tell.
fn records_bytes(data: &std::path::Path) -> usize {
    let out = agentstate(&["dump"], data, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    let summary = err
        .lines()
        .find(|l| l.contains(" records, "))
        .unwrap_or_else(|| panic!("no summary from dump: {err}"));
    // "1 segments, 20 records, 1234 bytes, last LSN 20"
    summary
        .split(", ")
        .nth(2)
        .and_then(|b| b.strip_suffix(" bytes"))
        .unwrap()
        .parse()
        .unwrap()
}

fn last_segment(data: &std::path::Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(data.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segs.sort();
    segs.pop().expect("a WAL segment")
}
