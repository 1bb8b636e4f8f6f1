//! What every phase shares: the run's context (arguments, MongoDB, the report, the
//! sidecar launcher) and the steps phases repeat (wait for a quiet machine, drain the
//! backlog, account the CPU, summarise a run).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use agentstate_bench::example_agent_types;
use agentstate_bench::mongo_server::MongoServer;
use agentstate_bench::probe::{self, CpuSnapshot};
use agentstate_bench::report::{mib, us, Report};
use agentstate_bench::sidecar_proc::SidecarProcess;
use agentstate_bench::stats::{Recorder, Summary};
use agentstate_bench::workload::RunResult;
use agentstate_protocol::Client;
use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::args::Args;

/// Cores other processes may use for the machine to count as quiet.
pub const QUIET_CORES_MAX: f64 = 0.15;
/// How long to wait for the flusher to empty the backlog between phases.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(180);

/// Everything a phase may need.
pub struct Ctx {
    pub args: Args,
    /// The `agentstate` binary the phases start, if one was found.
    pub bin: Option<PathBuf>,
    /// Data dirs and logs of this run's sidecars; removed at the end.
    pub work: tempfile::TempDir,
    /// The run's MongoDB-wire server, when there is one.
    pub mongo: Option<MongoServer>,
    /// A driver client of `mongo`, for direct writes and `serverStatus`.
    pub mongo_client: Option<mongodb::Client>,
    /// Why there is no MongoDB, when there is none.
    pub mongo_missing: Option<String>,
    /// Where every phase writes its lines, tables, targets and chart data.
    pub report: Report,
    /// Unique per run, so agent ids never collide with an earlier run's.
    pub nonce: String,
}

impl Ctx {
    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.args.duration_secs)
    }

    pub fn bin(&self) -> anyhow::Result<&PathBuf> {
        self.bin.as_ref().context(
            "no agentstate binary: build it with `cargo build --release -p agentstate` \
             or pass --sidecar-bin",
        )
    }

    /// Starts a sidecar with the example agent types and `extra` flags.
    pub async fn start_sidecar(
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
pub async fn wait_for_quiet(max: Duration) -> f64 {
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
pub fn cpu_line(ctx: &mut Ctx, phase: &str, before: &CpuSnapshot) {
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
pub async fn drain(client: &Client) -> anyhow::Result<Duration> {
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

pub fn print_errors(report: &mut Report, what: &str, rec: &Recorder) {
    if rec.total_errors() > 0 {
        report.line(format!(
            "{what}: {} failed operations; first: {}",
            rec.total_errors(),
            rec.first_error.as_deref().unwrap_or("?")
        ));
    }
}

/// RSS after a second of idleness.
pub async fn idle_rss(ctx: &mut Ctx, s: &SidecarProcess, what: &str) {
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

pub fn summary_row(system: &str, clients: usize, r: &RunResult, op: &str) -> Option<String> {
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

pub fn summaries_json(r: &RunResult) -> Value {
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
