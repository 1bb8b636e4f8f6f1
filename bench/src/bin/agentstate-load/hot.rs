//! `hot`: many saves to a few agents on a MongoDB-backed sidecar of its own; the
//! documents it writes to MongoDB against the updates.

use agentstate_bench::probe::{self, CpuSnapshot};
use agentstate_bench::report::Verdict;
use agentstate_bench::sample;
use agentstate_bench::workload;
use agentstate_protocol::StatePersistence;
use serde_json::json;

use crate::ctx::{cpu_line, drain, print_errors, summaries_json, Ctx};
use crate::targets::{self, Id};

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("Hot agents: MongoDB writes vs updates");
    let cpu = CpuSnapshot::take();
    let Some(mongo) = ctx.mongo_client.clone() else {
        let why = format!(
            "no MongoDB: {}",
            ctx.mongo_missing.as_deref().unwrap_or("?")
        );
        targets::not_measured(&mut ctx.report, Id::HotDocs, why);
        return Ok(());
    };
    let sidecar = ctx.start_sidecar("hot", true, &[]).await?;
    let proc_ = Some(&sidecar);
    let client = sidecar.client();
    let hot: Vec<String> = (0..ctx.args.hot_agents)
        .map(|i| format!("hot-{}-{i}", ctx.nonce))
        .collect();
    let req = sample::save_request(ctx.args.state_bytes);
    for id in &hot {
        client.save_state(id, &req, None).await?;
    }
    drain(&client).await?;
    let metrics = || async {
        match proc_ {
            Some(s) => probe::metrics(s.addr).await,
            None => None,
        }
    };
    let m0 = metrics().await;
    let ops0 = probe::opcounters(&mongo).await;
    let clients = ctx.args.clients;
    let r = workload::run_clients(clients, ctx.duration(), |i, deadline| {
        let hot = hot.clone();
        workload::save_client(client.clone(), i, deadline, req.clone(), move |i, k| {
            hot[(i + k as usize) % hot.len()].clone()
        })
    })
    .await;
    drain(&client).await?;
    let m1 = metrics().await;
    let ops1 = probe::opcounters(&mongo).await;
    print_errors(&mut ctx.report, "hot saves", &r.rec);
    let updates = r.rec.total_ops() as f64;
    let secs = r.elapsed.as_secs_f64();
    let flushed = m0.zip(m1).and_then(|(a, b)| {
        let d = |n| Some(b.sum(n)? - a.sum(n)?);
        Some((
            d("agentstate_flush_batch_agents_sum")?,
            d("agentstate_flush_batches_total")?,
            d("agentstate_flush_duration_seconds_sum")?
                / d("agentstate_flush_duration_seconds_count")?.max(1.0),
        ))
    });
    let server_writes = ops0
        .zip(ops1)
        .map(|(a, b)| ((b.0 - a.0) + (b.1 - a.1) + (b.2 - a.2)) as f64);
    ctx.report.line(format!(
        "{clients} clients saving {} agents for {secs:.1} s: {updates:.0} updates ({:.0}/s).",
        hot.len(),
        updates / secs
    ));
    if let Some((docs, batches, mean_s)) = flushed {
        ctx.report.line(format!(
            "sidecar flushed {docs:.0} agent-state documents in {batches:.0} flush batches, \
             {:.1} agents per batch, mean flush {:.1} ms (/metrics \
             agentstate_flush_batch_agents_sum, agentstate_flush_batches_total, \
             agentstate_flush_duration_seconds); flush interval 100 ms.",
            docs / batches.max(1.0),
            mean_s * 1000.0
        ));
    }
    if let Some(w) = server_writes {
        ctx.report.line(format!(
            "MongoDB serverStatus opcounters insert+update+delete grew by {w:.0} (SecantusDB \
             counts write commands; mongod counts statements)"
        ));
    }
    ctx.report.json.insert(
        "hot".into(),
        json!({"clients": clients, "agents": hot.len(), "updates": updates, "seconds": secs,
               "flushed_docs": flushed.map(|f| f.0), "flush_batches": flushed.map(|f| f.1),
               "flush_mean_s": flushed.map(|f| f.2),
               "opcounters_writes": server_writes, "save": summaries_json(&r)}),
    );
    // Documents written is the stricter count (a command carries many statements).
    let writes = flushed.map(|f| f.0).or(server_writes);
    let counted = if flushed.is_some() {
        "documents"
    } else {
        "write commands (no /metrics)"
    };
    match writes {
        Some(w) => targets::record_sized(
            &mut ctx.report,
            Id::HotDocs,
            format!(
                "{w:.0} {counted} for {updates:.0} updates = 1/{:.1}",
                updates / w.max(1.0)
            ),
            Verdict::of(w * 50.0 <= updates),
            &[
                ("--clients", clients, targets::CLIENTS),
                ("--hot-agents", hot.len(), targets::HOT_AGENTS),
            ],
        ),
        None => targets::not_measured(
            &mut ctx.report,
            Id::HotDocs,
            "no /metrics or serverStatus figures",
        ),
    }
    // Before the sidecar goes: a dead process's CPU time would count as "other".
    cpu_line(ctx, "hot", &cpu);
    Ok(())
}
