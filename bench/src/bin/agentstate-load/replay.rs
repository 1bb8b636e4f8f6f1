//! `replay`: N records left in the WAL, `kill -9`, restart: the replay rate (from the
//! sidecar's "WAL replayed" log line) and the time to ready.

use std::time::Instant;

use agentstate_bench::probe::{self, CpuSnapshot};
use agentstate_bench::report::{mib, Verdict};
use agentstate_bench::sample;
use agentstate_protocol::{Durability, StatePersistence};
use anyhow::Context;
use serde_json::json;

use crate::ctx::{cpu_line, Ctx};
use crate::targets::{self, Id};

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("WAL replay at start-up");
    let cpu = CpuSnapshot::take();
    // No flush while the records are written: they must all be in the WAL at the kill.
    let mut s = ctx
        .start_sidecar(
            "replay",
            false,
            &[
                "--flush-interval-ms",
                "3600000",
                "--flush-batch-max",
                "1000000",
                "--backlog-bytes-max",
                "17179869184",
            ],
        )
        .await?;
    let clients = ctx.args.clients;
    let per_client = ctx.args.replay_records.div_ceil(clients as u64);
    let memory = s.client().with_durability(Durability::Memory);
    let req = sample::save_request(ctx.args.replay_state_bytes);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (client, req) = (memory.clone(), req.clone());
            tokio::spawn(async move {
                let id = format!("replay-{i}");
                for _ in 0..per_client {
                    client.save_state(&id, &req, None).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await.context("writer task")??;
    }
    // A local write: once it is durable, every record before it is on disk too.
    s.client().save_state("replay-last", &req, None).await?;
    let written = started.elapsed();
    let status = s.client().status().await?;
    let rss_before = s.rss_kib().unwrap_or(0);
    let ready = s.restart().await?;
    let fields = probe::last_log_fields(&s.log(), "WAL replayed");
    let records = fields.as_ref().and_then(|f| f["records"].as_u64());
    let elapsed_ms = fields.as_ref().and_then(|f| f["elapsed_ms"].as_u64());
    let rss_after = s.rss_kib().unwrap_or(0);
    ctx.report.line(format!(
        "wrote {} records ({} B of WAL, {:.0} B/record) in {:.1} s ({:.0}/s, {clients} clients, \
         durability memory); RSS before kill -9 {}; restart to /readyz {} ms; RSS after replay {}.",
        status.wal_last_lsn,
        status.wal_bytes,
        status.wal_bytes as f64 / status.wal_last_lsn.max(1) as f64,
        written.as_secs_f64(),
        status.wal_last_lsn as f64 / written.as_secs_f64(),
        mib(rss_before),
        ready.as_millis(),
        mib(rss_after)
    ));
    match (records, elapsed_ms) {
        (Some(n), Some(ms)) => {
            let rate = n as f64 / (ms.max(1) as f64 / 1000.0);
            ctx.report.line(format!(
                "log: \"WAL replayed\" records={n} elapsed_ms={ms}: {rate:.0} records/s \
                 (spawn to ready: {:.0} records/s)",
                n as f64 / ready.as_secs_f64()
            ));
            ctx.report.json.insert(
                "replay".into(),
                json!({"records": n, "elapsed_ms": ms, "records_per_sec": rate,
                       "ready_ms": ready.as_millis() as u64, "wal_bytes": status.wal_bytes,
                       "rss_before_kib": rss_before, "rss_after_kib": rss_after}),
            );
            targets::record(
                &mut ctx.report,
                Id::ReplayRate,
                format!("{rate:.0} records/s ({n} records in {ms} ms)"),
                Verdict::of(rate >= 1_000_000.0),
            );
        }
        _ => targets::not_measured(
            &mut ctx.report,
            Id::ReplayRate,
            "no \"WAL replayed\" line with records and elapsed_ms in the log",
        ),
    }
    // Before the sidecar goes: a dead process's CPU time would count as "other". (The
    // instance killed above already counts there.)
    cpu_line(ctx, "replay", &cpu);
    Ok(())
}
