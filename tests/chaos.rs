//! Crash-consistency harness: concurrent writers doing saves, transitions, message
//! appends and transfers while the sidecar is killed (`kill -9`) at random moments and
//! restarted, round after round. After every restart, every acknowledged write must be
//! readable; at the end, once flushed, it must be in MongoDB.
//!
//! Seeded: it prints its seed; `AGENTSTATE_TEST_SEED=<seed>` replays the same choices
//! (the kill moments are times, so the interleaving still varies). `AGENTSTATE_CHAOS_ROUNDS`
//! sets the rounds (default 20); `AGENTSTATE_SOAK_SECS` keeps going for that long instead
//! (soak mode), e.g. `AGENTSTATE_SOAK_SECS=600 cargo test --test chaos -- --nocapture`.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentstate_protocol::{
    Client, NewMessage, SaveStateRequest, StatePersistence, TransferRequest, TransitionRequest,
};
use common::{eventually, seed, start_with, Backend};
use mongodb::bson::{doc, Document};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::json;

const WRITERS: usize = 6;
const AGENTS_PER_WRITER: usize = 4;

/// What the sidecar acknowledged, per agent.
#[derive(Default, Clone)]
struct Acked {
    /// Highest acknowledged version and the `n` its data carried then (None: not a save).
    version: u64,
    saved_n: Option<(u64, u64)>,
    /// Acknowledged message seqs and their contents.
    messages: BTreeMap<u64, String>,
    /// Acknowledged transition seqs.
    transitions: Vec<u64>,
}

#[derive(Default)]
struct Ledger {
    agents: HashMap<String, Acked>,
    /// Transfers acknowledged, and transfers tried (acknowledged or not): id -> target.
    transfers_acked: HashMap<String, String>,
    transfers_tried: HashMap<String, String>,
}

type Shared = Arc<Mutex<Ledger>>;

fn agent(w: usize, i: usize) -> String {
    format!("w{w}-a{i}")
}

/// One writer: random operations on its own agents until the sidecar dies.
async fn writer(client: Client, w: usize, mut rng: StdRng, ledger: Shared, round: usize) {
    let mut n = 0u64;
    loop {
        let a = agent(w, rng.gen_range(0..AGENTS_PER_WRITER));
        n += 1;
        let choice = rng.gen_range(0..100);
        let ok = if choice < 40 {
            let req = SaveStateRequest {
                agent_type: None,
                state_name: format!("s{}", n % 7),
                state_data: Some(json!({ "n": n, "w": w })),
                metadata: None,
            };
            match client.save_state(&a, &req, None).await {
                Ok(v) => {
                    let mut l = ledger.lock().unwrap();
                    let e = l.agents.entry(a.clone()).or_default();
                    if v > e.version {
                        e.version = v;
                        e.saved_n = Some((v, n));
                    }
                    true
                }
                Err(_) => false,
            }
        } else if choice < 65 {
            let req = TransitionRequest {
                to_state: format!("t{}", n % 5),
                trigger: "step".into(),
                state_data: None,
            };
            match client.record_transition(&a, &req).await {
                Ok(r) => {
                    let mut l = ledger.lock().unwrap();
                    let e = l.agents.entry(a.clone()).or_default();
                    e.version = e.version.max(r.version);
                    e.transitions.push(r.transition.seq);
                    true
                }
                // Before the first save there is nothing to move; not a failure.
                Err(e) => e.code() == Some(agentstate_protocol::ErrorCode::NotFound),
            }
        } else if choice < 92 {
            let content = format!("r{round}-w{w}-n{n}");
            let msg = NewMessage {
                role: "user".into(),
                content: content.clone(),
                metadata: Default::default(),
            };
            match client.append_messages(&a, vec![msg], None).await {
                Ok(r) => {
                    let mut l = ledger.lock().unwrap();
                    let e = l.agents.entry(a.clone()).or_default();
                    e.version = e.version.max(r.version);
                    e.messages.insert(r.seqs[0], content);
                    true
                }
                Err(e) => e.code() == Some(agentstate_protocol::ErrorCode::NotFound),
            }
        } else {
            let id = format!("x-r{round}-w{w}-n{n}");
            let target = format!("t-{id}");
            ledger
                .lock()
                .unwrap()
                .transfers_tried
                .insert(id.clone(), target.clone());
            let req = TransferRequest {
                transfer_id: id.clone(),
                from_agent: a.clone(),
                to_agent: target.clone(),
                trigger: "handoff".into(),
                to_trigger: None,
                to_agent_type: Some("haiku".into()),
                context: Some(json!({ "round": round })),
                messages_max: Some(5),
            };
            match client.transfer(&req).await {
                Ok(t) => {
                    let mut l = ledger.lock().unwrap();
                    let e = l.agents.entry(a.clone()).or_default();
                    e.version = e.version.max(t.from_version);
                    l.transfers_acked.insert(id, target);
                    true
                }
                Err(e) => e.code() == Some(agentstate_protocol::ErrorCode::NotFound),
            }
        };
        if !ok {
            return; // the sidecar is gone
        }
    }
}

