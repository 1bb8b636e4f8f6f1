//! `agentstate-load`: simulated agents against a real sidecar, and the same work written
//! straight to MongoDB, with throughput and latency percentiles per operation.
//!
//! Phases (all by default, `--phases` picks some):
//! - `mix`: Greeter conversations (save, transition, append, load, transfer) at each
//!   `--concurrency`, through the sidecar and as direct journaled MongoDB writes.
//! - `durability`: saves at `--clients` with `local` and with `memory`, the disk's serial
//!   fdatasync rate before and after, and the WAL's records per fsync (from `/metrics`).
//! - `cache`: reads of flushed (cache-resident) agents against Redis GETs at the same
//!   concurrency.
//! - `hot`: many saves to a few agents on a MongoDB-backed sidecar of its own; MongoDB
//!   writes against updates.
//! - `append`: WAL bytes written by message append #1, #10, ... #10,000 of one agent.
//! - `sustained`: saves of new agents for `--sustained-secs`, RSS sampled throughout.
//! - `replay`: N records left in the WAL, `kill -9`, restart: replay rate and time to ready.
//!
//! It starts what it needs: SecantusDB (`--sync-on-commit`) unless `MONGODB_URI` is set,
//! and the `agentstate` binary (`target/release`, else `target/debug`) unless `--url`.
//! The mix, durability and cache phases use one sidecar (`--backend`, SQLite by default,
//! so that the MongoDB-wire server does not share its CPUs); the others start their own.
//! Every phase reports the CPU each of this run's processes used, and what the rest of
//! the machine used ("other"): on a shared machine that says how far to trust a figure.
//! Results go to `--out` (default `bench/results/`): `results.md`, `results.json`,
//! `latency.svg`, `throughput.svg`, `rss.svg`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentstate_bench::machine::{self, Machine};
use agentstate_bench::mongo_server::MongoServer;
use agentstate_bench::probe::{self, CpuSnapshot, RssSampler};
use agentstate_bench::report::{mib, us, Report};
use agentstate_bench::resp::{RedisServer, RespConn};
use agentstate_bench::sidecar_proc::{self, SidecarProcess};
use agentstate_bench::stats::{Recorder, Summary};
use agentstate_bench::workload::{self, RunResult, Target, MIX_OPS};
use agentstate_bench::{example_agent_types, sample, workspace_root};
use agentstate_protocol::StatePersistence;
use agentstate_protocol::{
    Client, Codec, Durability, NewMessage, PersistedState, SaveStateRequest,
};
use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

/// Cores other processes may use for the machine to count as quiet.
const QUIET_CORES_MAX: f64 = 0.15;
/// How long to wait for the flusher to empty the backlog between phases.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);
/// Agents the cache phase reads (all flushed, so all cache hits).
const CACHE_AGENTS: usize = 1000;
/// Appends at which WAL growth is measured.
const APPEND_POINTS: [u64; 5] = [1, 10, 100, 1000, 10_000];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
enum Phase {
    Mix,
    Durability,
    Cache,
    Hot,
    Append,
    Sustained,
    Replay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The embedded SQLite store: the sidecar's own figures, without a MongoDB-wire
    /// server competing for the same CPUs.
    Sqlite,
    /// The run's MongoDB (SecantusDB or MONGODB_URI).
    Mongo,
}

