//! Lease hand-over under load: two sidecars on one MongoDB database, writers sending a
//! steady mix of saves, message appends and transitions to whichever sidecar serves
//! their agents. Each round the serving sidecar is killed (`kill -9`) mid-load; the
//! writers move to the other, which is refused (409, the agent's owner named) until the
//! dead sidecar's leases expire, then takes the agents over. The killed sidecar restarts
//! on its data dir and replays its WAL: what it acknowledged but had not flushed was
//! written under a lease since lost, so it must be fenced off and kept in
//! `agent_state_conflicts`, never written over the new owner's.
//!
//! At the end, once both backlogs are empty, every acknowledged message and transition
//! must be in MongoDB at the sequence number it was acknowledged with, or kept in
//! `agent_state_conflicts` (only a killed sidecar's unflushed writes at `local`
//! durability may be there; a `remote` write was in MongoDB before it was acknowledged).
//! Nothing else may be in MongoDB's logs but what was acknowledged or cut off by a kill,
//! the logs have no gaps, and each agent's state is the last one acknowledged (or, for a
//! `local` state acknowledged before its sidecar was killed, kept aside whole).
//!
//! `AGENTSTATE_HANDOVER_ROUNDS` (default 2) hand-overs, `AGENTSTATE_HANDOVER_SECS`
//! (default 2) seconds of load before each kill and after each take-over,
//! `AGENTSTATE_HANDOVER_LEASE_MS` (default 1500) the lease; e.g. the long run
//! `AGENTSTATE_HANDOVER_ROUNDS=10 AGENTSTATE_HANDOVER_SECS=60
//! AGENTSTATE_HANDOVER_LEASE_MS=15000 cargo test -p agentstate --test handover --
//! --nocapture`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentstate_protocol::{
    Client, ClientError, Durability, ErrorCode, NewMessage, SaveStateRequest, StatePersistence,
    TransitionRequest,
};
use common::{env_or, eventually, find_all, mongo_log, seed, Mongo, Sidecar};
use mongodb::bson::{doc, Bson, Document};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::json;

const WRITERS: usize = 6;
const AGENTS_PER_WRITER: usize = 4;
/// Pause between a writer's calls: a steady load, not a saturating one.
const PACE: Duration = Duration::from_millis(5);

/// What one agent's writer was told.
#[derive(Debug, Default)]
struct AgentLedger {
    id: String,
    /// (seq, content, sidecar that acknowledged it). A seq may be acknowledged twice: by
    /// a sidecar killed before it flushed, and by the one that took the agent over.
    messages: Vec<(u64, String, usize)>,
    /// (seq, trigger, sidecar)
    transitions: Vec<(u64, String, usize)>,
    /// Contents and triggers of calls that got no answer (cut off by a kill).
    unknown: HashSet<String>,
    /// The last acknowledged write: version, and the data's `n` if it is known.
    last: Option<(u64, Option<u64>)>,
    /// How many kills there had been when it was acknowledged. A `local` write that a
    /// sidecar acknowledged before it was killed may have been set aside with the rest
    /// of its unflushed writes, and the agent's next owner build on an older state.
    last_era: u64,
    /// The call that was acknowledged last, for a failure to name.
    last_call: String,
    /// Calls since the last acknowledgement that got no answer, each of which may have
    /// been applied (a kill cut it off, or a `remote` write timed out waiting for its
    /// flush: 503, yet in the WAL): the served version may be above `last` by as many.
    unanswered: Vec<String>,
    /// Calls since the last acknowledgement refused before anything was logged (never
    /// applied): named in a failure, to tell a refused write applied from a cut-off one.
    refused: Vec<String>,
    /// Whether this agent's writes were acknowledged at `remote` durability.
    remote: bool,
    /// The agent was gone (its creation set aside): the next call creates it again.
    recreate: bool,
}

/// Counts shared by the writers and the run.
#[derive(Default)]
struct Counters {
    acked: [AtomicU64; 2],
    /// Refused with 409 because the other sidecar held the agent's lease.
    refused: AtomicU64,
    unknown: AtomicU64,
    /// Sidecars killed so far; raised before the writers are sent to the other one.
    kills: AtomicU64,
    /// Acknowledgements since the last switch of sidecar.
    since_switch: AtomicU64,
}

enum Outcome {
    Acked {
        version: u64,
        seq: Option<u64>,
    },
    /// Certainly not applied: refused before anything was logged.
    Refused,
    /// The agent is not there: the sidecar that created it was killed before it
    /// flushed it, and its `local` writes were set aside. Not applied either.
    Gone,
    /// Cut off, or timed out after it was logged: applied or not. Says why.
    Unknown(String),
}

