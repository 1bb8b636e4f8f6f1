//! `sustained`: saves of new agents for `--sustained-secs` on a sidecar of its own with a
//! small cache bound, RSS sampled throughout and the cache gauges every second: does
//! memory level off once the cache is full, does the cache keep to `--cache-bytes-max`,
//! and what does a cached agent cost beyond its data?
//!
//! What a cached agent costs beyond its data is measured first, by filling the cache in
//! steps ([`crate::cache_fill`]). The cruder ratio at the end of the load (all RSS growth
//! less the cache's bytes, per entry) is reported beside it as an upper bound.

use std::time::{Duration, Instant};

use agentstate_bench::probe::{self, CpuSnapshot, RssSampler};
use agentstate_bench::report::{mib, Verdict};
use agentstate_bench::sample;
use agentstate_bench::sidecar_proc;
use agentstate_bench::stats::fit_line;
use agentstate_bench::workload;
use agentstate_protocol::{Codec, StatePersistence};
use anyhow::Context;
use serde_json::json;

use crate::cache_fill::{self, Fill, CACHE_BYTES, CACHE_ENTRIES, FILL_STEP};
use crate::ctx::{cpu_line, print_errors, Ctx};
use crate::targets::{self, Id};

/// The sidecar flag that bounds the cache in bytes (newer binaries).
const CACHE_BYTES_FLAG: &str = "--cache-bytes-max";
/// How often the cache gauges are read during the load.
const GAUGES_EVERY: Duration = Duration::from_secs(1);
/// Most RSS growth over the last two thirds of the run that counts as flat.
const RSS_GROWTH_FLAT: f64 = 0.05;

/// One reading of the cache gauges: `(seconds, bytes, entries)`.
type Gauges = (f64, Option<f64>, Option<f64>);