#[derive(Debug, Parser)]
#[command(
    name = "agentstate-load",
    about = "Simulated agents against the agentstate sidecar and against direct MongoDB writes"
)]
struct Args {
    /// A running sidecar to drive instead of starting one. Phases that need their own
    /// sidecar (append, sustained, replay) still start one.
    #[arg(long)]
    url: Option<String>,
    /// The `agentstate` binary (default: target/release, else target/debug).
    #[arg(long)]
    sidecar_bin: Option<PathBuf>,
    /// Concurrent simulated agents, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// Length of each measured run.
    #[arg(long, default_value_t = 6)]
    duration_secs: u64,
    /// Size of `state_data` (as JSON) in saves.
    #[arg(long, default_value_t = 1024)]
    state_bytes: usize,
    /// Clients of the durability, hot-agent and sustained phases.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Agents of the hot-agent phase.
    #[arg(long, default_value_t = 8)]
    hot_agents: usize,
    /// Message appends of the append phase.
    #[arg(long, default_value_t = 10_000)]
    appends: u64,
    /// Records left in the WAL for the replay phase.
    #[arg(long, default_value_t = 200_000)]
    replay_records: u64,
    /// Size of `state_data` in the replay phase's records.
    #[arg(long, default_value_t = 128)]
    replay_state_bytes: usize,
    /// Length of the sustained-load phase.
    #[arg(long, default_value_t = 30)]
    sustained_secs: u64,
    /// `--cache-entries-max` of the sustained phase's sidecar: small enough that the run
    /// reaches it, so the plateau (or its absence) shows.
    #[arg(long, default_value_t = 20_000)]
    sustained_cache_entries: u64,
    /// Wait up to this long at start for other processes to leave the CPU idle.
    #[arg(long, default_value_t = 60)]
    wait_idle_secs: u64,
    /// Backend of the sidecar the mix, durability and cache phases use (the hot-agent
    /// phase always starts a MongoDB-backed one).
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    backend: Backend,
    /// Skip MongoDB entirely (no direct-write comparison, no hot-agent phase).
    #[arg(long)]
    no_mongo: bool,
    /// Phases to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mix,durability,cache,hot,append,sustained,replay"
    )]
    phases: Vec<Phase>,
    /// Where results, tables and charts go (default: bench/results).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Everything a phase may need.
struct Ctx {
    args: Args,
    bin: Option<PathBuf>,
    work: tempfile::TempDir,
    mongo: Option<MongoServer>,
    mongo_client: Option<mongodb::Client>,
    /// Why there is no MongoDB, when there is none.
    mongo_missing: Option<String>,
    report: Report,
    /// Unique per run, so agent ids never collide with an earlier run's.
    nonce: String,
}

