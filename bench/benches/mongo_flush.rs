//! A flush batch to MongoDB against the same documents written one at a time, with the
//! official driver, the way the sidecar's MongoDB store writes: version-conditioned
//! upserts of agent states, `w: "majority", j: true`.
//!
//! - `mongo_flush/batch_docs={}/mode=transaction/sync_on_commit={}`: as `store::mongo`
//!   flushes a batch: one transaction that reads the stored versions, writes every
//!   record in one `update` command, marks every agent's lease document matching
//!   `{owner, epoch}` (the fence inside the write) and commits.
//! - `mongo_flush/batch_docs={}/mode=batched/sync_on_commit={}`: one `update` command
//!   carrying every statement (`ordered: false`) and no transaction, as flushes were
//!   written before the lease check moved into the write: the price of that check.
//! - `mongo_flush/batch_docs={}/mode=single/sync_on_commit={}`: one `updateOne` round trip
//!   per document, as an agent writing to MongoDB on every step would.
//!
//! Throughput is in documents. The server is `MONGODB_URI`, else SecantusDB started for
//! the run. SecantusDB ignores `j: true` unless started with `--sync-on-commit`, and with
//! it commits (and fsyncs) every statement of a batch on its own, unlike mongod's group
//! commit; `AGENTSTATE_BENCH_MONGO_SYNC=1` turns it on (and makes the single-write runs
//! take minutes). The names carry the setting: `.../sync_on_commit={}`. With no server
//! the group prints why and is skipped: no figure is better than a wrong one.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentstate_bench::{mongo_server::MongoServer, sample};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use mongodb::bson::{self, doc, Document};
use mongodb::options::{Acknowledgment, CollectionOptions, WriteConcern};

const BATCH_DOCS: [usize; 4] = [1, 10, 100, 1000];
/// Set to `1` to start SecantusDB with `--sync-on-commit`.
const SYNC_ENV: &str = "AGENTSTATE_BENCH_MONGO_SYNC";

fn majority_journaled() -> WriteConcern {
    WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .journal(true)
        .build()
}

/// The agent-state document of `agent` at `version`, as the sidecar stores it.
fn state_doc(agent: &str, version: i64, data: &Document) -> Document {
    doc! {
        "_id": agent, "agent_type": "greeter", "state_name": "greeting",
        "state_data": data.clone(), "conversation_context": bson::Bson::Null,
        "created_at": bson::DateTime::now(), "updated_at": bson::DateTime::now(),
        "version": version, "metadata": {}, "transition_seq": 1_i64, "message_seq": 0_i64,
    }
}

/// Lease documents owned by this run, epoch 1, for `agents`.
async fn hold_leases(db: &mongodb::Database, agents: &[String]) {
    let leases = db.collection::<Document>("agent_leases");
    for a in agents {
        leases
            .replace_one(
                doc! { "_id": a },
                doc! { "_id": a, "owner": "bench", "epoch": 1_i64, "expires_at": bson::DateTime::from_millis(bson::DateTime::now().timestamp_millis() + 86_400_000) },
            )
            .upsert(true)
            .await
            .expect("a lease document");
    }
}

/// One flush of `agents` at version `v` the way `store::mongo` writes one.
async fn flush_in_a_transaction(
    db: &mongodb::Database,
    agents: &[String],
    v: i64,
    data: &Document,
) {
    let mut session = db.client().start_session().await.expect("a session");
    session
        .start_transaction()
        .write_concern(majority_journaled())
        .await
        .expect("start a transaction");
    let mut stored = db
        .collection::<Document>("agent_states")
        .find(doc! { "_id": { "$in": agents } })
        .projection(doc! { "version": 1, "lease_epoch": 1 })
        .session(&mut session)
        .await
        .expect("read the stored versions");
    while stored
        .advance(&mut session)
        .await
        .expect("a stored version")
    {}
    let updates: Vec<Document> = agents
        .iter()
        .map(|a| doc! { "q": { "_id": a }, "u": state_doc(a, v, data), "upsert": true })
        .collect();
    let reply = db
        .run_command(doc! { "update": "agent_states", "updates": updates, "ordered": false })
        .session(&mut session)
        .await
        .expect("update command");
    assert!(reply.get_array("writeErrors").is_err(), "{reply}");
    let checks: Vec<Document> = agents
        .iter()
        .map(|a| {
            doc! {
                "q": { "_id": a, "owner": "bench", "epoch": 1_i64 },
                "u": { "$set": { "flushed_at": bson::DateTime::now() } },
            }
        })
        .collect();
    let reply = db
        .run_command(doc! { "update": "agent_leases", "updates": checks, "ordered": false })
        .session(&mut session)
        .await
        .expect("lease check");
    assert_eq!(
        reply
            .get_i32("n")
            .map(i64::from)
            .or_else(|_| reply.get_i64("n")),
        Ok(agents.len() as i64)
    );
    session.commit_transaction().await.expect("commit");
}

