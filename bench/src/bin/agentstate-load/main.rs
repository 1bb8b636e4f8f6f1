//! `agentstate-load`: simulated agents against a real sidecar, and the same work written
//! straight to MongoDB, with throughput and latency percentiles per operation.
//!
//! Phases (all by default, `--phases` picks some):
//! - `mix`: Greeter conversations (save, transition, append, load, transfer) at each
//!   `--concurrency`, through the sidecar and as direct journaled MongoDB writes.
//! - `durability`: saves at `--clients` with `local` and with `memory`, the disk's serial
//!   fdatasync rate before and after, the WAL's records per fsync (from `/metrics`) and
//!   the sidecar's CPU time per save.
//! - `cache`: reads of flushed (cache-resident) agents against Redis GETs at the same
//!   concurrency.
//! - `hot`: many saves to a few agents on a MongoDB-backed sidecar of its own; MongoDB
//!   writes against updates.
//! - `append`: WAL bytes written by message append #1, #10, ... #10,000 of one agent.
//! - `sustained`: the cache filled in steps to its bound (what a cached agent costs), then
//!   saves of new agents for `--sustained-secs`, RSS and the cache gauges sampled.
//! - `replay`: N records left in the WAL, `kill -9`, restart: replay rate and time to ready.
//!
//! It starts what it needs: SecantusDB (`--sync-on-commit`) unless `MONGODB_URI` is set,
//! and the `agentstate` binary (`target/release`, else `target/debug`) unless `--url`.
//! The mix, durability and cache phases use one sidecar (`--backend`, SQLite by default,
//! so that the MongoDB-wire server does not share its CPUs); the others start their own.
//! Every phase reports the CPU each of this run's processes used, and what the rest of
//! the machine used ("other"): on a shared machine that says how far to trust a figure.
//! Results go to `--out` (default `bench/results/`): `results.md`, `results.json`,
//! `latency.svg`, `throughput.svg`, `rss.svg`. Both the page and stdout end with the
//! Targets section: every target, its threshold, what this run measured and the verdict
//! (met, MISSED, not measured, not run).
//!
//! One module per phase (`mix`, `durability`, `cache`, `hot`, `append`, `sustained` with
//! `cache_fill`, `replay`, and `idle_rss` over all of them); `ctx` holds what they share,
//! `args` the command line and `targets` the list of targets. This file only orders the
//! phases and writes the report.

mod append;
mod args;
mod cache;
mod cache_fill;
mod ctx;
mod durability;
mod hot;
mod idle_rss;
mod mix;
mod replay;
mod sustained;
mod targets;

use std::process::ExitCode;
use std::time::Duration;

use agentstate_bench::machine::Machine;
use agentstate_bench::mongo_server::MongoServer;
use agentstate_bench::probe::{CpuSnapshot, RssSampler};
use agentstate_bench::report::{mib, Report};
use agentstate_bench::sidecar_proc::{self, SidecarProcess};
use agentstate_bench::workspace_root;
use anyhow::{bail, Context};
use clap::Parser;
use serde_json::json;