impl Ctx {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.args.duration_secs)
    }

    fn bin(&self) -> anyhow::Result<&PathBuf> {
        self.bin.as_ref().context(
            "no agentstate binary: build it with `cargo build --release -p agentstate` \
             or pass --sidecar-bin",
        )
    }

    /// Starts a sidecar with the example agent types and `extra` flags.
    async fn start_sidecar(
        &self,
        name: &str,
        mongo: bool,
        extra: &[&str],
    ) -> anyhow::Result<SidecarProcess> {
        let mut args = vec![
            "--config".to_string(),
            example_agent_types().display().to_string(),
        ];
        if mongo {
            let m = self
                .mongo
                .as_ref()
                .context("no MongoDB for a Mongo-backed sidecar")?;
            args.extend([
                "--mongodb-uri".into(),
                m.uri.clone(),
                "--database".into(),
                format!("agentstate_load_{}", self.nonce),
            ]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let dir = self.work.path().join(name);
        SidecarProcess::start(self.bin()?, &dir, &args).await
    }
}

/// Waits (up to `max`) until processes not started by this run use under
/// [`QUIET_CORES_MAX`] cores over two seconds; returns what they used last.
async fn wait_for_quiet(max: Duration) -> f64 {
    let started = Instant::now();
    loop {
        let before = CpuSnapshot::take();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let other = CpuSnapshot::take()
            .cores_since(&before)
            .iter()
            .find(|(c, _)| c == "other")
            .map_or(0.0, |c| c.1);
        if other <= QUIET_CORES_MAX || started.elapsed() >= max {
            return other;
        }
        println!("other processes use {other:.2} cores; waiting for a quiet machine");
    }
}

/// Reports the CPU each process used during a phase.
fn cpu_line(ctx: &mut Ctx, phase: &str, before: &CpuSnapshot) {
    let cores = CpuSnapshot::take().cores_since(before);
    ctx.report.line(format!(
        "CPU during this phase, in cores: {}",
        probe::format_cores(&cores)
    ));
    let entry = ctx
        .report
        .json
        .entry("cpu_cores")
        .or_insert_with(|| json!({}));
    entry[phase] = json!(cores.into_iter().collect::<BTreeMap<_, _>>());
}

/// Polls `/v1/status` until the backlog is empty.
async fn drain(client: &Client) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let status = client.status().await.context("GET /v1/status")?;
        if status.backlog_agents == 0 {
            return Ok(started.elapsed());
        }
        if started.elapsed() > DRAIN_TIMEOUT {
            bail!(
                "backlog not flushed after {DRAIN_TIMEOUT:?}: {} agents, {} bytes, last error {:?}",
                status.backlog_agents,
                status.backlog_bytes,
                status.last_flush_error
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn print_errors(report: &mut Report, what: &str, rec: &Recorder) {
    if rec.total_errors() > 0 {
        report.line(format!(
            "{what}: {} failed operations; first: {}",
            rec.total_errors(),
            rec.first_error.as_deref().unwrap_or("?")
        ));
    }
}

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
            phase_mix(&mut ctx, &url).await?;
            cpu_line(&mut ctx, "mix", &cpu);
        }
        if phases.contains(&Phase::Durability) {
            let cpu = CpuSnapshot::take();
            phase_durability(&mut ctx, &url, proc_.as_ref()).await?;
            cpu_line(&mut ctx, "durability", &cpu);
        }
        if phases.contains(&Phase::Cache) {
            let cpu = CpuSnapshot::take();
            phase_cache(&mut ctx, &url).await?;
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
        phase_hot(&mut ctx).await?;
    }
    if phases.contains(&Phase::Append) {
        let s = ctx.start_sidecar("sqlite", false, &[]).await?;
        idle_rss(&mut ctx, &s, "SQLite-backed sidecar, fresh").await;
        let cpu = CpuSnapshot::take();
        phase_append(&mut ctx, &s).await?;
        cpu_line(&mut ctx, "append", &cpu);
    }
    if phases.contains(&Phase::Sustained) {
        let cache = ctx.args.sustained_cache_entries.to_string();
        let s = ctx
            .start_sidecar("sustained", false, &["--cache-entries-max", &cache])
            .await?;
        let cpu = CpuSnapshot::take();
        phase_sustained(&mut ctx, &s).await?;
        cpu_line(&mut ctx, "sustained", &cpu);
    }
    if phases.contains(&Phase::Replay) {
        phase_replay(&mut ctx).await?;
    }
    idle_rss_target(&mut ctx);
    let concurrency = ctx.args.concurrency.clone();
    let md = ctx
        .report
        .write(&out, &concurrency)
        .with_context(|| format!("write results to {}", out.display()))?;
    println!("\n{md}");
    println!("results written to {}", out.display());
    Ok(())
}

/// RSS after a second of idleness.
async fn idle_rss(ctx: &mut Ctx, s: &SidecarProcess, what: &str) {
    tokio::time::sleep(Duration::from_secs(1)).await;
    if let Some(kib) = s.rss_kib() {
        ctx.report.line(format!("idle RSS ({what}): {}", mib(kib)));
        let list = ctx
            .report
            .json
            .entry("idle_rss_kib")
            .or_insert_with(|| json!({}));
        list[what] = json!(kib);
    }
}

fn idle_rss_target(ctx: &mut Ctx) {
    let fresh: Vec<(String, u64)> = ctx
        .report
        .json
        .get("idle_rss_kib")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.ends_with("fresh"))
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    let max = fresh.iter().map(|f| f.1).max();
    let measured = fresh
        .iter()
        .map(|(k, v)| format!("{k}: {}", mib(*v)))
        .collect::<Vec<_>>()
        .join("; ");
    ctx.report.section("Idle RSS");
    ctx.report.target(
        "idle RSS < 20 MB",
        measured,
        max.map(|m| m * 1024 < 20_000_000),
    );
}

fn summary_row(system: &str, clients: usize, r: &RunResult, op: &str) -> Option<String> {
    let h = r.rec.ops.get(op)?;
    let s = Summary::of(h);
    Some(format!(
        "| {system} | {clients} | {op} | {:.0} | {} | {} | {} | {} |",
        r.op_per_sec(op),
        us(s.p50_us),
        us(s.p99_us),
        us(s.p999_us),
        s.count
    ))
}

fn summaries_json(r: &RunResult) -> Value {
    let mut ops = serde_json::Map::new();
    for (op, h) in &r.rec.ops {
        let s = Summary::of(h);
        ops.insert(
            op.to_string(),
            json!({"count": s.count, "ops_per_sec": r.op_per_sec(op), "p50_us": s.p50_us,
                   "p99_us": s.p99_us, "p999_us": s.p999_us, "max_us": s.max_us}),
        );
    }
    json!({"ops_per_sec": r.ops_per_sec(), "elapsed_s": r.elapsed.as_secs_f64(),
           "errors": r.rec.total_errors(), "first_error": r.rec.first_error, "ops": ops})
}