/// Every acknowledged write is there; every transfer tried happened wholly or not at all.
async fn verify(client: &Client, ledger: &Ledger, round: usize) {
    for (a, acked) in &ledger.agents {
        if acked.version == 0 {
            continue;
        }
        let s =
            client.load_state(a).await.unwrap().unwrap_or_else(|| {
                panic!("round {round}: {a} lost (acknowledged v{})", acked.version)
            });
        assert!(
            s.version >= acked.version,
            "round {round}: {a} at v{} but v{} was acknowledged",
            s.version,
            acked.version
        );
        if let Some((v, n)) = acked.saved_n {
            if s.version == v {
                assert_eq!(s.state_data["n"], n, "round {round}: {a} v{v} data");
            }
        }
        if let Some(&last) = acked.messages.keys().last() {
            let got = client.get_messages(a, 0, 1000).await.unwrap();
            let got: HashMap<u64, String> = got.into_iter().map(|m| (m.seq, m.content)).collect();
            for (seq, content) in &acked.messages {
                assert_eq!(
                    got.get(seq),
                    Some(content),
                    "round {round}: {a} message #{seq} (of {last})"
                );
            }
        }
        if !acked.transitions.is_empty() {
            let mut seqs = Vec::new();
            let mut after = 0;
            loop {
                let page = client.get_transitions(a, after, 1000).await.unwrap();
                let Some(l) = page.last() else { break };
                after = l.seq;
                seqs.extend(page.iter().map(|t| t.seq));
            }
            for seq in &acked.transitions {
                assert!(
                    seqs.contains(seq),
                    "round {round}: {a} transition #{seq} lost"
                );
            }
        }
    }
    for (id, target) in &ledger.transfers_tried {
        let t = client.get_transfer(id).await.unwrap();
        let dst = client.load_state(target).await.unwrap();
        assert_eq!(
            t.is_some(),
            dst.is_some(),
            "round {round}: transfer {id} is half done"
        );
        if ledger.transfers_acked.contains_key(id) {
            assert!(
                t.is_some(),
                "round {round}: acknowledged transfer {id} lost"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_repeated_kill9() {
    let seed = seed("acknowledged_writes_survive_repeated_kill9");
    let mut rng = StdRng::seed_from_u64(seed);
    let rounds: usize = std::env::var("AGENTSTATE_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let soak = std::env::var("AGENTSTATE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let dir = tempfile::tempdir().unwrap();
    let (mut sidecar, mongo) = start_with(
        Backend::Mongo,
        "chaos",
        dir.path(),
        &["--flush-interval-ms", "50"],
    )
    .await;
    let ledger: Shared = Arc::default();
    let started = Instant::now();
    let mut round = 0;
    while match soak {
        Some(d) => started.elapsed() < d,
        None => round < rounds,
    } {
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let client = sidecar.client().with_timeout(Duration::from_secs(3));
            let writer_rng = StdRng::seed_from_u64(rng.gen());
            tasks.push(tokio::spawn(writer(
                client,
                w,
                writer_rng,
                ledger.clone(),
                round,
            )));
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(30..400))).await;
        sidecar.kill9();
        for t in tasks {
            t.await.unwrap();
        }
        sidecar.restart().await;
        let snapshot = {
            let l = ledger.lock().unwrap();
            Ledger {
                agents: l.agents.clone(),
                transfers_acked: l.transfers_acked.clone(),
                transfers_tried: l.transfers_tried.clone(),
            }
        };
        verify(&sidecar.client(), &snapshot, round).await;
        round += 1;
    }
    let l = std::mem::take(&mut *ledger.lock().unwrap());
    eprintln!(
        "seed {seed}: {round} kill -9 rounds in {:?}; acknowledged: {} agents, {} messages, {} transitions, {} transfers ({} tried); zero lost",
        started.elapsed(),
        l.agents.len(),
        l.agents.values().map(|a| a.messages.len()).sum::<usize>(),
        l.agents.values().map(|a| a.transitions.len()).sum::<usize>(),
        l.transfers_acked.len(),
        l.transfers_tried.len(),
    );

    // Once flushed, MongoDB has every acknowledged write too.
    let c = sidecar.client();
    eventually(Duration::from_secs(30), "an empty backlog", || {
        let c = c.clone();
        async move { c.status().await.ok().filter(|s| s.backlog_agents == 0) }
    })
    .await;
    let mongo = mongo.expect("a MongoDB");
    let db = mongo.db().await;
    for (a, acked) in &l.agents {
        if acked.version == 0 {
            continue;
        }
        let d = db
            .collection::<Document>("agent_states")
            .find_one(doc! { "_id": a })
            .await
            .unwrap();
        let d = d.unwrap_or_else(|| panic!("{a} missing in MongoDB"));
        assert!(
            d.get_i64("version").unwrap() as u64 >= acked.version,
            "{a} behind in MongoDB"
        );
        let n = db
            .collection::<Document>("conversation_history")
            .count_documents(doc! { "agent_id": a, "seq": { "$in": acked.messages.keys().map(|s| *s as i64).collect::<Vec<_>>() } })
            .await
            .unwrap();
        assert_eq!(n as usize, acked.messages.len(), "{a} messages in MongoDB");
    }
    for id in l.transfers_acked.keys() {
        let t = db
            .collection::<Document>("transfers")
            .find_one(doc! { "_id": id })
            .await
            .unwrap();
        assert!(t.is_some(), "transfer {id} missing in MongoDB");
    }
}
