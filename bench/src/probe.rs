//! Figures read from outside a running system: the sidecar's `/metrics` (Prometheus
//! text), its JSON-lines log, MongoDB's `serverStatus` opcounters, a process's RSS over
//! time, and who used the CPU (this run's processes, by command, against everything
//! else on the machine, which on a shared machine says how far to trust a figure).
//!
//! Hazard: these are observers; a figure that cannot be read is `None` and reported as
//! missing, never guessed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use mongodb::bson::{doc, Bson};
use prometheus_parse::{Scrape, Value};

use crate::sidecar_proc::rss_kib;

/// Largest `/metrics` page read.
const METRICS_BYTES_MAX: usize = 8 * 1024 * 1024;
/// How long a `/metrics` scrape may take.
const METRICS_TIMEOUT: Duration = Duration::from_secs(10);

/// A `/metrics` page, parsed (Prometheus text format, by `prometheus-parse`).
///
/// Hazard: that parser skips a sample whose label values hold a `}` (the sidecar's
/// `route="/v1/agents/{id}"` labels), so a sum over such a metric would come out short.
/// The figures read here (WAL, flush, cache) carry no such labels; a test pins that.
pub struct Metrics(Scrape);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        // Reading from memory cannot fail: every line is `Ok`.
        Metrics(Scrape::parse(lines).expect("lines from memory are all Ok"))
    }

    /// The sum over every label set of the sample `name` (e.g.
    /// `agentstate_flush_batch_agents_sum`, `agentstate_wal_records_total`); `None` if the
    /// page has no such sample.
    pub fn sum(&self, name: &str) -> Option<f64> {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter_map(|s| match s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
                Value::Histogram(_) | Value::Summary(_) => None,
            })
            .fold(None, |sum, v| Some(sum.unwrap_or(0.0) + v))
    }
}

/// `GET /metrics` of the sidecar at `addr`, parsed; `None` if it cannot be read.
pub async fn metrics(addr: SocketAddr) -> Option<Metrics> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{addr}/metrics").parse().ok()?;
    let scrape = async {
        let response = client.get(uri).await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = Limited::new(response.into_body(), METRICS_BYTES_MAX)
            .collect()
            .await
            .ok()?
            .to_bytes();
        Some(Metrics::parse(&String::from_utf8_lossy(&body)))
    };
    tokio::time::timeout(METRICS_TIMEOUT, scrape)
        .await
        .ok()
        .flatten()
}

/// The fields of the last JSON log line whose message is `message`.
pub fn last_log_fields(log: &str, message: &str) -> Option<serde_json::Value> {
    log.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == message)
        .map(|v| v["fields"].clone())
}

/// `serverStatus.opcounters`: `(insert, update, delete)`.
pub async fn opcounters(client: &mongodb::Client) -> Option<(i64, i64, i64)> {
    let status = client
        .database("admin")
        .run_command(doc! { "serverStatus": 1 })
        .await
        .ok()?;
    let ops = status.get_document("opcounters").ok()?;
    let get = |k: &str| match ops.get(k)? {
        Bson::Int32(v) => Some(*v as i64),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) => Some(*v as i64),
        _ => None,
    };
    Some((get("insert")?, get("update")?, get("delete")?))
}

/// Samples a process's RSS in the background until dropped.
pub struct RssSampler {
    /// `(seconds since start, KiB)`.
    pub samples: Arc<Mutex<Vec<(f64, u64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32, every: Duration) -> RssSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let out = samples.clone();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let Some(kib) = rss_kib(pid) else { return };
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((started.elapsed().as_secs_f64(), kib));
            }
        });
        RssSampler { samples, task }
    }

    pub fn take(&self) -> Vec<(f64, u64)> {
        self.samples
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Clock ticks per second of `/proc` CPU times (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;
/// How often the CPU watch samples `/proc`: a process that exits loses at most this much
/// of its CPU time from the accounts.
const CPU_SAMPLE_EVERY: Duration = Duration::from_millis(200);

/// `(command, parent pid, utime + stime ticks)` of a process, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(String, u32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`: comm may hold spaces, so split at the last ')'.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let comm = stat[open + 1..close].to_string();
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok());
    // After the comm: state(0) ppid(1) ... utime(11) stime(12).
    Some((comm, field(1)? as u32, field(11)? + field(12)?))
}

/// CPU time (user + system) a process has used so far, in seconds; `None` once it is
/// gone. At `USER_HZ` resolution (10 ms).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    proc_stat(pid).map(|(_, _, ticks)| ticks as f64 / TICKS_PER_SEC)
}

/// Busy ticks of all CPUs (`/proc/stat` minus idle and iowait), and per process
/// `pid -> (command, parent pid, utime + stime ticks)`.
fn read_cpu() -> (u64, std::collections::HashMap<u32, (String, u32, u64)>) {
    let busy = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let v: Vec<u64> = s
                .lines()
                .next()?
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal
            Some(v.iter().sum::<u64>() - v.get(3)? - v.get(4)?)
        })
        .unwrap_or(0);
    let mut procs = std::collections::HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if let Some(entry) = proc_stat(pid) {
                procs.insert(pid, entry);
            }
        }
    }
    (busy, procs)
}

/// Running totals of CPU time: the machine's, and that of this process and every process
/// it started (by command), including those that have exited since.
#[derive(Default)]
struct CpuWatch {
    busy: u64,
    ours: std::collections::BTreeMap<String, u64>,
    /// Ticks of each of our processes at the last sample.
    last: std::collections::HashMap<u32, u64>,
    sampled: bool,
}