async fn phase_mix(ctx: &mut Ctx, url: &str) -> anyhow::Result<()> {
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
        ctx.report.target(
            "sidecar save p50 <= 0.25x direct journaled MongoDB write",
            format!("no MongoDB ({why})"),
            None,
        );
    }
    for (c, s, m) in save_ratio {
        ctx.report.target(
            "sidecar save p50 <= 0.25x direct journaled MongoDB write",
            format!("{c} clients: {} vs {} = {:.3}x", us(s), us(m), s / m),
            Some(s / m <= 0.25),
        );
    }
    Ok(())
}

async fn phase_durability(
    ctx: &mut Ctx,
    url: &str,
    proc_: Option<&SidecarProcess>,
) -> anyhow::Result<()> {
    ctx.report.section("Durability: local vs memory");
    let dir = ctx.work.path().join("fsync-probe");
    let probe_fsync = || {
        machine::serial_fdatasync_rate(&dir, 512, Duration::from_secs(3))
            .context("measure the serial fdatasync rate")
    };
    // This disk's fsync time swings with its neighbours' load: measured before and after
    // the runs, and the mean taken.
    let fsync_before = probe_fsync()?;
    let clients = ctx.args.clients;
    let req = sample::save_request(ctx.args.state_bytes);
    ctx.report.line("");
    ctx.report.line(
        "| durability | clients | saves/s | p50 | p99 | p99.9 | WAL records per fsync | \
         mean WAL write+fsync |",
    );
    ctx.report.line("|---|---|---|---|---|---|---|---|");
    let mut results = BTreeMap::new();
    let mut json_rows = Vec::new();
    for durability in [Durability::Memory, Durability::Local] {
        let client = Client::new(url)
            .with_timeout(Duration::from_secs(30))
            .with_durability(durability);
        let prefix = format!("dur-{}-{}", ctx.nonce, durability.as_str());
        for i in 0..clients {
            client
                .save_state(&format!("{prefix}-{i}"), &req, None)
                .await
                .context("create the durability phase's agents")?;
        }
        let metrics_before = match proc_ {
            Some(s) => probe::metrics_text(s.addr).await,
            None => None,
        };
        let r = workload::run_clients(clients, ctx.duration(), |i, deadline| {
            let prefix = prefix.clone();
            workload::save_client(client.clone(), i, deadline, req.clone(), move |i, _| {
                format!("{prefix}-{i}")
            })
        })
        .await;
        let metrics_after = match proc_ {
            Some(s) => probe::metrics_text(s.addr).await,
            None => None,
        };
        let wal = metrics_before.zip(metrics_after).and_then(|(b, a)| {
            let d = |name| Some(probe::metric_sum(&a, name)? - probe::metric_sum(&b, name)?);
            Some((
                d("agentstate_wal_records_total")? / d("agentstate_wal_batches_total")?,
                d("agentstate_wal_fsync_duration_seconds_sum")?
                    / d("agentstate_wal_fsync_duration_seconds_count")?.max(1.0),
            ))
        });
        let per_fsync = wal.map(|w| w.0);
        let fsync_ms = wal.map(|w| w.1 * 1000.0);
        let s = Summary::of(&r.rec.combined());
        ctx.report.line(format!(
            "| {} | {clients} | {:.0} | {} | {} | {} | {} | {} |",
            durability.as_str(),
            r.ops_per_sec(),
            us(s.p50_us),
            us(s.p99_us),
            us(s.p999_us),
            per_fsync.map_or("?".into(), |v| format!("{v:.1}")),
            fsync_ms.map_or("?".into(), |v| format!("{v:.2} ms"))
        ));
        print_errors(&mut ctx.report, durability.as_str(), &r.rec);
        json_rows.push(
            json!({"durability": durability.as_str(), "clients": clients,
                   "records_per_fsync": per_fsync, "mean_fsync_ms": fsync_ms,
                   "result": summaries_json(&r)}),
        );
        results.insert(durability.as_str(), (r.ops_per_sec(), s));
        drain(&client).await?;
    }
    let fsync_after = probe_fsync()?;
    let fsync_rate = (fsync_before + fsync_after) / 2.0;
    ctx.report.line(format!(
        "serial fdatasync rate of the WAL's disk (512 B appends, one at a time): \
         {fsync_before:.0}/s before the runs, {fsync_after:.0}/s after, mean {fsync_rate:.0}/s"
    ));
    ctx.report.json.insert(
        "durability".into(),
        json!({"serial_fdatasync_per_sec": fsync_rate,
               "serial_fdatasync_per_sec_before": fsync_before,
               "serial_fdatasync_per_sec_after": fsync_after, "runs": json_rows}),
    );
    ctx.report.line("");
    let (local, local_s) = results["local"];
    let (memory, _) = results["memory"];
    ctx.report.target(
        format!("local saves at {clients} clients >= 0.8x memory throughput"),
        format!("{local:.0}/s vs {memory:.0}/s = {:.2}x", local / memory),
        Some(local / memory >= 0.8),
    );
    ctx.report.target(
        format!("local saves at {clients} clients >= 4x serial fdatasync rate"),
        format!(
            "{local:.0}/s vs {fsync_rate:.0}/s = {:.1}x",
            local / fsync_rate
        ),
        Some(local / fsync_rate >= 4.0),
    );
    ctx.report.target(
        format!("local saves at {clients} clients p99 < 2 ms"),
        us(local_s.p99_us),
        Some(local_s.p99_us < 2000.0),
    );
    Ok(())
}