fn mongo_flush(c: &mut Criterion) {
    let sync = std::env::var(SYNC_ENV).is_ok_and(|v| v == "1");
    let server = match MongoServer::start(sync) {
        Ok(s) => s,
        Err(why) => {
            eprintln!("mongo_flush: SKIPPED, no MongoDB-wire server: {why}");
            return;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let db = match rt.block_on(async {
        let client = server.client().await?;
        let db = client.database("agentstate_bench");
        db.drop().await?;
        db.run_command(doc! { "ping": 1 }).await?;
        anyhow::Ok(db)
    }) {
        Ok(db) => db,
        Err(e) => {
            eprintln!(
                "mongo_flush: SKIPPED, {} does not answer: {e}",
                server.description
            );
            return;
        }
    };
    eprintln!("mongo_flush: server is {}", server.description);
    let data = match bson::to_bson(&sample::state_data(1024)) {
        Ok(bson::Bson::Document(d)) => d,
        _ => unreachable!("sample state_data is a JSON object"),
    };
    let states = db.collection_with_options::<Document>(
        "agent_states",
        CollectionOptions::builder()
            .write_concern(majority_journaled())
            .build(),
    );
    // Each write is a newer version, so every upsert really writes.
    let version = Arc::new(AtomicI64::new(1));

    let mut group = c.benchmark_group("mongo_flush");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for n in BATCH_DOCS {
        group.throughput(Throughput::Elements(n as u64));
        let agents: Vec<String> = (0..n).map(|i| format!("agent-{i}")).collect();

        let id = format!("batch_docs={n}/mode=batched/sync_on_commit={sync}");
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.to_async(&rt).iter(|| async {
                let v = version.fetch_add(1, Ordering::Relaxed);
                let updates: Vec<Document> = agents
                    .iter()
                    .map(|a| {
                        doc! {
                            "q": { "_id": a, "version": { "$lt": v } },
                            "u": state_doc(a, v, &data),
                            "upsert": true,
                        }
                    })
                    .collect();
                let reply = db
                    .run_command(doc! {
                        "update": "agent_states", "updates": updates, "ordered": false,
                        "writeConcern": { "w": "majority", "j": true },
                    })
                    .await
                    .expect("update command");
                assert!(reply.get_array("writeErrors").is_err(), "{reply}");
            })
        });

        let id = format!("batch_docs={n}/mode=transaction/sync_on_commit={sync}");
        rt.block_on(hold_leases(&db, &agents));
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.to_async(&rt).iter(|| async {
                let v = version.fetch_add(1, Ordering::Relaxed);
                flush_in_a_transaction(&db, &agents, v, &data).await;
            })
        });

        let id = format!("batch_docs={n}/mode=single/sync_on_commit={sync}");
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.to_async(&rt).iter(|| async {
                let v = version.fetch_add(1, Ordering::Relaxed);
                for a in &agents {
                    states
                        .replace_one(
                            doc! { "_id": a, "version": { "$lt": v } },
                            state_doc(a, v, &data),
                        )
                        .upsert(true)
                        .await
                        .expect("updateOne");
                }
            })
        });
    }
    group.finish();
    drop(rt);
    drop(server);
}

criterion_group!(benches, mongo_flush);
criterion_main!(benches);