fn outcome<T>(
    r: Result<T, ClientError>,
    remote: bool,
    acked: impl FnOnce(T) -> (u64, Option<u64>),
) -> Outcome {
    match r {
        Ok(v) => {
            let (version, seq) = acked(v);
            Outcome::Acked { version, seq }
        }
        Err(e) if e.code() == Some(ErrorCode::Conflict) => {
            assert!(e.to_string().contains("is owned by sidecar"), "{e}");
            Outcome::Refused
        }
        // Taken over while it still held unflushed changes from its earlier lease.
        Err(e) if e.to_string().contains("changed owners") => Outcome::Refused,
        // A `remote` write was in MongoDB before it was acknowledged: never gone.
        Err(e) if e.code() == Some(ErrorCode::NotFound) && !remote => Outcome::Gone,
        // A lost connection, or a `remote` write that timed out (it stays in the WAL).
        Err(e @ ClientError::Api { .. }) if !matches!(e, ClientError::Api { status: 503, .. }) => {
            panic!("unexpected refusal: {e}")
        }
        Err(e) => Outcome::Unknown(e.to_string()),
    }
}

async fn writer(
    w: usize,
    urls: [String; 2],
    target: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    seed: u64,
) -> Vec<AgentLedger> {
    let remote = w % 2 == 1;
    let durability = if remote {
        Durability::Remote
    } else {
        Durability::Local
    };
    let clients = urls.map(|u| {
        Client::new(u)
            .with_timeout(Duration::from_secs(5))
            .with_durability(durability)
    });
    let mut rng = StdRng::seed_from_u64(seed ^ w as u64);
    let mut agents: Vec<AgentLedger> = (0..AGENTS_PER_WRITER)
        .map(|i| AgentLedger {
            id: format!("w{w}-a{i}"),
            remote,
            ..Default::default()
        })
        .collect();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        // Target first: a writer sent to the new sidecar sees the kill that moved it.
        let to = target.load(Ordering::SeqCst);
        let era = counters.kills.load(Ordering::SeqCst);
        let client = &clients[to];
        let a = &mut agents[(i as usize) % AGENTS_PER_WRITER];
        let tag = format!("w{w}-{i}");
        // The first call to each agent creates it, as does the first after it was gone.
        let kind = if a.last.is_none() || std::mem::take(&mut a.recreate) {
            0
        } else {
            rng.gen_range(0..10)
        };
        let what = match kind {
            0..=3 => "save",
            4..=7 => "append",
            _ => "transition",
        };
        let (result, data_n) = match kind {
            0..=3 => {
                let req = SaveStateRequest {
                    state_name: "idle".into(),
                    state_data: Some(json!({ "n": i, "w": w })),
                    ..Default::default()
                };
                let r = client.save_state(&a.id, &req, None).await;
                (outcome(r, remote, |v| (v, None)), Some(i))
            }
            4..=7 => {
                let m = NewMessage {
                    role: "user".into(),
                    content: tag.clone(),
                    metadata: Default::default(),
                };
                let r = client.append_messages(&a.id, vec![m], None).await;
                (outcome(r, remote, |r| (r.version, Some(r.seqs[0]))), None)
            }
            _ => {
                let t = TransitionRequest {
                    to_state: format!("s{}", i % 3),
                    trigger: tag.clone(),
                    state_data: None,
                };
                let r = client.record_transition(&a.id, &t).await;
                (
                    outcome(r, remote, |r| (r.version, Some(r.transition.seq))),
                    None,
                )
            }
        };
        match result {
            Outcome::Acked { version, seq } => {
                counters.acked[to].fetch_add(1, Ordering::Relaxed);
                counters.since_switch.fetch_add(1, Ordering::Relaxed);
                if let Some(seq) = seq {
                    let log = if kind <= 7 {
                        &mut a.messages
                    } else {
                        &mut a.transitions
                    };
                    log.push((seq, tag.clone(), to));
                }
                // An append or a transition keeps the data of the last save: surely
                // so if that save is in MongoDB (`remote`) or came from this sidecar
                // since the last kill.
                let kept = match a.last {
                    Some((_, n)) if a.remote || a.last_era == era => n,
                    _ => None,
                };
                a.last = Some((version, data_n.or(kept)));
                a.last_era = era;
                a.last_call = format!("{what} {tag} by sidecar {to}");
                a.unanswered.clear();
                a.refused.clear();
            }
            Outcome::Refused => {
                counters.refused.fetch_add(1, Ordering::Relaxed);
                a.refused.push(format!("{what} {tag} to sidecar {to}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Outcome::Gone => {
                a.recreate = true;
                a.refused
                    .push(format!("{what} {tag} to sidecar {to}: gone"));
            }
            Outcome::Unknown(why) => {
                counters.unknown.fetch_add(1, Ordering::Relaxed);
                a.unanswered
                    .push(format!("{what} {tag} to sidecar {to}: {why}"));
                a.unknown.insert(tag);
                if data_n.is_some() {
                    // The agent's data is now one of two: compare only later saves.
                    if let Some((_, n)) = &mut a.last {
                        *n = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(PACE).await;
    }
    agents
}

/// What one agent's fenced-off writes kept in `agent_state_conflicts` carry.
fn kept_aside(conflicts: &[Document]) -> HashSet<String> {
    let mut kept = HashSet::new();
    for c in conflicts {
        for (field, key) in [("messages", "content"), ("transitions", "trigger")] {
            for d in c.get_array(field).map(|a| a.as_slice()).unwrap_or(&[]) {
                if let Some(s) = d.as_document().and_then(|d| d.get_str(key).ok()) {
                    kept.insert(s.to_string());
                }
            }
        }
    }
    kept
}

#[derive(Debug, Default)]
struct Tally {
    acked: usize,
    in_mongo: usize,
    kept_aside: usize,
    lost: Vec<String>,
}

/// Every acknowledged entry of one log is in MongoDB at its seq or kept aside; MongoDB's
/// log has no gaps and nothing that was not acknowledged or cut off.
fn check_log(
    what: &str,
    a: &AgentLedger,
    acked: &[(u64, String, usize)],
    stored: &BTreeMap<u64, String>,
    kept: &HashSet<String>,
    tally: &mut Tally,
) {
    for (seq, tag, by) in acked {
        tally.acked += 1;
        if stored.get(seq) == Some(tag) {
            tally.in_mongo += 1;
        } else if kept.contains(tag) && !a.remote {
            tally.kept_aside += 1;
        } else {
            tally.lost.push(format!(
                "{} {what} seq {seq} {tag:?} (acknowledged by sidecar {by}, remote: {}): MongoDB has {:?}",
                a.id,
                a.remote,
                stored.get(seq)
            ));
        }
    }
    let acked_tags: HashSet<&String> = acked.iter().map(|(_, t, _)| t).collect();
    for (seq, tag) in stored {
        assert!(
            acked_tags.contains(tag) || a.unknown.contains(tag),
            "{} {what} seq {seq} {tag:?} is in MongoDB but was never acknowledged",
            a.id
        );
    }
    let seqs: Vec<u64> = stored.keys().copied().collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "{} {what}: gaps in MongoDB's log", a.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_over_under_load_loses_and_overwrites_nothing() {
    let rounds: usize = env_or("AGENTSTATE_HANDOVER_ROUNDS", 2);
    let secs: f64 = env_or("AGENTSTATE_HANDOVER_SECS", 2.0);
    let lease_ms: u64 = env_or("AGENTSTATE_HANDOVER_LEASE_MS", 1500);
    let seed = seed("handover");
    let load = Duration::from_secs_f64(secs);
    let started = Instant::now();

    let mongo = Mongo::start("handover");
    let dir = tempfile::tempdir().unwrap();
    let lease = lease_ms.to_string();
    let mut args = mongo.sidecar_args();
    args.extend(["--lease-ms".into(), lease]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut sidecars = [
        Sidecar::start(&dir.path().join("a"), &args).await,
        Sidecar::start(&dir.path().join("b"), &args).await,
    ];
    let urls = [sidecars[0].url(), sidecars[1].url()];

    let target = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                w,
                urls.clone(),
                target.clone(),
                stop.clone(),
                counters.clone(),
                seed,
            ))
        })
        .collect();

    let mut takeovers = Vec::new();
    for round in 0..rounds {
        let (from, to) = (round % 2, 1 - round % 2);
        tokio::time::sleep(load).await;
        let acked_before = counters.acked[from].load(Ordering::Relaxed);
        assert!(acked_before > 0, "round {round}: no load on sidecar {from}");
        // Kill at a moment that varies with the seed, mid-load.
        let jitter = StdRng::seed_from_u64(seed ^ round as u64).gen_range(0..100);
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        sidecars[from].kill9();
        let killed = Instant::now();
        counters.kills.fetch_add(1, Ordering::SeqCst);
        counters.since_switch.store(0, Ordering::SeqCst);
        target.store(to, Ordering::SeqCst);
        // Every writer gets through once the dead sidecar's leases expire.
        eventually(
            Duration::from_millis(lease_ms) * 3 + Duration::from_secs(10),
            "the other sidecar takes the agents over",
            || {
                let n = counters.since_switch.load(Ordering::Relaxed);
                async move { (n >= (WRITERS * AGENTS_PER_WRITER) as u64).then_some(()) }
            },
        )
        .await;
        takeovers.push(killed.elapsed());
        sidecars[from].restart().await;
        tokio::time::sleep(load).await;
        eprintln!(
            "handover round {round}: sidecar {from} killed, {to} serving after {:?}; acked {:?}, refused {}, cut off {}",
            killed.elapsed().saturating_sub(load),
            counters.acked.iter().map(|c| c.load(Ordering::Relaxed)).collect::<Vec<_>>(),
            counters.refused.load(Ordering::Relaxed),
            counters.unknown.load(Ordering::Relaxed),
        );
    }
    stop.store(true, Ordering::SeqCst);
    let mut ledgers = Vec::new();
    for w in writers {
        ledgers.extend(w.await.expect("writer panicked"));
    }

    // Both sidecars flush what they hold (the restarted one: its fenced-off writes).
    for s in &sidecars {
        eventually(Duration::from_secs(60), "an empty backlog", || {
            let c = s.client();
            async move {
                c.status()
                    .await
                    .ok()
                    .filter(|s| s.backlog_agents == 0 && s.backend_reachable)
            }
        })
        .await;
    }

    let db = mongo.db().await;
    let owner = &sidecars[rounds % 2];
    let mut messages = Tally::default();
    let mut transitions = Tally::default();
    for a in &ledgers {
        let conflicts = find_all(&db, "agent_state_conflicts", doc! { "agent_id": &a.id }).await;
        let kept = kept_aside(&conflicts);
        let stored = mongo_log(&db, "conversation_history", &a.id, "content").await;
        check_log("message", a, &a.messages, &stored, &kept, &mut messages);
        let stored = mongo_log(&db, "state_transitions", &a.id, "trigger").await;
        check_log(
            "transition",
            a,
            &a.transitions,
            &stored,
            &kept,
            &mut transitions,
        );

        // The state is the last one acknowledged, in MongoDB and as the owner serves it.
        let (version, n) = a.last.expect("every agent written");
        // A `local` state acknowledged before its sidecar was killed may have been set
        // aside (kept whole: the conflict at its version holds its data), and the next
        // owner built on what that sidecar had flushed.
        if !a.remote && a.last_era < rounds as u64 {
            let mut set_aside = false;
            for c in &conflicts {
                let kept = c.get_i64("version").unwrap() as u64;
                set_aside |= kept >= version;
                if let (true, Some(n)) = (kept == version, n) {
                    let data = c.get_document("record").unwrap().get_document("state_data");
                    let kept_n = match data.unwrap().get("n") {
                        Some(Bson::Int32(n)) => Some(*n as u64),
                        Some(Bson::Int64(n)) => Some(*n as u64),
                        _ => None,
                    };
                    assert_eq!(
                        kept_n,
                        Some(n),
                        "{}: data set aside at version {kept}",
                        a.id
                    );
                }
            }
            if set_aside {
                continue;
            }
        }
        let d = find_all(&db, "agent_states", doc! { "_id": &a.id }).await;
        let d = d
            .first()
            .unwrap_or_else(|| panic!("{} not in MongoDB", a.id));
        let served = owner.client().load_state(&a.id).await.unwrap().unwrap();
        assert_eq!(
            d.get_i64("version").unwrap() as u64,
            served.version,
            "{}",
            a.id
        );
        // Each unanswered call since may have been applied, once.
        let most = version + a.unanswered.len() as u64;
        assert!(
            (version..=most).contains(&served.version),
            "{}: served version {}, but the last acknowledged call was version {version} \
             ({}), and only {} calls after it went unanswered: {:#?}; refused after it: {:?}",
            a.id,
            served.version,
            a.last_call,
            a.unanswered.len(),
            a.unanswered,
            a.refused
        );
        if let Some(n) = n {
            assert_eq!(served.state_data["n"], n, "{}: last saved data", a.id);
        }
    }
    let conflicts = find_all(&db, "agent_state_conflicts", doc! {}).await;
    eprintln!(
        "handover: seed {seed}, {rounds} rounds, {secs} s of load each side, lease {lease_ms} ms, {:?} in all; \
         take-over after the kill: {takeovers:?}; acknowledged by sidecar: {:?}, refused (409) {}, cut off {}; \
         messages {messages:?}; transitions {transitions:?}; {} records in agent_state_conflicts",
        started.elapsed(),
        counters.acked.iter().map(|c| c.load(Ordering::Relaxed)).collect::<Vec<_>>(),
        counters.refused.load(Ordering::Relaxed),
        counters.unknown.load(Ordering::Relaxed),
        conflicts.len(),
    );
    assert!(
        messages.lost.is_empty() && transitions.lost.is_empty(),
        "acknowledged writes lost or overwritten:\n{}",
        [messages.lost, transitions.lost].concat().join("\n")
    );
    assert!(
        counters.refused.load(Ordering::Relaxed) > 0,
        "no hand-over was refused before expiry"
    );
}
