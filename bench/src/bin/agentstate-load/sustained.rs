//! `sustained`: saves of new agents for `--sustained-secs` on a sidecar with a small
//! cache bound, RSS sampled throughout: does memory level off once the cache is full?

use std::time::Duration;

use agentstate_bench::probe::RssSampler;
use agentstate_bench::report::mib;
use agentstate_bench::sample;
use agentstate_bench::sidecar_proc::SidecarProcess;
use agentstate_bench::workload;
use anyhow::Context;
use serde_json::json;

use crate::ctx::{print_errors, Ctx};

pub async fn run(ctx: &mut Ctx, s: &SidecarProcess) -> anyhow::Result<()> {
    ctx.report.section("Memory under sustained load");
    let pid = s.pid().context("sidecar pid")?;
    let client = s.client();
    let req = sample::save_request(ctx.args.state_bytes);
    let clients = ctx.args.clients;
    let duration = Duration::from_secs(ctx.args.sustained_secs);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = s.rss_kib().unwrap_or(0);
    let sampler = RssSampler::start(pid, Duration::from_millis(500));
    let prefix = format!("sus-{}", ctx.nonce);
    let r = workload::run_clients(clients, duration, |i, deadline| {
        let prefix = prefix.clone();
        workload::save_client(client.clone(), i, deadline, req.clone(), move |i, k| {
            format!("{prefix}-{i}-{k}")
        })
    })
    .await;
    let samples = sampler.take();
    drop(sampler);
    let status = client.status().await?;
    print_errors(&mut ctx.report, "sustained saves", &r.rec);
    let at = |frac: f64| -> u64 {
        let t = duration.as_secs_f64() * frac;
        samples
            .iter()
            .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
            .map_or(0, |p| p.1)
    };
    let peak = samples.iter().map(|p| p.1).max().unwrap_or(0);
    let (third, end) = (at(2.0 / 3.0), at(1.0));
    let growth = (end as f64 - third as f64) / third.max(1) as f64;
    ctx.report.line(format!(
        "{clients} clients saving a new agent each time (~{} B state) for {} s, backend \
         SQLite, --cache-entries-max {}: {:.0} saves/s, {} distinct agents; cache entries \
         at the end {}, backlog {} B.",
        ctx.args.state_bytes,
        ctx.args.sustained_secs,
        ctx.args.sustained_cache_entries,
        r.ops_per_sec(),
        r.rec.total_ops(),
        status.cache_entries,
        status.backlog_bytes
    ));
    ctx.report.line(format!(
        "RSS idle before: {}, at 1/3: {}, 2/3: {}, end: {}, peak: {}; growth over the last \
         third {:+.1}%",
        mib(idle),
        mib(at(1.0 / 3.0)),
        mib(third),
        mib(end),
        mib(peak),
        growth * 100.0
    ));
    let per_agent_kib = peak.saturating_sub(idle) as f64 / status.cache_entries.max(1) as f64;
    ctx.report.line(format!(
        "about {per_agent_kib:.1} KiB of RSS per cached agent: at the default \
         --cache-entries-max of 100000 that is about {:.0} MiB",
        per_agent_kib * 100_000.0 / 1024.0
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Some(kib) = s.rss_kib() {
        ctx.report
            .line(format!("RSS 2 s after the load stopped: {}", mib(kib)));
    }
    ctx.report.json.insert(
        "sustained".into(),
        json!({"clients": clients, "seconds": ctx.args.sustained_secs,
               "saves_per_sec": r.ops_per_sec(), "agents": r.rec.total_ops(),
               "cache_entries": status.cache_entries, "backlog_bytes": status.backlog_bytes,
               "cache_entries_max": ctx.args.sustained_cache_entries, "idle_rss_kib": idle,
               "rss_kib": samples, "peak_rss_kib": peak, "last_third_growth": growth,
               "rss_kib_per_cached_agent": per_agent_kib}),
    );
    ctx.report.rss = samples;
    ctx.report.target(
        "memory bounded under sustained load",
        format!(
            "RSS {} at 2/3 -> {} at end ({:+.1}%), peak {}",
            mib(third),
            mib(end),
            growth * 100.0,
            mib(peak)
        ),
        Some(growth < 0.05),
    );
    Ok(())
}
