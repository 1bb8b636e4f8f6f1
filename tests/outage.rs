//! A MongoDB outage under steady load: writers keep sending saves and message appends at
//! a fixed pace while MongoDB is killed (`kill -9`) and stays down. The sidecar must keep
//! acknowledging writes until its backlog reaches `--backlog-bytes-max`, then refuse
//! them with 503 and `Retry-After` (and go unready) while its memory stays flat; reads go
//! on. Once MongoDB is back, the backlog drains, writes are acknowledged again, and every
//! acknowledged write is in MongoDB: each agent's last state, each message at the
//! sequence number it was acknowledged with.
//!
//! `AGENTSTATE_OUTAGE_SECS` (default 6) sets how long MongoDB stays down,
//! `AGENTSTATE_OUTAGE_BACKLOG_BYTES` (default 262144) the backlog bound. The long run:
//! `AGENTSTATE_OUTAGE_SECS=600 AGENTSTATE_OUTAGE_BACKLOG_BYTES=67108864 cargo test -p
//! agentstate --release --test outage -- --nocapture`.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentstate_protocol::{
    Client, ClientError, ErrorCode, NewMessage, SaveStateRequest, StatePersistence,
};
use common::{env_or, eventually, find_all, mongo_log, raw, Mongo, Sidecar};
use mongodb::bson::doc;
use serde_json::json;

const WRITERS: usize = 4;
const AGENTS_PER_WRITER: usize = 10;
/// Pause between a writer's calls: about 100 calls per second per writer.
const PACE: Duration = Duration::from_millis(10);
/// Bytes of padding in each save's data and each message.
const PAD_BYTES: usize = 1024;
/// RSS may grow this much (ratio, or bytes if more) between the backlog reaching its
/// bound and the end of the outage: allocator noise, not a leak.
const RSS_FLAT_RATIO: f64 = 0.02;
const RSS_FLAT_BYTES: u64 = 1024 * 1024;

/// What one agent's writer was told.
#[derive(Debug, Default)]
struct AgentLedger {
    id: String,
    /// (seq, content) of every acknowledged message.
    messages: Vec<(u64, String)>,
    /// The last acknowledged write: version, and the data's `n` if it was a save.
    last: Option<(u64, Option<u64>)>,
}

#[derive(Default)]
struct Counters {
    acked: AtomicU64,
    /// 503 answers while MongoDB was down: the backlog is full.
    refused: AtomicU64,
    /// 503 answers while MongoDB was up: the backlog filled faster than this machine
    /// flushed it. A throughput figure (the load tool measures it), not a fault.
    refused_up: AtomicU64,
    /// When the first 503 came, as milliseconds since the run began (0: not yet).
    first_refusal_ms: AtomicU64,
    /// Set while MongoDB is down.
    down: AtomicBool,
    /// The slowest acknowledgement while MongoDB was down, in microseconds.
    slowest_down_us: AtomicU64,
}