pub async fn run(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("Memory under sustained load");
    let has_bytes_flag = sidecar_proc::serve_has_flag(ctx.bin()?, CACHE_BYTES_FLAG);
    let entries_max = ctx.args.sustained_cache_entries.to_string();
    let bytes_max = ctx.args.sustained_cache_bytes.to_string();
    let mut flags = vec!["--cache-entries-max", entries_max.as_str()];
    if has_bytes_flag {
        flags.extend([CACHE_BYTES_FLAG, bytes_max.as_str()]);
    }
    let s = ctx.start_sidecar("sustained", false, &flags).await?;
    let cpu = CpuSnapshot::take();
    let pid = s.pid().context("sidecar pid")?;
    let client = s.client();
    let req = sample::save_request(ctx.args.state_bytes);
    let clients = ctx.args.clients;
    let duration = Duration::from_secs(ctx.args.sustained_secs);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = s.rss_kib().unwrap_or(0);
    let fill = cache_fill::run(ctx, &s).await?;
    let sampler = RssSampler::start(pid, Duration::from_millis(500));
    let gauges = tokio::spawn(read_gauges(s.addr, Instant::now() + duration));
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
    // Right after the load, beside the last RSS sample.
    let end_metrics = probe::metrics(s.addr).await;
    let status = client.status().await?;
    let gauges = gauges.await.context("cache gauge reader")?;
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
         SQLite, --cache-entries-max {}{}: {:.0} saves/s, {} distinct agents; cache entries \
         at the end {}, backlog {} B.",
        ctx.args.state_bytes,
        ctx.args.sustained_secs,
        ctx.args.sustained_cache_entries,
        if has_bytes_flag {
            format!(", {CACHE_BYTES_FLAG} {bytes_max}")
        } else {
            format!(" (the sidecar has no {CACHE_BYTES_FLAG})")
        },
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
    let flat = rss_trend(&samples, duration.as_secs_f64());
    if let Some(f) = &flat {
        ctx.report.line(format!(
            "RSS trend over the last 2/3 (least squares over {} samples): {:+.2} MiB/min, \
             fitted {} -> {} ({:+.1}%)",
            f.samples,
            f.slope_kib_per_s * 60.0 / 1024.0,
            mib(f.start_kib as u64),
            mib(f.end_kib as u64),
            f.growth * 100.0
        ));
    }
    let data_bytes = stored_body_bytes(ctx, &s.client(), &req).await;
    let cache = CacheFigures::of(&gauges, end_metrics.as_ref(), status.cache_entries);
    if let Some(peak) = cache.bytes_peak {
        ctx.report.line(format!(
            "{CACHE_BYTES}: peak {} during the load, {} at its end, {} entries; a cached \
             agent's state as a GET returns it: {} B (MessagePack)",
            mib((peak / 1024.0) as u64),
            cache
                .bytes_end
                .map_or("?".into(), |b| mib((b / 1024.0) as u64)),
            cache.entries_end,
            data_bytes.map_or("?".into(), |b| b.to_string())
        ));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Some(kib) = s.rss_kib() {
        ctx.report
            .line(format!("RSS 2 s after the load stopped: {}", mib(kib)));
    }
    let overhead = cache
        .bytes_end
        .filter(|_| cache.entries_end > 0.0)
        .map(|bytes| (end.saturating_sub(idle) as f64 * 1024.0 - bytes) / cache.entries_end);
    if let Some(f) = &fill {
        ctx.report.line(format!(
            "cache fill before the load, {} steps of {FILL_STEP} agents up to {:.0} entries: \
             {:.0} B of RSS and {:.0} B of {CACHE_BYTES} per more cached agent (least \
             squares from a third of the fill on): {:.0} B beyond what the cache charges; \
             {} beyond the state as a GET returns it. The cruder ratio at the end of the \
             load (all RSS growth less the cache's bytes, per entry): {}",
            f.points.len(),
            f.points.last().map_or(0.0, |p| p.entries),
            f.rss_per_entry,
            f.bytes_per_entry,
            f.overhead(),
            data_bytes.map_or("?".into(), |d| format!(
                "{:.0} B",
                f.rss_per_entry - d as f64
            )),
            overhead.map_or("?".into(), |o| format!("{o:.0} B"))
        ));
    }
    ctx.report.json.insert(
        "sustained".into(),
        json!({"clients": clients, "seconds": ctx.args.sustained_secs,
               "saves_per_sec": r.ops_per_sec(), "agents": r.rec.total_ops(),
               "cache_entries": status.cache_entries, "backlog_bytes": status.backlog_bytes,
               "cache_entries_max": ctx.args.sustained_cache_entries,
               "cache_bytes_max": has_bytes_flag.then_some(ctx.args.sustained_cache_bytes),
               "idle_rss_kib": idle, "rss_kib": samples, "peak_rss_kib": peak,
               "last_third_growth": growth, "rss_kib_per_cached_agent": per_agent_kib,
               "rss_slope_kib_per_s": flat.as_ref().map(|f| f.slope_kib_per_s),
               "rss_fitted_growth": flat.as_ref().map(|f| f.growth),
               "cache_gauges": gauges, "cache_bytes_peak": cache.bytes_peak,
               "cache_bytes_end": cache.bytes_end, "cache_entries_end": cache.entries_end,
               "state_body_bytes": data_bytes,
               "overhead_bytes_per_cached_agent_upper": overhead,
               "fill": fill.as_ref().map(|f| json!({
                   "points": f.points.iter().map(|p| json!({"entries": p.entries,
                       "cache_bytes": p.bytes, "rss_kib": p.rss_kib})).collect::<Vec<_>>(),
                   "rss_bytes_per_entry": f.rss_per_entry,
                   "cache_bytes_per_entry": f.bytes_per_entry,
                   "overhead_bytes_per_entry": f.overhead()}))}),
    );
    ctx.report.rss = samples;
    let rss_growth_kib = end.saturating_sub(idle);
    record_targets(
        ctx,
        has_bytes_flag,
        &cache,
        fill.as_ref(),
        rss_growth_kib,
        flat.as_ref(),
    );
    // Before the sidecar goes: a dead process's CPU time would count as "other".
    cpu_line(ctx, "sustained", &cpu);
    Ok(())
}

/// Reads the cache gauges every [`GAUGES_EVERY`] until `deadline`.
async fn read_gauges(addr: std::net::SocketAddr, deadline: Instant) -> Vec<Gauges> {
    let started = Instant::now();
    let mut out = Vec::new();
    while Instant::now() + GAUGES_EVERY <= deadline {
        tokio::time::sleep(GAUGES_EVERY).await;
        if let Some(m) = probe::metrics(addr).await {
            let t = started.elapsed().as_secs_f64();
            out.push((t, m.sum(CACHE_BYTES), m.sum(CACHE_ENTRIES)));
        }
    }
    out
}

/// The size of one saved agent's state as a GET returns it (MessagePack): the data a
/// cached agent stands for. Saved after the load, so it is in the cache.
async fn stored_body_bytes(
    ctx: &Ctx,
    client: &agentstate_protocol::Client,
    req: &agentstate_protocol::SaveStateRequest,
) -> Option<usize> {
    let id = format!("sus-{}-probe", ctx.nonce);
    client.save_state(&id, req, None).await.ok()?;
    let state = client.load_state(&id).await.ok()??;
    Codec::MsgPack.encode(&state).ok().map(|b| b.len())
}

/// The cache gauges over the run.
struct CacheFigures {
    /// Highest `agentstate_cache_bytes` read during the load and right after it.
    bytes_peak: Option<f64>,
    /// `agentstate_cache_bytes` right after the load.
    bytes_end: Option<f64>,
    /// `agentstate_cache_entries` right after the load (else `/v1/status`).
    entries_end: f64,
}

impl CacheFigures {
    fn of(gauges: &[Gauges], end: Option<&probe::Metrics>, status_entries: u64) -> Self {
        let bytes_end = end.and_then(|m| m.sum(CACHE_BYTES));
        let bytes_peak = gauges
            .iter()
            .filter_map(|g| g.1)
            .chain(bytes_end)
            .reduce(f64::max);
        let entries_end = end
            .and_then(|m| m.sum(CACHE_ENTRIES))
            .unwrap_or(status_entries as f64);
        CacheFigures {
            bytes_peak,
            bytes_end,
            entries_end,
        }
    }
}

/// The RSS trend once the cache has had time to fill: a line fitted to the samples of
/// the last two thirds of the run.
struct Trend {
    samples: usize,
    slope_kib_per_s: f64,
    /// The fitted RSS at the window's start and end.
    start_kib: f64,
    end_kib: f64,
    /// `end / start - 1`.
    growth: f64,
}

fn rss_trend(samples: &[(f64, u64)], run_secs: f64) -> Option<Trend> {
    let from = run_secs / 3.0;
    let window: Vec<(f64, f64)> = samples
        .iter()
        .filter(|p| p.0 >= from)
        .map(|p| (p.0, p.1 as f64))
        .collect();
    let (slope, intercept) = fit_line(&window)?;
    let start_kib = intercept + slope * from;
    let end_kib = intercept + slope * run_secs;
    Some(Trend {
        samples: window.len(),
        slope_kib_per_s: slope,
        start_kib,
        end_kib,
        growth: end_kib / start_kib.max(1.0) - 1.0,
    })
}

fn record_targets(
    ctx: &mut Ctx,
    has_bytes_flag: bool,
    cache: &CacheFigures,
    fill: Option<&Fill>,
    rss_growth_kib: u64,
    flat: Option<&Trend>,
) {
    let report = &mut ctx.report;
    let bound = ctx.args.sustained_cache_bytes as f64;
    match (has_bytes_flag, cache.bytes_peak) {
        (false, _) => targets::not_measured(
            report,
            Id::CacheBytesBound,
            format!("the sidecar has no {CACHE_BYTES_FLAG} flag"),
        ),
        (true, None) => targets::not_measured(
            report,
            Id::CacheBytesBound,
            format!("no {CACHE_BYTES} gauge"),
        ),
        (true, Some(peak)) => targets::record(
            report,
            Id::CacheBytesBound,
            format!(
                "peak {} of a {} bound ({:.0}%{}), {:.0} entries at the end",
                mib((peak / 1024.0) as u64),
                mib((bound / 1024.0) as u64),
                peak / bound * 100.0,
                if peak < 0.9 * bound {
                    "; not reached, the entries bound came first"
                } else {
                    ""
                },
                cache.entries_end
            ),
            Verdict::of(peak <= bound),
        ),
    }
    match (fill, cache.bytes_end) {
        (Some(f), _) => targets::record(
            report,
            Id::CacheOverhead,
            format!(
                "{:.0} B per agent: {:.0} B of RSS less {:.0} B charged to the cache, per \
                 more cached agent (fill to {:.0} entries)",
                f.overhead(),
                f.rss_per_entry,
                f.bytes_per_entry,
                f.points.last().map_or(0.0, |p| p.entries)
            ),
            Verdict::of(f.overhead() <= 1024.0),
        ),
        (None, Some(_)) => targets::not_measured(
            report,
            Id::CacheOverhead,
            "the cache fill gave fewer than two points",
        ),
        (None, None) => targets::not_measured(
            report,
            Id::CacheOverhead,
            format!(
                "no {CACHE_BYTES} gauge (RSS growth per cached agent, data included: {:.1} KiB)",
                rss_growth_kib as f64 / cache.entries_end.max(1.0)
            ),
        ),
    }
    match flat {
        Some(f) => targets::record_sized(
            report,
            Id::RssFlat,
            format!(
                "{} -> {} fitted ({:+.1}%, {:+.2} MiB/min)",
                mib(f.start_kib as u64),
                mib(f.end_kib as u64),
                f.growth * 100.0,
                f.slope_kib_per_s * 60.0 / 1024.0
            ),
            Verdict::of(f.growth < RSS_GROWTH_FLAT),
            &[(
                "--sustained-secs",
                ctx.args.sustained_secs as usize,
                targets::SUSTAINED_SECS as usize,
            )],
        ),
        None => targets::not_measured(report, Id::RssFlat, "too few RSS samples"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plateau_is_flat_and_a_climb_is_not() {
        let plateau: Vec<(f64, u64)> = (0..60).map(|i| (i as f64, 100_000)).collect();
        let t = rss_trend(&plateau, 60.0).unwrap();
        assert!(t.growth.abs() < 1e-9 && t.samples == 40);
        let climb: Vec<(f64, u64)> = (0..60).map(|i| (i as f64, 100_000 + i * 1000)).collect();
        let t = rss_trend(&climb, 60.0).unwrap();
        // 120 MiB at 20 s, 160 at 60 s: a third more.
        assert!(
            (t.growth - 40_000.0 / 120_000.0).abs() < 1e-6,
            "{}",
            t.growth
        );
    }

    #[test]
    fn the_cache_peak_takes_every_reading() {
        let gauges = [(1.0, Some(10.0), Some(1.0)), (2.0, Some(30.0), Some(3.0))];
        let end = probe::Metrics::parse("agentstate_cache_bytes 20\nagentstate_cache_entries 2\n");
        let c = CacheFigures::of(&gauges, Some(&end), 7);
        assert_eq!(
            (c.bytes_peak, c.bytes_end, c.entries_end),
            (Some(30.0), Some(20.0), 2.0)
        );
        let c = CacheFigures::of(&[], None, 7);
        assert_eq!(
            (c.bytes_peak, c.bytes_end, c.entries_end),
            (None, None, 7.0)
        );
    }
}
