//! Power cuts, not only `kill -9`: the data dir (WAL, flush progress, embedded SQLite store)
//! on the fault-injecting filesystem of `testkit/faultfs`, which keeps what was made
//! durable apart from what was not. Each round runs writers against the real binary, then
//! kills it and cuts the power at once (the filesystem drops what was not durable, in the
//! round's fault mode), restarts it, and checks every acknowledged write: each agent's
//! state at its last acknowledged save or later, each acknowledged message there. `memory`
//! writes are mixed in, unchecked, and must not harm later `local` ones. One round in four
//! cuts again soon after the restart, while the sidecar re-flushes. A refused start fails
//! the round with the sidecar's log (which names the file and offset).
//!
//! 30 rounds per fault mode by default (`AGENTSTATE_POWER_CUT_ROUNDS`), seeded
//! (`AGENTSTATE_TEST_SEED`); `AGENTSTATE_POWER_CUT_MODES` picks modes by name. Needs root and `/dev/fuse`; without `/dev/fuse` it says so
//! and checks nothing.
//!
//! The harness must show its teeth too: with `--wal-fsync false` a cut loses acknowledged
//! writes within a few rounds, and the test says how many.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentstate_faultfs::{CutMode, CutReport, FaultFs};
use agentstate_protocol::{Client, Durability, NewMessage, SaveStateRequest, StatePersistence};
use common::{env_or, seed, Sidecar};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::json;

/// Writers checked, and writers at `memory` durability (unchecked).
const WRITERS: usize = 4;
const MEMORY_WRITERS: usize = 2;

const MODES: [CutMode; 5] = [
    CutMode::DropAll,
    CutMode::Pages,
    CutMode::TornTail { sector: 512 },
    CutMode::TornTail { sector: 4096 },
    CutMode::DirPrefix,
];

fn save(n: u64) -> SaveStateRequest {
    SaveStateRequest {
        agent_type: None,
        state_name: format!("s{}", n % 5),
        state_data: Some(json!({ "n": n, "pad": "p".repeat((n % 7 * 300) as usize) })),
        metadata: None,
    }
}

/// What was acknowledged, per agent: the last saved `n` and its version, and the number
/// of messages acknowledged in all.
#[derive(Debug, Default, Clone)]
struct Acked {
    saves: HashMap<String, (u64, u64)>,
    messages: HashMap<String, u64>,
    calls: u64,
}

/// The filesystem, or `None` (said why) where `/dev/fuse` is missing.
fn mount(dir: &Path) -> Option<FaultFs> {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("power_cut: /dev/fuse is missing on this machine: no power-cut rounds run");
        return None;
    }
    Some(FaultFs::mount(dir).unwrap_or_else(|e| {
        panic!("cannot mount the fault-injecting filesystem (needs root and /dev/fuse): {e}")
    }))
}

