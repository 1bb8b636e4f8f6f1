//! The marginal cost of a cached agent, measured from outside: the sustained phase's
//! sidecar is filled in steps of [`FILL_STEP`] new agents up to its cache bound, and after
//! each step (backlog flushed) its RSS and cache gauges are read. The slope of RSS against
//! `agentstate_cache_entries` is what one more cached agent costs the process; less the
//! slope of `agentstate_cache_bytes` (what the cache charges it against
//! `--cache-bytes-max`), it is the overhead beyond its data.
//!
//! Hazard: RSS is a noisy witness. The slope is taken from a third of the fill on, so
//! one-off costs (connections, the first SQLite pages, allocator arenas) stay out of it;
//! the allocator takes and returns memory in steps of megabytes, so the fill spans the
//! whole bound (48 MiB by default, about 17,000 agents at 1 KiB) to keep those steps
//! small against it. The SQLite page cache growing with the table counts as overhead, so
//! the figure errs high. Without the bytes gauge nothing tells data from overhead, and
//! [`run`] returns `None`.

use std::time::Duration;

use agentstate_bench::probe;
use agentstate_bench::sample;
use agentstate_bench::sidecar_proc::SidecarProcess;
use agentstate_bench::stats::fit_line;
use agentstate_protocol::StatePersistence;
use anyhow::Context;

use crate::ctx::{drain, Ctx};

/// The gauges read from `/metrics`.
pub const CACHE_BYTES: &str = "agentstate_cache_bytes";
pub const CACHE_ENTRIES: &str = "agentstate_cache_entries";
/// Agents saved per step of the cache fill, by [`FILL_CLIENTS`] clients.
pub const FILL_STEP: usize = 1000;
const FILL_CLIENTS: usize = 16;
/// Steps of the fill at most (a bound of 40,000 agents or more is not filled whole).
const FILL_STEPS_MAX: usize = 40;

/// One step of the cache fill: the gauges and the RSS once the backlog is flushed.
pub struct FillPoint {
    pub entries: f64,
    pub bytes: f64,
    pub rss_kib: u64,
}

/// The marginal cost of a cached agent, from the fill.
pub struct Fill {
    pub points: Vec<FillPoint>,
    /// Slopes against the entries: RSS bytes and cache bytes per more cached agent.
    pub rss_per_entry: f64,
    pub bytes_per_entry: f64,
}

impl Fill {
    /// RSS per more cached agent beyond what the cache charges it.
    pub fn overhead(&self) -> f64 {
        self.rss_per_entry - self.bytes_per_entry
    }
}

/// Fills the cache in steps of [`FILL_STEP`] new agents until it holds its bound (the
/// bytes gauge near `--sustained-cache-bytes`, or entries no longer growing by a whole
/// step), reading the gauges and the RSS after each. `None` without the bytes gauge.
pub async fn run(ctx: &Ctx, s: &SidecarProcess) -> anyhow::Result<Option<Fill>> {
    let read = || async {
        let m = probe::metrics(s.addr).await?;
        Some((m.sum(CACHE_ENTRIES)?, m.sum(CACHE_BYTES)?, s.rss_kib()?))
    };
    // The first point: the cache before the fill (a fresh sidecar's, about empty).
    let Some((entries, bytes, rss_kib)) = read().await else {
        return Ok(None);
    };
    let mut points = vec![FillPoint {
        entries,
        bytes,
        rss_kib,
    }];
    let client = s.client();
    let req = sample::save_request(ctx.args.state_bytes);
    let bound = ctx.args.sustained_cache_bytes as f64;
    let per_client = FILL_STEP / FILL_CLIENTS;
    let whole_step = (per_client * FILL_CLIENTS) as f64;
    for step in 0..FILL_STEPS_MAX {
        let tasks: Vec<_> = (0..FILL_CLIENTS)
            .map(|i| {
                let (client, req) = (client.clone(), req.clone());
                let prefix = format!("sus-{}-fill-{step}-{i}", ctx.nonce);
                tokio::spawn(async move {
                    for k in 0..per_client {
                        client
                            .save_state(&format!("{prefix}-{k}"), &req, None)
                            .await?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for t in tasks {
            t.await.context("fill task")??;
        }
        drain(&client).await?;
        // Let the cache's own housekeeping (evictions, size updates) catch up.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let Some((entries, bytes, rss_kib)) = read().await else {
            break;
        };
        let grew = points.last().map_or(entries, |p| entries - p.entries);
        points.push(FillPoint {
            entries,
            bytes,
            rss_kib,
        });
        if bytes >= 0.9 * bound || grew < 0.9 * whole_step {
            break;
        }
    }
    // The steps that added a whole step to the cache (once it evicts, entries stop
    // growing and the RSS no longer follows them), from a third of the way on: the first
    // steps also pay one-off costs (connections, the first SQLite pages, allocator arenas).
    let filled = 1 + points
        .windows(2)
        .take_while(|w| w[1].entries - w[0].entries >= 0.9 * whole_step)
        .count();
    let from = points[filled - 1].entries / 3.0;
    let growing: Vec<(f64, f64, f64)> = points[..filled]
        .iter()
        .filter(|p| p.entries >= from)
        .map(|p| (p.entries, p.bytes, p.rss_kib as f64 * 1024.0))
        .collect();
    let fit = |y: fn(&(f64, f64, f64)) -> f64| {
        let xy: Vec<(f64, f64)> = growing.iter().map(|p| (p.0, y(p))).collect();
        fit_line(&xy).map(|(slope, _)| slope)
    };
    let (Some(rss_per_entry), Some(bytes_per_entry)) = (fit(|p| p.2), fit(|p| p.1)) else {
        return Ok(None);
    };
    Ok(Some(Fill {
        points,
        rss_per_entry,
        bytes_per_entry,
    }))
}