/// One client of Redis GETs over `keys` until `deadline`.
/// One client of Redis GETs over `keys` until `deadline`; with `decode`, each value is
/// also decoded into a `PersistedState`, as the sidecar's client does with its answer.
async fn redis_client(
    addr: std::net::SocketAddr,
    i: usize,
    deadline: Instant,
    keys: Vec<String>,
    decode: bool,
) -> Recorder {
    let mut rec = Recorder::default();
    let mut conn = match RespConn::connect(addr).await {
        Ok(c) => c,
        Err(e) => {
            rec.error("redis get", e);
            return rec;
        }
    };
    let mut k = i;
    while Instant::now() < deadline {
        let key = &keys[k % keys.len()];
        let get = async {
            let bytes = conn.get(key).await.map_err(anyhow::Error::from)?;
            if decode {
                Codec::MsgPack.decode::<PersistedState>(&bytes)?;
            }
            anyhow::Ok(())
        };
        if rec.time("get", get).await.is_none() {
            return rec;
        }
        k += 1;
    }
    rec
}

async fn phase_cache(ctx: &mut Ctx, url: &str) -> anyhow::Result<()> {
    ctx.report.section("Cache-hit reads vs Redis GET");
    let client = Client::new(url).with_timeout(Duration::from_secs(30));
    let req = sample::save_request(ctx.args.state_bytes);
    let ids: Vec<String> = (0..CACHE_AGENTS)
        .map(|i| format!("cache-{}-{i}", ctx.nonce))
        .collect();
    for id in &ids {
        client
            .save_state(id, &req, None)
            .await
            .context("create the cache phase's agents")?;
    }
    drain(&client).await?;
    let body = client
        .load_state(&ids[0])
        .await?
        .map(|s| Codec::MsgPack.encode(&s))
        .transpose()?
        .context("a cached agent is missing")?;
    let redis = RedisServer::start();
    let redis_why = redis.as_ref().err().cloned();
    if let Ok(r) = &redis {
        let mut conn = RespConn::connect(r.addr)
            .await
            .context("connect to Redis")?;
        for id in &ids {
            conn.set(id, &body).await.context("Redis SET")?;
        }
    }
    ctx.report.line(format!(
        "{} agents, flushed first so every read is a cache hit; GET /v1/agents/{{id}} as \
         MessagePack ({} B), decoded by the client. Redis: GET of the same bytes, same \
         harness (tokio, one connection per client); the same plus decoding them into a \
         PersistedState (half as long a run); redis-benchmark's own p50. The ratio is \
         sidecar p50 / Redis GET p50.",
        CACHE_AGENTS,
        body.len()
    ));
    ctx.report.line("");
    ctx.report.line(
        "| clients | sidecar GET/s | sidecar p50 | sidecar p99 | Redis GET/s | Redis p50 | \
         Redis p99 | Redis GET + decode p50 | redis-benchmark p50 | p50 ratio |",
    );
    ctx.report.line("|---|---|---|---|---|---|---|---|---|---|");
    let duration = ctx.duration();
    let mut json_rows = Vec::new();
    let mut ratios = Vec::new();
    for &c in &ctx.args.concurrency.clone() {
        let r = workload::run_clients(c, duration, |i, deadline| {
            workload::load_client(client.clone(), i, deadline, ids.clone())
        })
        .await;
        print_errors(&mut ctx.report, "sidecar GET", &r.rec);
        let s = Summary::of(&r.rec.combined());
        ctx.report
            .throughput
            .entry("sidecar: cache-hit GET")
            .or_default()
            .push((c as f64, r.ops_per_sec()));
        let (redis_r, bench_p50) = match &redis {
            Ok(server) => {
                let addr = server.addr;
                let rr = workload::run_clients(c, duration, |i, deadline| {
                    redis_client(addr, i, deadline, ids.clone(), false)
                })
                .await;
                print_errors(&mut ctx.report, "Redis GET", &rr.rec);
                let rd = workload::run_clients(c, duration / 2, |i, deadline| {
                    redis_client(addr, i, deadline, ids.clone(), true)
                })
                .await;
                print_errors(&mut ctx.report, "Redis GET + decode", &rd.rec);
                let decoded = Summary::of(&rd.rec.combined());
                (
                    Some((rr, decoded)),
                    server.benchmark_get_p50_us(c, body.len()),
                )
            }
            Err(_) => (None, Err("no Redis".to_string())),
        };
        let decoded = redis_r.as_ref().map(|r| r.1);
        let redis_r = redis_r.map(|r| r.0);
        let rs = redis_r.as_ref().map(|rr| Summary::of(&rr.rec.combined()));
        if let Some(rr) = &redis_r {
            ctx.report
                .throughput
                .entry("Redis GET (same harness)")
                .or_default()
                .push((c as f64, rr.ops_per_sec()));
        }
        let ratio = rs.map(|rs| s.p50_us / rs.p50_us);
        ctx.report.line(format!(
            "| {c} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.ops_per_sec(),
            us(s.p50_us),
            us(s.p99_us),
            redis_r
                .as_ref()
                .map_or("-".into(), |rr| format!("{:.0}", rr.ops_per_sec())),
            rs.map_or("-".into(), |rs| us(rs.p50_us)),
            rs.map_or("-".into(), |rs| us(rs.p99_us)),
            decoded.map_or("-".into(), |d| us(d.p50_us)),
            bench_p50.as_ref().map_or_else(|e| e.clone(), |v| us(*v)),
            ratio.map_or("-".into(), |x| format!("{x:.2}x")),
        ));
        if let Some(x) = ratio {
            ratios.push((c, s.p50_us, rs.map_or(0.0, |r| r.p50_us), x));
        }
        json_rows.push(json!({
            "clients": c, "sidecar": summaries_json(&r),
            "redis": redis_r.as_ref().map(summaries_json),
            "redis_benchmark_p50_us": bench_p50.ok(),
            "redis_get_decode_p50_us": decoded.map(|d| d.p50_us),
        }));
    }
    ctx.report.json.insert(
        "cache".into(),
        json!({"body_bytes": body.len(), "redis": redis_why.clone().unwrap_or("ok".into()),
               "runs": json_rows}),
    );
    ctx.report.line("");
    if ratios.is_empty() {
        ctx.report.target(
            "cache-hit GET p50 within 1.5x of Redis GET at same concurrency",
            format!("no Redis: {}", redis_why.unwrap_or_default()),
            None,
        );
    }
    for (c, s, r, x) in ratios {
        ctx.report.target(
            "cache-hit GET p50 within 1.5x of Redis GET at same concurrency",
            format!("{c} clients: {} vs {} = {x:.2}x", us(s), us(r)),
            Some(x <= 1.5),
        );
    }
    Ok(())
}