use crate::args::{Args, Backend, Phase};
use crate::ctx::{cpu_line, idle_rss, wait_for_quiet, Ctx, QUIET_CORES_MAX};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentstate-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| workspace_root().join("bench/results"));
    std::fs::create_dir_all(&out).with_context(|| format!("create {}", out.display()))?;
    let bin = args.sidecar_bin.clone().or_else(sidecar_proc::find_binary);
    let work = tempfile::Builder::new()
        .prefix("agentstate-load-")
        .tempdir()
        .context("work dir")?;
    let (mongo, mongo_missing) = if args.no_mongo {
        (None, Some("--no-mongo".to_string()))
    } else {
        match MongoServer::start(true) {
            Ok(m) => (Some(m), None),
            Err(why) => (None, Some(why)),
        }
    };
    let mongo_client = match &mongo {
        Some(m) => Some(m.client().await.context("MongoDB client")?),
        None => None,
    };
    let mut ctx = Ctx {
        args,
        bin,
        work,
        mongo,
        mongo_client,
        mongo_missing,
        report: Report::default(),
        nonce: format!("{:08x}", rand::random::<u32>()),
    };

    let machine = Machine::describe();
    ctx.report.line(format!(
        "machine: {} CPUs ({}), {}; {}",
        machine.nproc, machine.cpu_model, machine.kernel, machine.date_utc
    ));
    let mongo_desc = match (&ctx.mongo, &ctx.mongo_missing) {
        (Some(m), _) => m.description.clone(),
        (None, why) => format!("none ({})", why.as_deref().unwrap_or("?")),
    };
    ctx.report.line(format!("MongoDB: {mongo_desc}"));
    let busy = wait_for_quiet(Duration::from_secs(ctx.args.wait_idle_secs)).await;
    ctx.report.line(format!(
        "CPU used by other processes at start: {busy:.2} cores{}",
        if busy > QUIET_CORES_MAX {
            " (the machine was busy: figures are pessimistic)"
        } else {
            ""
        }
    ));
    ctx.report.json.insert(
        "machine".into(),
        json!({"nproc": machine.nproc, "cpu_model": machine.cpu_model,
               "kernel": machine.kernel, "date": machine.date_utc, "mongodb": mongo_desc}),
    );
    let phases = ctx.args.phases.clone();
    let sidecar_mongo = match ctx.args.backend {
        Backend::Mongo => {
            if ctx.mongo.is_none() {
                bail!("--backend mongo, but no MongoDB: {mongo_desc}");
            }
            true
        }
        Backend::Sqlite => false,
    };

    // The main sidecar: mix, durability and cache phases.
    let needs_main = phases
        .iter()
        .any(|p| matches!(p, Phase::Mix | Phase::Durability | Phase::Cache));
    if needs_main {
        let (proc_, url) = match &ctx.args.url {
            Some(url) => (None, url.clone()),
            None => {
                let s = ctx.start_sidecar("main", sidecar_mongo, &[]).await?;
                let url = s.url();
                (Some(s), url)
            }
        };
        let backend = if ctx.args.url.is_some() {
            "as running at --url".to_string()
        } else if sidecar_mongo {
            format!("MongoDB ({mongo_desc})")
        } else {
            "embedded SQLite".to_string()
        };
        ctx.report
            .line(format!("sidecar: {url}, backend {backend}"));
        if let Some(s) = &proc_ {
            idle_rss(&mut ctx, s, "main sidecar, fresh").await;
        }
        let pid = proc_.as_ref().and_then(SidecarProcess::pid);
        let sampler = pid.map(|p| RssSampler::start(p, Duration::from_millis(250)));
        if phases.contains(&Phase::Mix) {
            let cpu = CpuSnapshot::take();
            mix::run(&mut ctx, &url).await?;
            cpu_line(&mut ctx, "mix", &cpu);
        }
        if phases.contains(&Phase::Durability) {
            let cpu = CpuSnapshot::take();
            durability::run(&mut ctx, &url, proc_.as_ref()).await?;
            cpu_line(&mut ctx, "durability", &cpu);
        }
        if phases.contains(&Phase::Cache) {
            let cpu = CpuSnapshot::take();
            cache::run(&mut ctx, &url).await?;
            cpu_line(&mut ctx, "cache", &cpu);
        }
        if let (Some(s), Some(sampler)) = (&proc_, &sampler) {
            let max = sampler.take().iter().map(|p| p.1).max().unwrap_or(0);
            ctx.report.line(format!(
                "main sidecar: peak RSS during its phases {}",
                mib(max)
            ));
            idle_rss(&mut ctx, s, "main sidecar, idle after its phases").await;
        }
    }
    if phases.contains(&Phase::Hot) {
        hot::run(&mut ctx).await?;
    }
    if phases.contains(&Phase::Append) {
        let s = ctx.start_sidecar("sqlite", false, &[]).await?;
        idle_rss(&mut ctx, &s, "SQLite-backed sidecar, fresh").await;
        let cpu = CpuSnapshot::take();
        append::run(&mut ctx, &s).await?;
        cpu_line(&mut ctx, "append", &cpu);
    }
    if phases.contains(&Phase::Sustained) {
        sustained::run(&mut ctx).await?;
    }
    if phases.contains(&Phase::Replay) {
        replay::run(&mut ctx).await?;
    }
    idle_rss::target(&mut ctx);
    targets::finish(&mut ctx.report, &phases);
    let concurrency = ctx.args.concurrency.clone();
    let md = ctx
        .report
        .write(&out, &concurrency)
        .with_context(|| format!("write results to {}", out.display()))?;
    println!("\n{md}");
    println!("results written to {}", out.display());
    Ok(())
}
