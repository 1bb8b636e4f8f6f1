//! Prometheus metrics: names, help texts, buckets, and the `/metrics` rendering.
//!
//! Names follow `agentstate_<what>_<unit>` (`_total` counters, `_seconds` histograms);
//! labels have bounded cardinality: never an agent id (agent types are the declared
//! ones, or `undeclared`; routes are templates). Gauges are set from the engine's own
//! figures when `/metrics` is scraped, so nothing runs in the background for them.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS_TOTAL: &str = "agentstate_requests_total";
pub const REQUESTS_REFUSED_TOTAL: &str = "agentstate_requests_refused_total";
pub const REQUEST_DURATION: &str = "agentstate_request_duration_seconds";
pub const WAL_APPEND_DURATION: &str = "agentstate_wal_append_duration_seconds";
pub const WAL_FSYNC_DURATION: &str = "agentstate_wal_fsync_duration_seconds";
pub const WAL_BATCHES_TOTAL: &str = "agentstate_wal_batches_total";
pub const WAL_RECORDS_TOTAL: &str = "agentstate_wal_records_total";
pub const WAL_BYTES: &str = "agentstate_wal_bytes";
pub const WAL_SEGMENTS: &str = "agentstate_wal_segments";
pub const FLUSH_DURATION: &str = "agentstate_flush_duration_seconds";
pub const FLUSH_BATCHES_TOTAL: &str = "agentstate_flush_batches_total";
pub const FLUSH_BATCH_AGENTS: &str = "agentstate_flush_batch_agents";
pub const BACKEND_ERRORS_TOTAL: &str = "agentstate_backend_errors_total";
pub const BACKLOG_AGENTS: &str = "agentstate_backlog_agents";
pub const BACKLOG_BYTES: &str = "agentstate_backlog_bytes";
pub const BACKLOG_BYTES_MAX: &str = "agentstate_backlog_bytes_max";
pub const MEMORY_LIMIT_BYTES: &str = "agentstate_memory_limit_bytes";
pub const MEMORY_BOUND_BYTES: &str = "agentstate_memory_bound_bytes";
pub const BACKLOG_OLDEST_AGE: &str = "agentstate_backlog_oldest_age_seconds";
pub const CACHE_ENTRIES: &str = "agentstate_cache_entries";
pub const CACHE_BYTES: &str = "agentstate_cache_bytes";
pub const THREAD_CACHE_READS_TOTAL: &str = "agentstate_thread_cache_reads_total";
pub const TRANSITIONS_TOTAL: &str = "agentstate_transitions_total";
pub const VALIDATION_FAILURES_TOTAL: &str = "agentstate_validation_failures_total";
pub const CONFLICTS_TOTAL: &str = "agentstate_conflicts_total";
pub const RECOVERY_RUNS_TOTAL: &str = "agentstate_recovery_runs_total";
pub const RECOVERY_RECORDS_TOTAL: &str = "agentstate_recovery_records_replayed_total";
pub const RECOVERY_DURATION: &str = "agentstate_recovery_duration_seconds";
pub const READY: &str = "agentstate_ready";
pub const STORAGE_ROWS: &str = "agentstate_storage_rows";
pub const STORAGE_DATA_BYTES: &str = "agentstate_storage_data_bytes";
pub const STORAGE_BYTES: &str = "agentstate_storage_bytes";
pub const STORAGE_INDEX_BYTES: &str = "agentstate_storage_index_bytes";

/// Latency buckets: 50 µs to 10 s, covering a memory write to a slow MongoDB.
const SECONDS_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
const AGENTS_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Installs the recorder (once per process) and returns the handle `/metrics` renders.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Full(FLUSH_BATCH_AGENTS.into()), AGENTS_BUCKETS)
            })
            .expect("bucket lists are non-empty constants")
            .build_recorder();
        let handle = recorder.handle();
        // A second server in the same process (benchmarks, tests) shares the first
        // recorder; only the first install can succeed.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        // Histogram samples wait in the recorder until a render or an upkeep folds them
        // into buckets: without a scraper they would pile up, a few bytes per request.
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            })
            .expect("spawn the metrics upkeep thread");
        handle
    })
}

fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        "HTTP requests, by route template and status"
    );
    describe_gauge!(
        MEMORY_LIMIT_BYTES,
        Unit::Bytes,
        "The memory limit the bounds were fitted to (--memory-limit-bytes or the container's); 0 if none"
    );
    describe_gauge!(
        MEMORY_BOUND_BYTES,
        Unit::Bytes,
        "Each in-memory bound in force, by part: backlog, cache, thread_cache"
    );
    describe_counter!(
        REQUESTS_REFUSED_TOTAL,
        "Requests refused before routing, by reason: host (Host not this sidecar's), cross_origin (a browser write from another site), media_type (a body neither JSON nor MessagePack)"
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency, by route template"
    );
    describe_histogram!(
        WAL_APPEND_DURATION,
        Unit::Seconds,
        "WAL append until durable (group commit wait included)"
    );
    describe_histogram!(
        WAL_FSYNC_DURATION,
        Unit::Seconds,
        "WAL write and fdatasync of one group-commit batch"
    );
    describe_counter!(WAL_BATCHES_TOTAL, "WAL group-commit batches written");
    describe_counter!(WAL_RECORDS_TOTAL, "WAL records appended");
    describe_gauge!(WAL_BYTES, Unit::Bytes, "bytes in WAL segments on disk");
    describe_gauge!(WAL_SEGMENTS, "WAL segments on disk");
    describe_histogram!(
        FLUSH_DURATION,
        Unit::Seconds,
        "one flush batch to the backend"
    );
    describe_counter!(FLUSH_BATCHES_TOTAL, "flush batches, by outcome (ok, error)");
    describe_histogram!(FLUSH_BATCH_AGENTS, "agents written per flush batch");
    describe_counter!(
        BACKEND_ERRORS_TOTAL,
        "backend errors, by kind (unavailable, rejected)"
    );
    describe_gauge!(BACKLOG_AGENTS, "agents with changes not yet in the backend");
    describe_gauge!(
        BACKLOG_BYTES,
        Unit::Bytes,
        "bytes of changes not yet in the backend"
    );
    describe_gauge!(
        BACKLOG_BYTES_MAX,
        Unit::Bytes,
        "backlog bound; writes get 503 beyond it"
    );
    describe_gauge!(
        BACKLOG_OLDEST_AGE,
        Unit::Seconds,
        "age of the oldest change not yet in the backend"
    );
    describe_gauge!(CACHE_ENTRIES, "agents in the read cache");
    describe_gauge!(
        CACHE_BYTES,
        Unit::Bytes,
        "bytes the read cache's agents are charged against --cache-bytes-max"
    );
    describe_counter!(
        THREAD_CACHE_READS_TOTAL,
        "reads of a thread's latest checkpoint, by outcome (hit: answered from memory, miss)"
    );
    describe_counter!(
        TRANSITIONS_TOTAL,
        "state transitions, by agent type and outcome (ok, refused, aborted)"
    );
    describe_counter!(VALIDATION_FAILURES_TOTAL, "refused changes, by rule");
    describe_counter!(CONFLICTS_TOTAL, "conflicts, by kind (version, state)");
    describe_counter!(RECOVERY_RUNS_TOTAL, "start-up recoveries, by outcome");
    describe_counter!(RECOVERY_RECORDS_TOTAL, "WAL records replayed at start-up");
    describe_histogram!(RECOVERY_DURATION, Unit::Seconds, "WAL replay at start-up");
    describe_gauge!(
        READY,
        "1 when the sidecar serves (WAL replayed and open), else 0"
    );
    describe_gauge!(
        STORAGE_ROWS,
        "rows (documents) in the backend, by table (collection); refreshed every --usage-interval-secs"
    );
    describe_gauge!(
        STORAGE_DATA_BYTES,
        Unit::Bytes,
        "bytes of the rows themselves in the backend, by table"
    );
    describe_gauge!(
        STORAGE_BYTES,
        Unit::Bytes,
        "bytes a table takes on disk in the backend (free space in its pages included)"
    );
    describe_gauge!(
        STORAGE_INDEX_BYTES,
        Unit::Bytes,
        "bytes of a table's indexes in the backend"
    );
}

/// Sets the storage gauges from a reading of the backend's usage.
pub fn set_storage(tables: &[agentstate_protocol::TableUsage]) {
    for t in tables {
        let table = t.name.clone();
        metrics::gauge!(STORAGE_ROWS, "table" => table.clone()).set(t.rows as f64);
        metrics::gauge!(STORAGE_DATA_BYTES, "table" => table.clone()).set(t.data_bytes as f64);
        metrics::gauge!(STORAGE_BYTES, "table" => table.clone()).set(t.storage_bytes as f64);
        metrics::gauge!(STORAGE_INDEX_BYTES, "table" => table).set(t.index_bytes as f64);
    }
}

/// The Prometheus text of every metric (the caller sets the gauges first).
pub fn render() -> String {
    install().render()
}