async fn phase_hot(ctx: &mut Ctx) -> anyhow::Result<()> {
    ctx.report.section("Hot agents: MongoDB writes vs updates");
    let cpu = CpuSnapshot::take();
    let target = "hot-agent MongoDB write ops <= 1/10 of update rate";
    let Some(mongo) = ctx.mongo_client.clone() else {
        let why = format!(
            "no MongoDB: {}",
            ctx.mongo_missing.as_deref().unwrap_or("?")
        );
        ctx.report.target(target, why, None);
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
            Some(s) => probe::metrics_text(s.addr).await,
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
        let d = |n| Some(probe::metric_sum(&b, n)? - probe::metric_sum(&a, n)?);
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
    match writes {
        Some(w) => ctx.report.target(
            target,
            format!(
                "{w:.0} writes for {updates:.0} updates = 1/{:.1}",
                updates / w.max(1.0)
            ),
            Some(w * 10.0 <= updates),
        ),
        None => ctx
            .report
            .target(target, "no /metrics or serverStatus figures".into(), None),
    }
    // Before the sidecar goes: a dead process's CPU time would count as "other".
    cpu_line(ctx, "hot", &cpu);
    Ok(())
}

async fn phase_append(ctx: &mut Ctx, s: &SidecarProcess) -> anyhow::Result<()> {
    ctx.report.section("Bytes written per message append");
    let local = s.client();
    let memory = s.client().with_durability(Durability::Memory);
    let agent = format!("appender-{}", ctx.nonce);
    local
        .save_state(
            &agent,
            &SaveStateRequest {
                agent_type: Some("greeter".into()),
                state_name: "greeting".into(),
                state_data: Some(sample::state_data(ctx.args.state_bytes)),
                metadata: None,
            },
            None,
        )
        .await?;
    let message = |n: u64| {
        vec![NewMessage {
            role: if n.is_multiple_of(2) {
                "assistant"
            } else {
                "user"
            }
            .into(),
            content: format!(
                "Message {n}: autumn moonlight, a worm digs silently into the chestnut."
            ),
            metadata: Default::default(),
        }]
    };
    let points: Vec<u64> = APPEND_POINTS
        .iter()
        .copied()
        .filter(|p| *p <= ctx.args.appends)
        .collect();
    let mut grew = BTreeMap::new();
    let started = Instant::now();
    for n in 1..=ctx.args.appends {
        if points.contains(&n) {
            // The previous append was local: everything before it is on disk and counted.
            let before = local.status().await?.wal_bytes;
            local.append_messages(&agent, message(n), None).await?;
            let after = local.status().await?.wal_bytes;
            grew.insert(n, after as i64 - before as i64);
        } else if points.contains(&(n + 1)) {
            local.append_messages(&agent, message(n), None).await?;
        } else {
            memory.append_messages(&agent, message(n), None).await?;
        }
    }
    ctx.report.line(format!(
        "{} appends of one message (~75 B) to one agent in {:.1} s; WAL growth of the \
         append at each point (GET /v1/status wal_bytes before and after):",
        ctx.args.appends,
        started.elapsed().as_secs_f64()
    ));
    ctx.report.line("");
    ctx.report.line("| append # | WAL bytes written |");
    ctx.report.line("|---|---|");
    for (n, b) in &grew {
        ctx.report.line(format!("| {n} | {b} |"));
    }
    ctx.report
        .json
        .insert("append_wal_bytes".into(), json!(grew));
    ctx.report.line("");
    let target = "bytes per message append constant (#10 vs #10,000)";
    match (grew.get(&10), grew.get(&10_000)) {
        (Some(&a), Some(&b)) if a > 0 => {
            let ratio = b as f64 / a as f64;
            ctx.report.target(
                target,
                format!("{a} B vs {b} B = {ratio:.3}x"),
                Some((ratio - 1.0).abs() <= 0.05),
            );
        }
        _ => ctx
            .report
            .target(target, "not measured (--appends < 10000?)".into(), None),
    }
    Ok(())
}

async fn phase_sustained(ctx: &mut Ctx, s: &SidecarProcess) -> anyhow::Result<()> {
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

async fn phase_replay(ctx: &mut Ctx) -> anyhow::Result<()> {
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
    let target = "WAL replay >= 1M records/s";
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
            ctx.report.target(
                target,
                format!("{rate:.0} records/s ({n} records in {ms} ms)"),
                Some(rate >= 1_000_000.0),
            );
        }
        _ => ctx.report.target(
            target,
            "no \"WAL replayed\" line with records and elapsed_ms in the log".into(),
            None,
        ),
    }
    // Before the sidecar goes: a dead process's CPU time would count as "other". (The
    // instance killed above already counts there.)
    cpu_line(ctx, "replay", &cpu);
    Ok(())
}
