//! `mix`: Greeter conversations (save, transition, append, load, transfer) at each
//! `--concurrency`, through the sidecar and as direct journaled MongoDB writes.

use std::collections::BTreeMap;
use std::time::Duration;

use agentstate_bench::report::{us, Verdict};
use agentstate_bench::stats::Summary;
use agentstate_bench::workload::{self, Target, MIX_OPS};
use agentstate_protocol::Client;
use serde_json::json;

use crate::ctx::{drain, print_errors, summaries_json, summary_row, Ctx};
use crate::targets::{self, Id};

pub async fn run(ctx: &mut Ctx, url: &str) -> anyhow::Result<()> {
    ctx.report
        .section("Mixed agent workload (Greeter conversations)");
    ctx.report.line(format!(
        "Each cycle: save, transition, {} x (append 2 messages, load, save, transition), \
         transfer to a new haiku agent. state_data ~{} B. Sidecar: MessagePack, durability \
         local. Direct: MongoDB driver, w:1 j:true, one write per change. {} s per run.",
        workload::TURNS,
        ctx.args.state_bytes,
        ctx.args.duration_secs
    ));
    ctx.report.line("");
    ctx.report
        .line("| system | clients | op | ops/s | p50 | p99 | p99.9 | count |");
    ctx.report.line("|---|---|---|---|---|---|---|---|");
    let client = Client::new(url).with_timeout(Duration::from_secs(30));
    let direct_db = ctx
        .mongo_client
        .as_ref()
        .map(|c| c.database(&format!("agentstate_direct_{}", ctx.nonce)));
    let mut json_rows = Vec::new();
    let concurrency = ctx.args.concurrency.clone();
    let c_max = concurrency.iter().copied().max().unwrap_or(1);
    let mut save_ratio = Vec::new();
    for &c in &concurrency {
        let mut systems = vec![("sidecar", Target::Sidecar(client.clone()))];
        if let Some(db) = &direct_db {
            systems.push(("direct MongoDB", Target::Mongo(db.clone())));
        }
        let mut save_p50 = BTreeMap::new();
        for (system, target) in systems {
            let tag = format!("mix-{}-{c}-{}", ctx.nonce, system.len());
            let bytes = ctx.args.state_bytes;
            let r = workload::run_clients(c, ctx.duration(), |i, deadline| {
                workload::mix_client(target.clone(), tag.clone(), i, deadline, bytes)
            })
            .await;
            for op in MIX_OPS {
                if let Some(row) = summary_row(system, c, &r, op) {
                    ctx.report.line(row);
                }
            }
            ctx.report.line(format!(
                "| {system} | {c} | **all** | **{:.0}** | {} | {} | {} | {} |",
                r.ops_per_sec(),
                us(Summary::of(&r.rec.combined()).p50_us),
                us(Summary::of(&r.rec.combined()).p99_us),
                us(Summary::of(&r.rec.combined()).p999_us),
                r.rec.total_ops()
            ));
            print_errors(&mut ctx.report, system, &r.rec);
            if let Some(h) = r.rec.ops.get(workload::OP_SAVE) {
                save_p50.insert(system, Summary::of(h).p50_us);
            }
            let series = if system == "sidecar" {
                "sidecar: mixed workload"
            } else {
                "direct MongoDB: mixed workload"
            };
            ctx.report
                .throughput
                .entry(series)
                .or_default()
                .push((c as f64, r.ops_per_sec()));
            if c == c_max {
                ctx.report.latency_title =
                    format!("Latency distribution, mixed workload, {c_max} clients");
                for (i, op) in MIX_OPS.iter().enumerate() {
                    if let Some(h) = r.rec.ops.get(op) {
                        ctx.report.latency.push((
                            format!("{system}: {op}"),
                            i,
                            system != "sidecar",
                            h.clone(),
                        ));
                    }
                }
            }
            json_rows.push(json!({"system": system, "clients": c, "result": summaries_json(&r)}));
            if system == "sidecar" {
                drain(&client).await?;
            }
        }
        if let (Some(s), Some(m)) = (save_p50.get("sidecar"), save_p50.get("direct MongoDB")) {
            save_ratio.push((c, *s, *m));
        }
    }
    ctx.report.json.insert("mix".into(), json!(json_rows));
    ctx.report.line("");
    if save_ratio.is_empty() {
        let why = ctx.mongo_missing.clone().unwrap_or_default();
        targets::not_measured(
            &mut ctx.report,
            Id::SaveVsDirect,
            format!("no MongoDB ({why})"),
        );
    }
    for (c, s, m) in save_ratio {
        targets::record(
            &mut ctx.report,
            Id::SaveVsDirect,
            format!("{c} clients: {} vs {} = {:.3}x", us(s), us(m), s / m),
            Verdict::of(s / m <= 0.25),
        );
    }
    Ok(())
}