async fn writer(
    w: usize,
    client: Client,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    started: Instant,
) -> Vec<AgentLedger> {
    let mut agents: Vec<AgentLedger> = (0..AGENTS_PER_WRITER)
        .map(|i| AgentLedger {
            id: format!("w{w}-a{i}"),
            ..Default::default()
        })
        .collect();
    let pad = "p".repeat(PAD_BYTES);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let a = &mut agents[i as usize % AGENTS_PER_WRITER];
        let sent = Instant::now();
        let result = if a.last.is_none() || i.is_multiple_of(2) {
            let req = SaveStateRequest {
                state_name: "working".into(),
                state_data: Some(json!({ "n": i, "pad": pad })),
                ..Default::default()
            };
            client
                .save_state(&a.id, &req, None)
                .await
                .map(|v| (v, Some(i), None))
        } else {
            let content = format!("w{w}-{i} {pad}");
            let m = NewMessage {
                role: "user".into(),
                content: content.clone(),
                metadata: Default::default(),
            };
            client
                .append_messages(&a.id, vec![m], None)
                .await
                .map(|r| (r.version, None, Some((r.seqs[0], content))))
        };
        match result {
            Ok((version, n, message)) => {
                counters.acked.fetch_add(1, Ordering::Relaxed);
                if counters.down.load(Ordering::Relaxed) {
                    let us = sent.elapsed().as_micros() as u64;
                    counters.slowest_down_us.fetch_max(us, Ordering::Relaxed);
                }
                a.last = Some((version, n));
                a.messages.extend(message);
            }
            Err(e @ ClientError::Api { status: 503, .. }) => {
                assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e}");
                assert!(e.to_string().contains("backlog is full"), "{e}");
                if counters.down.load(Ordering::SeqCst) {
                    counters.refused.fetch_add(1, Ordering::Relaxed);
                    let at = started.elapsed().as_millis().max(1) as u64;
                    let _ = counters.first_refusal_ms.compare_exchange(
                        0,
                        at,
                        Ordering::SeqCst,
                        Ordering::SeqCst,
                    );
                } else {
                    counters.refused_up.fetch_add(1, Ordering::Relaxed);
                }
                // Half the writers wait as Retry-After says; the others keep their pace.
                if w.is_multiple_of(2) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            Err(e) => panic!("{}: unexpected answer: {e}", a.id),
        }
        tokio::time::sleep(PACE).await;
    }
    agents
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_mongodb_outage_under_load_loses_nothing_and_holds_memory_flat() {
    let outage = Duration::from_secs(env_or("AGENTSTATE_OUTAGE_SECS", 6));
    let backlog_max: u64 = env_or("AGENTSTATE_OUTAGE_BACKLOG_BYTES", 256 * 1024);
    let started = Instant::now();

    let mut mongo = Mongo::start_local("agentstate_long_outage".into());
    let dir = tempfile::tempdir().unwrap();
    let mut args = mongo.sidecar_args();
    args.extend([
        "--backlog-bytes-max".into(),
        backlog_max.to_string(),
        "--backend-timeout-ms".into(),
        "1000".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sidecar = Sidecar::start(&dir.path().join("data"), &args).await;
    let url = sidecar.url();

    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(writer(
                w,
                sidecar.client(),
                stop.clone(),
                counters.clone(),
                started,
            ))
        })
        .collect();

    // Steady load with MongoDB up, then the outage.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_before = sidecar.rss_bytes();
    let acked_before = counters.acked.load(Ordering::Relaxed);
    let refused_before = counters.refused_up.load(Ordering::Relaxed);
    mongo.kill9();
    counters.down.store(true, Ordering::SeqCst);
    let down = Instant::now();

    // RSS once the backlog is full and memory has settled, then its peak until MongoDB
    // returns.
    let settle = (outage / 5).min(Duration::from_secs(10));
    let mut full_at = None::<(Instant, u64)>;
    let mut rss_full = None::<u64>;
    let mut rss_peak = 0;
    let mut retry_after_seen = false;
    let mut last_report = Instant::now();
    while down.elapsed() < outage {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = sidecar.rss_bytes();
        let status = sidecar.client().status().await.unwrap();
        assert!(
            status.backlog_bytes <= backlog_max,
            "backlog over its bound: {status:?}"
        );
        let full = counters.first_refusal_ms.load(Ordering::SeqCst) > 0;
        if full {
            let (since, _) = *full_at.get_or_insert_with(|| {
                // Refused only once the bound is all but reached.
                assert!(
                    status.backlog_bytes + 4 * PAD_BYTES as u64 > backlog_max,
                    "refused before the bound: {status:?}"
                );
                (Instant::now(), down.elapsed().as_secs())
            });
            if rss_full.is_none() && since.elapsed() >= settle {
                rss_full = Some(rss);
            }
            if rss_full.is_some() {
                rss_peak = rss_peak.max(rss);
            }
            if !retry_after_seen {
                let body = format!(
                    r#"{{"state_name":"x","state_data":{{"pad":"{}"}}}}"#,
                    "p".repeat(PAD_BYTES)
                );
                let r = raw(
                    "PUT",
                    &format!("{url}/v1/agents/probe"),
                    &[("content-type", "application/json")],
                    body,
                )
                .await;
                assert_eq!(r.status, 503);
                assert_eq!(r.headers["retry-after"], "1");
                let ready = raw("GET", &format!("{url}/readyz"), &[], "").await;
                assert_eq!(ready.status, 503);
                retry_after_seen = true;
            }
        }
        // Reads go on.
        let s = sidecar.client().load_state("w0-a0").await.unwrap().unwrap();
        assert_eq!(s.state_name, "working");
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            eprintln!(
                "outage {:>4} s: backlog {:.1} MiB, RSS {:.1} MiB, acked {}, refused {}",
                down.elapsed().as_secs(),
                mib(status.backlog_bytes),
                mib(rss),
                counters.acked.load(Ordering::Relaxed),
                counters.refused.load(Ordering::Relaxed)
            );
        }
    }
    let rss_end = sidecar.rss_bytes();
    let acked_down = counters.acked.load(Ordering::Relaxed) - acked_before;
    let refused = counters.refused.load(Ordering::Relaxed);
    let (_, full_after_s) = full_at.expect("the backlog reached its bound during the outage");
    let rss_full = rss_full.expect("the outage lasted past the bound and the settling time");
    assert!(retry_after_seen);

    // MongoDB returns: the backlog drains and writes are acknowledged again.
    mongo.restart();
    counters.down.store(false, Ordering::SeqCst);
    let back = Instant::now();
    let status = eventually(Duration::from_secs(1800), "the backlog drained", || {
        let c = sidecar.client();
        async move {
            c.status()
                .await
                .ok()
                .filter(|s| s.backlog_bytes < backlog_max / 2 && s.backend_reachable)
        }
    })
    .await;
    let drained_after = back.elapsed();
    let acked_back = counters.acked.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        counters.acked.load(Ordering::Relaxed) > acked_back,
        "writes acknowledged again after MongoDB returned: {status:?}"
    );
    stop.store(true, Ordering::SeqCst);
    let mut ledgers = Vec::new();
    for w in writers {
        ledgers.extend(w.await.expect("writer panicked"));
    }
    eventually(Duration::from_secs(600), "an empty backlog", || {
        let c = sidecar.client();
        async move { c.status().await.ok().filter(|s| s.backlog_agents == 0) }
    })
    .await;

    // Every acknowledged write is in MongoDB.
    let db = mongo.db().await;
    let mut messages = 0;
    for a in &ledgers {
        let (version, n) = a.last.expect("every agent written");
        let d = find_all(&db, "agent_states", doc! { "_id": &a.id }).await;
        let d = d
            .first()
            .unwrap_or_else(|| panic!("{} not in MongoDB", a.id));
        assert_eq!(d.get_i64("version").unwrap() as u64, version, "{}", a.id);
        if let Some(n) = n {
            let data = d.get_document("state_data").unwrap();
            assert_eq!(data.get_i64("n").unwrap() as u64, n, "{}", a.id);
        }
        let stored = mongo_log(&db, "conversation_history", &a.id, "content").await;
        for (seq, content) in &a.messages {
            assert_eq!(stored.get(seq), Some(content), "{} message {seq}", a.id);
            messages += 1;
        }
    }
    let growth = rss_peak as f64 / rss_full as f64 - 1.0;
    eprintln!(
        "outage: MongoDB down {} s under load, backlog bound {:.1} MiB reached after {full_after_s} s; \
         acked {acked_down} while down (slowest {:.1} ms), then {refused} refused (503, Retry-After: 1); \
         RSS {:.1} MiB before, {:.1} MiB {:?} after the bound, peak {:.1} MiB ({:+.1}%), {:.1} MiB at the end of the outage; \
         drained below half the bound {:.1} s after MongoDB returned; \
         refused while MongoDB was up: {refused_before} before the outage, {} after it (the backlog full, draining); \
         {} acknowledged writes in all, {messages} of them messages, all in MongoDB ({:?} in all)",
        outage.as_secs(),
        mib(backlog_max),
        counters.slowest_down_us.load(Ordering::Relaxed) as f64 / 1000.0,
        mib(rss_before),
        mib(rss_full),
        settle,
        mib(rss_peak),
        growth * 100.0,
        mib(rss_end),
        drained_after.as_secs_f64(),
        counters.refused_up.load(Ordering::Relaxed) - refused_before,
        counters.acked.load(Ordering::Relaxed),
        started.elapsed(),
    );
    let allowed = (rss_full as f64 * RSS_FLAT_RATIO).max(RSS_FLAT_BYTES as f64);
    assert!(
        (rss_peak.saturating_sub(rss_full) as f64) <= allowed,
        "RSS grew {:.1}% while writes were refused ({:.1} -> {:.1} MiB)",
        growth * 100.0,
        mib(rss_full),
        mib(rss_peak)
    );
}