/// Writers save and append to their own agents until the process dies under them; the
/// `memory` writers save to theirs. Returns once the sidecar is killed, `run_for` after
/// the first acknowledgement.
async fn load_then_kill(sidecar: &mut Sidecar, acked: &Arc<Mutex<Acked>>, run_for: Duration) {
    let mut tasks = Vec::new();
    for w in 0..WRITERS + MEMORY_WRITERS {
        let memory = w >= WRITERS;
        let client: Client = sidecar.client().with_timeout(Duration::from_secs(5));
        let client = if memory {
            client.with_durability(Durability::Memory)
        } else {
            client
        };
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let agent = if memory {
                format!("mem-{w}")
            } else {
                format!("agent-{w}")
            };
            let mut n = acked.lock().unwrap().saves.get(&agent).map_or(0, |a| a.0);
            loop {
                n += 1;
                if n.is_multiple_of(3) && !memory {
                    let m = NewMessage {
                        role: "user".into(),
                        content: format!("message {n}"),
                        metadata: Default::default(),
                    };
                    match client.append_messages(&agent, vec![m], None).await {
                        Ok(_) => {
                            let mut a = acked.lock().unwrap();
                            *a.messages.entry(agent.clone()).or_default() += 1;
                            a.calls += 1;
                        }
                        Err(_) => return,
                    }
                    continue;
                }
                match client.save_state(&agent, &save(n), None).await {
                    Ok(version) if !memory => {
                        let mut a = acked.lock().unwrap();
                        a.saves.insert(agent.clone(), (n, version));
                        a.calls += 1;
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().calls == 0 {
        assert!(Instant::now() < deadline, "no write acknowledged in 60 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(run_for).await;
    sidecar.kill9();
    for t in tasks {
        t.await.unwrap();
    }
}

/// Every acknowledged write, as the restarted sidecar serves it: the agents and messages
/// lost (empty when none is).
async fn lost(sidecar: &Sidecar, acked: &Acked) -> Vec<String> {
    let client = sidecar.client();
    let mut lost = Vec::new();
    for (agent, (n, version)) in &acked.saves {
        match client.load_state(agent).await.unwrap() {
            None => lost.push(format!("{agent}: acknowledged v{version} (n={n}) gone")),
            Some(s) => {
                let served = s.state_data["n"].as_u64().unwrap_or(0);
                if s.version < *version || served < *n {
                    lost.push(format!(
                        "{agent}: acknowledged v{version} n={n}, served v{} n={served}",
                        s.version
                    ));
                }
            }
        }
    }
    for (agent, count) in &acked.messages {
        let mut served = 0u64;
        let mut after = 0;
        loop {
            let page = client.get_messages(agent, after, 1000).await.unwrap();
            let Some(last) = page.last() else { break };
            after = last.seq;
            served += page.len() as u64;
        }
        if served < *count {
            lost.push(format!(
                "{agent}: {count} messages acknowledged, {served} served"
            ));
        }
    }
    lost
}

/// What the rounds of one mode did.
#[derive(Debug, Default)]
struct Tally {
    rounds: u64,
    cuts: u64,
    calls: u64,
    bytes_dropped: u64,
    pages_dropped: u64,
    writes_torn: u64,
    dir_ops_dropped: u64,
    lost: u64,
}

impl Tally {
    fn add(&mut self, r: &CutReport) {
        self.cuts += 1;
        self.bytes_dropped += r.bytes_dropped;
        self.pages_dropped += r.pages_dropped;
        self.writes_torn += r.writes_torn as u64;
        self.dir_ops_dropped += r.dir_ops_dropped as u64;
    }
}

/// Runs `rounds` rounds of `mode`; returns the tally and the first losses seen (a round
/// with losses ends the run).
/// Whether the filesystem does the sidecar's directory fsyncs, or only answers them (as
/// if the sidecar had left them out).
#[derive(Clone, Copy, PartialEq, Eq)]
enum DirFsyncs {
    Done,
    Ignored,
}

async fn rounds(
    mode: CutMode,
    rounds: u64,
    rng: &mut StdRng,
    extra: &[&str],
    dir_fsyncs: DirFsyncs,
) -> Option<(Tally, Vec<String>)> {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let fs = mount(&mnt)?;
    if dir_fsyncs == DirFsyncs::Ignored {
        fs.ignore_dir_fsyncs();
    }
    let mut args = vec!["--flush-interval-ms", "50"];
    args.extend_from_slice(extra);
    // The data dir is the mount itself; the sidecar's log (beside it) is not on it.
    let mut sidecar = Sidecar::start(&mnt, &args).await;
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut tally = Tally::default();
    for round in 0..rounds {
        tally.rounds += 1;
        let again = round % 4 == 3;
        for cut in 0..if again { 2 } else { 1 } {
            let run_for = Duration::from_millis(if cut == 0 {
                rng.gen_range(20..300)
            } else {
                rng.gen_range(0..40)
            });
            load_then_kill(&mut sidecar, &acked, run_for).await;
            let report = fs.cut(mode, rng.gen());
            tally.add(&report);
            // A refused start panics here with the sidecar's log.
            sidecar.restart().await;
        }
        let a = acked.lock().unwrap().clone();
        let lost = lost(&sidecar, &a).await;
        if !lost.is_empty() {
            tally.calls = a.calls;
            tally.lost = lost.len() as u64;
            return Some((tally, lost));
        }
    }
    tally.calls = acked.lock().unwrap().calls;
    sidecar.kill9();
    drop(fs);
    Some((tally, Vec::new()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cuts_lose_no_acknowledged_write() {
    let seed = seed("power_cuts_lose_no_acknowledged_write");
    let mut rng = StdRng::seed_from_u64(seed);
    let per_mode: u64 = env_or("AGENTSTATE_POWER_CUT_ROUNDS", 30);
    // `AGENTSTATE_POWER_CUT_MODES=Pages,DirPrefix` runs only the modes named (by prefix).
    let only: String = env_or("AGENTSTATE_POWER_CUT_MODES", String::new());
    let chosen = |m: &CutMode| {
        only.is_empty()
            || only
                .split(',')
                .any(|o| format!("{m:?}").starts_with(o.trim()))
    };
    for mode in MODES.into_iter().filter(chosen) {
        let started = Instant::now();
        let Some((tally, lost)) = rounds(mode, per_mode, &mut rng, &[], DirFsyncs::Done).await
        else {
            return;
        };
        eprintln!(
            "{mode:?}: {} rounds, {} cuts in {:.1} s; {} calls acknowledged and checked; \
             {} bytes and {} pages dropped, {} writes torn, {} directory changes dropped; \
             refused starts 0; lost {}",
            tally.rounds,
            tally.cuts,
            started.elapsed().as_secs_f64(),
            tally.calls,
            tally.bytes_dropped,
            tally.pages_dropped,
            tally.writes_torn,
            tally.dir_ops_dropped,
            tally.lost,
        );
        assert!(
            lost.is_empty(),
            "{mode:?}: acknowledged writes lost (seed {seed}):\n{}",
            lost.join("\n")
        );
        assert!(tally.calls > 0, "{mode:?}: nothing was acknowledged");
    }
}

/// The harness can fail: without fsync of the WAL, a cut loses acknowledged writes within
/// a few rounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wal_fsync_power_cuts_lose_acknowledged_writes() {
    let seed = seed("without_wal_fsync_power_cuts_lose_acknowledged_writes");
    let mut rng = StdRng::seed_from_u64(seed);
    let Some((tally, lost)) = rounds(
        CutMode::DropAll,
        10,
        &mut rng,
        &["--wal-fsync", "false"],
        DirFsyncs::Done,
    )
    .await
    else {
        return;
    };
    eprintln!(
        "--wal-fsync false: lost {} after {} rounds, e.g. {:?}",
        lost.len(),
        tally.rounds,
        lost.first()
    );
    assert!(
        !lost.is_empty(),
        "10 power cuts without WAL fsync lost nothing: the harness cannot see a loss"
    );
}

/// The harness can fail: where the sidecar's directory fsyncs do nothing (the filesystem
/// answers them, as if they had been left out), a cut loses acknowledged writes within a
/// few rounds: a new WAL segment's name, or the data dir's own, is not durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_directory_fsyncs_power_cuts_lose_acknowledged_writes() {
    let seed = seed("without_directory_fsyncs_power_cuts_lose_acknowledged_writes");
    let mut rng = StdRng::seed_from_u64(seed);
    let Some((tally, lost)) = rounds(CutMode::DropAll, 10, &mut rng, &[], DirFsyncs::Ignored).await
    else {
        return;
    };
    eprintln!(
        "directory fsyncs left out: lost {} after {} rounds, e.g. {:?}",
        lost.len(),
        tally.rounds,
        lost.first()
    );
    assert!(
        !lost.is_empty(),
        "10 power cuts without directory fsyncs lost nothing: the harness cannot see a missing one"
    );
}