impl CpuWatch {
    fn sample(&mut self) {
        let (busy, procs) = read_cpu();
        let me = std::process::id();
        let descends = |mut pid: u32| {
            for _ in 0..64 {
                if pid == me {
                    return true;
                }
                match procs.get(&pid) {
                    Some((_, ppid, _)) if *ppid != 0 => pid = *ppid,
                    _ => return false,
                }
            }
            false
        };
        let mut last = std::collections::HashMap::new();
        for (pid, (comm, _, ticks)) in &procs {
            if !descends(*pid) {
                continue;
            }
            // A process first seen after the first sample started since: all its time is new.
            let before = match self.last.get(pid) {
                Some(t) => *t,
                None if self.sampled => 0,
                None => *ticks,
            };
            *self.ours.entry(comm.clone()).or_default() += ticks.saturating_sub(before);
            last.insert(*pid, *ticks);
        }
        self.last = last;
        self.busy = busy;
        self.sampled = true;
    }
}

/// The process-wide watch, sampled by a background thread from its first use on.
fn cpu_watch() -> &'static Mutex<CpuWatch> {
    static WATCH: std::sync::OnceLock<Mutex<CpuWatch>> = std::sync::OnceLock::new();
    WATCH.get_or_init(|| {
        let mut w = CpuWatch::default();
        w.sample();
        let spawned = std::thread::Builder::new()
            .name("cpu-watch".into())
            .spawn(|| loop {
                std::thread::sleep(CPU_SAMPLE_EVERY);
                cpu_watch()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .sample();
            });
        if let Err(e) = spawned {
            // Without the thread, exited processes' time counts as "other"; say so.
            eprintln!("cpu-watch thread not started ({e}); CPU shares are approximate");
        }
        Mutex::new(w)
    })
}

/// CPU time used so far, from the process-wide watch.
pub struct CpuSnapshot {
    at: Instant,
    busy: u64,
    ours: std::collections::BTreeMap<String, u64>,
}

impl CpuSnapshot {
    pub fn take() -> CpuSnapshot {
        let mut w = cpu_watch().lock().unwrap_or_else(|p| p.into_inner());
        w.sample();
        CpuSnapshot {
            at: Instant::now(),
            busy: w.busy,
            ours: w.ours.clone(),
        }
    }

    /// CPU used since `earlier`, in cores: per command of this process and the processes
    /// it started, and `"other"` for everything else on the machine.
    pub fn cores_since(&self, earlier: &CpuSnapshot) -> Vec<(String, f64)> {
        let secs = self.at.duration_since(earlier.at).as_secs_f64().max(1e-3);
        let cores = |ticks: u64| ticks as f64 / TICKS_PER_SEC / secs;
        let mut ours_total = 0;
        let mut out = Vec::new();
        for (comm, ticks) in &self.ours {
            let used = ticks.saturating_sub(earlier.ours.get(comm).copied().unwrap_or(0));
            if used > 0 {
                ours_total += used;
                out.push((comm.clone(), cores(used)));
            }
        }
        let other = self
            .busy
            .saturating_sub(earlier.busy)
            .saturating_sub(ours_total);
        out.push(("other".into(), cores(other)));
        out
    }
}

/// `"agentstate 0.85, agentstate-load 0.40, other 0.10"` (cores).
pub fn format_cores(cores: &[(String, f64)]) -> String {
    cores
        .iter()
        .map(|(c, v)| format!("{c} {v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_add_every_label_set() {
        let m = Metrics::parse(
            "# HELP agentstate_flush_batches_total x\n\
             # TYPE agentstate_flush_batches_total counter\n\
             agentstate_flush_batches_total{outcome=\"ok\"} 10\n\
             agentstate_flush_batches_total{outcome=\"error\"} 2\n\
             agentstate_flush_batches_total_other 5\n",
        );
        assert_eq!(m.sum("agentstate_flush_batches_total"), Some(12.0));
        assert_eq!(m.sum("agentstate_missing"), None);
    }

    /// The shapes the load tool reads, as the sidecar writes them.
    #[test]
    fn sidecar_histograms_and_gauges_are_read() {
        let m = Metrics::parse(
            "# TYPE agentstate_cache_entries gauge\n\
             agentstate_cache_entries 1000\n\
             # TYPE agentstate_flush_batch_agents histogram\n\
             agentstate_flush_batch_agents_bucket{le=\"1\"} 1\n\
             agentstate_flush_batch_agents_bucket{le=\"+Inf\"} 3\n\
             agentstate_flush_batch_agents_sum 17\n\
             agentstate_flush_batch_agents_count 3\n\
             # TYPE agentstate_requests_total counter\n\
             agentstate_requests_total{route=\"/v1/agents/{id}\",status=\"200\"} 9\n",
        );
        assert_eq!(m.sum("agentstate_cache_entries"), Some(1000.0));
        assert_eq!(m.sum("agentstate_flush_batch_agents_sum"), Some(17.0));
        assert_eq!(m.sum("agentstate_flush_batch_agents_count"), Some(3.0));
        // The parser's limit (see `Metrics`): a `}` in a label value loses the sample.
        assert_eq!(m.sum("agentstate_requests_total"), None);
    }

    #[test]
    fn the_last_matching_log_line_wins() {
        let log = "{\"fields\":{\"message\":\"WAL replayed\",\"records\":1}}\n\
                   not json\n\
                   {\"fields\":{\"message\":\"WAL replayed\",\"records\":2}}\n";
        assert_eq!(last_log_fields(log, "WAL replayed").unwrap()["records"], 2);
    }
}
