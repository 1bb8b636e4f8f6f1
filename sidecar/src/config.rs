//! Configuration: flags, each also an `AGENTSTATE_<FLAG>` environment variable, plus the
//! `--config` TOML file of agent types. Built and validated once at start-up; a bad value
//! fails there with a message naming the flag.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::memory_budget::{cgroup_limit, Budget, LimitSource, Requested};
use crate::validate::{AgentTypeDef, AgentTypes};

#[derive(Debug, Parser)]
#[command(
    name = "agentstate",
    version,
    about = "Durable state for AI agents: a localhost sidecar with a WAL, a cache and batched flushes to MongoDB"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the sidecar daemon.
    Serve(ServeArgs),
    /// Print the WAL's records, decoded; with --agent, that agent's records and latest
    /// state. Reads only: safe on a running sidecar's data dir.
    Dump(DumpArgs),
    /// Compare the latest state of every agent in the WAL with the backend; exit 1 on any
    /// difference.
    Check(CheckArgs),
    /// Replay the WAL to the backend and exit; or roll an agent back to a checkpoint; or
    /// cut a corrupt WAL record (and what follows) aside so the sidecar can start.
    Recover(RecoverArgs),
    /// Apply retention to the backend now (limits from the flags, else from --config).
    Cleanup(CleanupArgs),
    /// Write agents (state, transition log, conversation, checkpoints) and transfers to a
    /// file, JSON Lines (see the README); changes not flushed yet included. Runs on the
    /// data dir: stop the sidecar using it first.
    Export(ExportArgs),
    /// Load an export file into the data dir and its backend, through the WAL, as it was
    /// (versions, sequence numbers, timestamps). An agent here that is the same is left
    /// alone; one that differs is refused, unless --overwrite.
    Import(ImportArgs),
    /// Print what the backend holds: per table (collection) its rows and bytes, and the
    /// agents holding the most bytes. Reads only: safe beside a running sidecar.
    Usage(UsageArgs),
}

#[derive(Debug, Clone, Args)]
pub struct UsageArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// How many of the largest agents to name.
    #[arg(long, default_value_t = 10)]
    pub top: u32,
}

#[derive(Debug, Clone, Args)]
pub struct DumpArgs {
    #[arg(long, env = env::DATA_DIR, default_value = "./agentstate-data")]
    pub data_dir: PathBuf,
    /// Only this agent's records, then its latest state in the WAL.
    #[arg(long)]
    pub agent: Option<String>,
    /// One JSON object per record instead of a summary line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RecoverArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// Move the first corrupt WAL record, the rest of its segment and every later segment
    /// to wal/quarantine/, so the sidecar can start without them (their changes are lost).
    #[arg(long)]
    pub truncate_corrupt: bool,
    /// Roll this agent back (with --checkpoint).
    #[arg(long, requires = "checkpoint")]
    pub rollback: Option<String>,
    /// The checkpoint to roll back to.
    #[arg(long, requires = "rollback")]
    pub checkpoint: Option<String>,
    /// Give up waiting for the backend after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
}

#[derive(Debug, Clone, Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    #[command(flatten)]
    pub retention: RetentionPolicy,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The file to write (replaced if it exists, once the export is whole).
    pub file: PathBuf,
    /// Only this agent, and the transfers it took part in (repeatable).
    #[arg(long = "agent", value_name = "ID")]
    pub agents: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub serve: ServeArgs,
    /// The export file to read.
    pub file: PathBuf,
    /// Replace agents here that differ from the file's (their history with them),
    /// instead of refusing the import.
    #[arg(long)]
    pub overwrite: bool,
    /// Check the file against what is here and say what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Give up waiting for the backend after this many seconds.
    #[arg(long, default_value_t = 60)]
    pub wait_secs: u64,
}

/// Every env var name, in one place.
pub mod env {
    pub const LISTEN: &str = "AGENTSTATE_LISTEN";
    pub const DATA_DIR: &str = "AGENTSTATE_DATA_DIR";
    pub const MONGODB_URI: &str = "AGENTSTATE_MONGODB_URI";
    pub const DATABASE: &str = "AGENTSTATE_DATABASE";
    pub const CONFIG: &str = "AGENTSTATE_CONFIG";
    pub const FLUSH_INTERVAL_MS: &str = "AGENTSTATE_FLUSH_INTERVAL_MS";
    pub const USAGE_INTERVAL_SECS: &str = "AGENTSTATE_USAGE_INTERVAL_SECS";
    pub const FLUSH_BATCH_MAX: &str = "AGENTSTATE_FLUSH_BATCH_MAX";
    pub const MEMORY_LIMIT_BYTES: &str = "AGENTSTATE_MEMORY_LIMIT_BYTES";
    pub const BACKLOG_BYTES_MAX: &str = "AGENTSTATE_BACKLOG_BYTES_MAX";
    pub const CACHE_ENTRIES_MAX: &str = "AGENTSTATE_CACHE_ENTRIES_MAX";
    pub const CACHE_BYTES_MAX: &str = "AGENTSTATE_CACHE_BYTES_MAX";
    pub const THREAD_CACHE_BYTES_MAX: &str = "AGENTSTATE_THREAD_CACHE_BYTES_MAX";
    pub const WAL_SEGMENT_BYTES_MAX: &str = "AGENTSTATE_WAL_SEGMENT_BYTES_MAX";
    pub const WAL_FSYNC: &str = "AGENTSTATE_WAL_FSYNC";
    pub const BODY_BYTES_MAX: &str = "AGENTSTATE_BODY_BYTES_MAX";
    pub const BACKEND_TIMEOUT_MS: &str = "AGENTSTATE_BACKEND_TIMEOUT_MS";
    pub const REMOTE_TIMEOUT_MS: &str = "AGENTSTATE_REMOTE_TIMEOUT_MS";
    pub const SHUTDOWN_GRACE_MS: &str = "AGENTSTATE_SHUTDOWN_GRACE_MS";
    pub const LOG_FORMAT: &str = "AGENTSTATE_LOG_FORMAT";
    pub const MESSAGES_PER_REQUEST_MAX: &str = "AGENTSTATE_MESSAGES_PER_REQUEST_MAX";
    pub const MESSAGE_BYTES_MAX: &str = "AGENTSTATE_MESSAGE_BYTES_MAX";
    pub const BATCH_OPERATIONS_MAX: &str = "AGENTSTATE_BATCH_OPERATIONS_MAX";
    pub const TRANSFER_MESSAGES_MAX: &str = "AGENTSTATE_TRANSFER_MESSAGES_MAX";
    pub const AUTH_TOKEN_FILE: &str = "AGENTSTATE_AUTH_TOKEN_FILE";
    pub const UNIX_SOCKET: &str = "AGENTSTATE_UNIX_SOCKET";
    pub const ALLOWED_HOSTS: &str = "AGENTSTATE_ALLOWED_HOSTS";
    pub const UI_WRITES: &str = "AGENTSTATE_UI_WRITES";
    pub const LEASE_MS: &str = "AGENTSTATE_LEASE_MS";
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Keep it on loopback: the sidecar has no authentication.
    #[arg(long, env = env::LISTEN, default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Directory for the WAL and the embedded store.
    #[arg(long, env = env::DATA_DIR, default_value = "./agentstate-data")]
    pub data_dir: PathBuf,
    /// MongoDB connection string. Absent: the embedded SQLite store in the data dir.
    #[arg(long, env = env::MONGODB_URI, hide_env_values = true)]
    pub mongodb_uri: Option<String>,
    /// MongoDB database name.
    #[arg(long, env = env::DATABASE, default_value = "agentstate")]
    pub database: String,
    /// TOML file with agent types and policies.
    #[arg(long, env = env::CONFIG)]
    pub config: Option<PathBuf>,
    /// Flush the backlog to the backend at least this often.
    #[arg(long, env = env::FLUSH_INTERVAL_MS, default_value_t = 100)]
    pub flush_interval_ms: u64,
    /// Read the backend's storage usage (the agentstate_storage_* gauges) this often; 0:
    /// never.
    #[arg(long, env = env::USAGE_INTERVAL_SECS, default_value_t = 60)]
    pub usage_interval_secs: u64,
    /// Most agents in one flush batch; a full batch is flushed at once.
    #[arg(long, env = env::FLUSH_BATCH_MAX, default_value_t = 1000)]
    pub flush_batch_max: usize,
    /// Memory the sidecar may use, to which the three bounds below are fitted when not
    /// given (together at most half of it). Default: the container's limit (cgroup v2
    /// `memory.max`, else v1 `memory.limit_in_bytes`); without one, each bound defaults
    /// to 256 MiB.
    #[arg(long, env = env::MEMORY_LIMIT_BYTES)]
    pub memory_limit_bytes: Option<u64>,
    /// Most unflushed bytes held while the backend lags; past it writes get 503.
    /// Default: 2/5 of the memory budget, at most 256 MiB.
    #[arg(long, env = env::BACKLOG_BYTES_MAX)]
    pub backlog_bytes_max: Option<u64>,
    /// Most agents kept in the read cache.
    #[arg(long, env = env::CACHE_ENTRIES_MAX, default_value_t = 100_000)]
    pub cache_entries_max: u64,
    /// Most bytes the read cache's agents take (their records, documents and encoded
    /// `GET` bodies). Default: 2/5 of the memory budget, at most 256 MiB.
    #[arg(long, env = env::CACHE_BYTES_MAX)]
    pub cache_bytes_max: Option<u64>,
    /// Most bytes of threads' latest checkpoints kept in memory. Default: 1/5 of the
    /// memory budget, at most 256 MiB.
    #[arg(long, env = env::THREAD_CACHE_BYTES_MAX)]
    pub thread_cache_bytes_max: Option<u64>,
    /// A WAL segment is closed once it reaches this size.
    #[arg(long, env = env::WAL_SEGMENT_BYTES_MAX, default_value_t = 64 * 1024 * 1024)]
    pub wal_segment_bytes_max: u64,
    /// fdatasync the WAL before acknowledging. Turning it off loses acknowledged writes
    /// on a crash; for benchmarks only.
    #[arg(long, env = env::WAL_FSYNC, default_value_t = true, action = clap::ArgAction::Set)]
    pub wal_fsync: bool,
    /// Largest request body accepted.
    #[arg(long, env = env::BODY_BYTES_MAX, default_value_t = 4 * 1024 * 1024)]
    pub body_bytes_max: usize,
    /// Bound on every backend call.
    #[arg(long, env = env::BACKEND_TIMEOUT_MS, default_value_t = 5000)]
    pub backend_timeout_ms: u64,
    /// How long a `remote`-durability write waits for the backend before answering 503.
    #[arg(long, env = env::REMOTE_TIMEOUT_MS, default_value_t = 10_000)]
    pub remote_timeout_ms: u64,
    /// On SIGTERM: time to finish requests and flush the backlog before exiting.
    #[arg(long, env = env::SHUTDOWN_GRACE_MS, default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// Most messages one append (or one batch operation) may carry.
    #[arg(long, env = env::MESSAGES_PER_REQUEST_MAX, default_value_t = 100)]
    pub messages_per_request_max: usize,
    /// Largest message content, in bytes.
    #[arg(long, env = env::MESSAGE_BYTES_MAX, default_value_t = 64 * 1024)]
    pub message_bytes_max: usize,
    /// Most operations in one `POST /v1/batch`.
    #[arg(long, env = env::BATCH_OPERATIONS_MAX, default_value_t = 100)]
    pub batch_operations_max: usize,
    /// Most messages a transfer copies to its target (the latest ones).
    #[arg(long, env = env::TRANSFER_MESSAGES_MAX, default_value_t = 1000)]
    pub transfer_messages_max: u32,
    /// File holding a bearer token every request must carry (`/healthz` and `/readyz`
    /// excepted, for probes).
    #[arg(long, env = env::AUTH_TOKEN_FILE)]
    pub auth_token_file: Option<PathBuf>,
    /// Also serve on this Unix socket, created owner-only (0600).
    #[arg(long, env = env::UNIX_SOCKET)]
    pub unix_socket: Option<PathBuf>,
    /// Host names a TCP request may be addressed to besides loopback names and addresses
    /// and the address it arrived at (comma-separated; e.g. a Service's name). Others
    /// are refused with 403, against DNS rebinding; `*` allows any.
    #[arg(long, env = env::ALLOWED_HOSTS, value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Let the web inspector (`/ui`) change state: roll an agent back, abort a pending
    /// transition, fork a thread; each asks for a reason, which is logged. Off by default:
    /// the inspector only reads.
    #[arg(long, env = env::UI_WRITES)]
    pub ui_writes: bool,
    /// With MongoDB: how long a sidecar's ownership of an agent lasts without a write;
    /// another sidecar may take the agent over only after that.
    #[arg(long, env = env::LEASE_MS, default_value_t = 15_000)]
    pub lease_ms: u64,
}

/// A configuration error: names the flag and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("invalid {flag}: {message}")]
pub struct ConfigError {
    pub flag: &'static str,
    pub message: String,
}

fn bad(flag: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        flag,
        message: message.into(),
    }
}

/// The validated configuration of `agentstate serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub mongodb_uri: Option<String>,
    pub database: String,
    /// Compiled agent types (schemas included).
    pub agent_types: Arc<AgentTypes>,
    pub retention: RetentionPolicy,
    pub limits: Limits,
    pub flush_interval: Duration,
    pub flush_batch_max: usize,
    /// How often the storage usage gauges are read (`None`: never).
    pub usage_interval: Option<Duration>,
    /// The memory limit and the bounds fitted to it: the backlog's, the cache's and the
    /// thread cache's bytes.
    pub memory: Budget,
    pub cache_entries_max: u64,
    pub wal_segment_bytes_max: u64,
    pub wal_fsync: bool,
    pub body_bytes_max: usize,
    pub backend_timeout: Duration,
    pub remote_timeout: Duration,
    pub shutdown_grace: Duration,
    /// The bearer token, when one is required.
    pub auth_token: Option<String>,
    pub unix_socket: Option<PathBuf>,
    /// `--allowed-hosts`.
    pub allowed_hosts: Vec<String>,
    /// `--ui-writes`.
    pub ui_writes: bool,
    pub lease: Duration,
}

impl Config {
    pub fn from_args(a: ServeArgs) -> Result<Config, ConfigError> {
        let positive = |flag, v: u64| {
            if v == 0 {
                Err(bad(flag, "must be greater than 0"))
            } else {
                Ok(v)
            }
        };
        positive("--flush-interval-ms", a.flush_interval_ms)?;
        positive("--flush-batch-max", a.flush_batch_max as u64)?;
        positive("--cache-entries-max", a.cache_entries_max)?;
        for (flag, v) in [
            ("--cache-bytes-max", a.cache_bytes_max),
            ("--thread-cache-bytes-max", a.thread_cache_bytes_max),
            ("--memory-limit-bytes", a.memory_limit_bytes),
        ] {
            if let Some(v) = v {
                positive(flag, v)?;
            }
        }
        positive("--backend-timeout-ms", a.backend_timeout_ms)?;
        positive("--remote-timeout-ms", a.remote_timeout_ms)?;
        if a.lease_ms < 500 {
            return Err(bad("--lease-ms", "must be at least 500"));
        }
        if a.backlog_bytes_max.is_some_and(|b| b < 64 * 1024) {
            return Err(bad(
                "--backlog-bytes-max",
                "must be at least 65536 (64 KiB)",
            ));
        }
        if a.wal_segment_bytes_max < 64 * 1024 {
            return Err(bad("--wal-segment-bytes-max", "must be at least 65536"));
        }
        if a.body_bytes_max < 1024 || a.body_bytes_max > 64 * 1024 * 1024 {
            return Err(bad("--body-bytes-max", "must be between 1024 and 67108864"));
        }
        if let Some(uri) = &a.mongodb_uri {
            if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
                return Err(bad(
                    "--mongodb-uri",
                    "must start with mongodb:// or mongodb+srv://",
                ));
            }
        }
        if a.database.is_empty() || a.database.contains(['/', '\\', '.', ' ', '"', '$']) {
            return Err(bad(
                "--database",
                format!("{:?} is not a valid MongoDB database name", a.database),
            ));
        }
        let file = match &a.config {
            None => AgentTypesFile::default(),
            Some(path) => AgentTypesFile::load(path).map_err(|m| bad("--config", m))?,
        };
        let agent_types = Arc::new(
            AgentTypes::compile(file.strict, &file.agent_types).map_err(|m| bad("--config", m))?,
        );
        positive(
            "--messages-per-request-max",
            a.messages_per_request_max as u64,
        )?;
        positive("--message-bytes-max", a.message_bytes_max as u64)?;
        positive("--batch-operations-max", a.batch_operations_max as u64)?;
        let auth_token = match &a.auth_token_file {
            None => None,
            Some(path) => {
                let token = std::fs::read_to_string(path)
                    .map_err(|e| {
                        bad(
                            "--auth-token-file",
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?
                    .trim()
                    .to_string();
                if token.len() < 16 {
                    return Err(bad(
                        "--auth-token-file",
                        "the token must be at least 16 characters",
                    ));
                }
                Some(token)
            }
        };
        let (limit, source) = match a.memory_limit_bytes {
            Some(l) => (Some(l), LimitSource::Flag),
            None => cgroup_limit(Path::new("/"))
                .map_or((None, LimitSource::None), |(l, s)| (Some(l), s)),
        };
        let requested = Requested {
            backlog_bytes_max: a.backlog_bytes_max,
            cache_bytes_max: a.cache_bytes_max,
            thread_cache_bytes_max: a.thread_cache_bytes_max,
        };
        let memory = Budget::fit(requested, limit, source);
        let limits = Limits {
            messages_per_request_max: a.messages_per_request_max,
            message_bytes_max: a.message_bytes_max,
            batch_operations_max: a.batch_operations_max,
            transfer_messages_max: a.transfer_messages_max,
            ..Limits::default()
        };
        Ok(Config {
            listen: a.listen,
            data_dir: a.data_dir,
            mongodb_uri: a.mongodb_uri,
            database: a.database,
            agent_types,
            retention: file.retention.clone(),
            limits,
            flush_interval: Duration::from_millis(a.flush_interval_ms),
            flush_batch_max: a.flush_batch_max,
            usage_interval: (a.usage_interval_secs > 0)
                .then(|| Duration::from_secs(a.usage_interval_secs)),
            memory,
            cache_entries_max: a.cache_entries_max,
            wal_segment_bytes_max: a.wal_segment_bytes_max,
            wal_fsync: a.wal_fsync,
            body_bytes_max: a.body_bytes_max,
            backend_timeout: Duration::from_millis(a.backend_timeout_ms),
            remote_timeout: Duration::from_millis(a.remote_timeout_ms),
            shutdown_grace: Duration::from_millis(a.shutdown_grace_ms),
            auth_token,
            unix_socket: a.unix_socket,
            allowed_hosts: a.allowed_hosts,
            ui_writes: a.ui_writes,
            lease: Duration::from_millis(a.lease_ms),
        })
    }

    pub fn wal_dir(&self) -> PathBuf {
        crate::data_dir::wal(&self.data_dir)
    }

    pub fn sqlite_path(&self) -> PathBuf {
        crate::data_dir::sqlite(&self.data_dir)
    }
}

/// Bounds on what one request may carry; configurable, documented in the README.
#[derive(Debug, Clone)]
pub struct Limits {
    pub messages_per_request_max: usize,
    pub message_bytes_max: usize,
    pub batch_operations_max: usize,
    pub transfer_messages_max: u32,
    /// Largest WAL record one change may produce.
    pub record_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            messages_per_request_max: 100,
            message_bytes_max: 64 * 1024,
            batch_operations_max: 100,
            transfer_messages_max: 1000,
            record_bytes_max: 16 * 1024 * 1024,
        }
    }
}

/// The `--config` file: agent types and policies.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTypesFile {
    /// Refuse agents whose type is not declared.
    #[serde(default)]
    pub strict: bool,
    #[serde(default)]
    pub agent_types: BTreeMap<String, AgentTypeDef>,
    /// How long history is kept; applied by the running sidecar on a schedule and by
    /// `agentstate cleanup`.
    #[serde(default)]
    pub retention: RetentionPolicy,
}

/// Retention of history in the backend: by age, by count per agent, or both. Absent
/// limits keep everything. The current state is never touched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct RetentionPolicy {
    /// Delete transition log entries older than this many days.
    #[arg(long)]
    pub transitions_max_age_days: Option<u64>,
    /// Keep at most this many transition log entries per agent (the newest).
    #[arg(long)]
    pub transitions_max_count: Option<u64>,
    /// Delete messages older than this many days.
    #[arg(long)]
    pub messages_max_age_days: Option<u64>,
    /// Keep at most this many messages per agent (the newest).
    #[arg(long)]
    pub messages_max_count: Option<u64>,
    /// Delete checkpoints older than this many days.
    #[arg(long)]
    pub checkpoints_max_age_days: Option<u64>,
    /// Keep at most this many checkpoints per agent (the newest).
    #[arg(long)]
    pub checkpoints_max_count: Option<u64>,
    /// Delete threads' framework checkpoints older than this many days (the newest of
    /// each thread and namespace is kept).
    #[arg(long)]
    pub thread_checkpoints_max_age_days: Option<u64>,
    /// Keep at most this many framework checkpoints per thread and namespace (the newest).
    #[arg(long)]
    pub thread_checkpoints_max_count: Option<u64>,
    /// How often the running sidecar applies the policy (default 60 minutes).
    #[arg(skip)]
    pub interval_minutes: Option<u64>,
}

impl RetentionPolicy {
    pub fn is_empty(&self) -> bool {
        self.transitions_max_age_days.is_none()
            && self.transitions_max_count.is_none()
            && self.messages_max_age_days.is_none()
            && self.messages_max_count.is_none()
            && self.checkpoints_max_age_days.is_none()
            && self.checkpoints_max_count.is_none()
            && !self.limits_threads()
    }

    /// Whether it limits threads' framework checkpoints (applied through the WAL, since
    /// unflushed checkpoints may share blobs with stored ones).
    pub fn limits_threads(&self) -> bool {
        self.thread_checkpoints_max_age_days.is_some()
            || self.thread_checkpoints_max_count.is_some()
    }

    /// `other`'s limits where it sets them, else this one's.
    pub fn overridden_by(&self, other: &RetentionPolicy) -> RetentionPolicy {
        RetentionPolicy {
            transitions_max_age_days: other
                .transitions_max_age_days
                .or(self.transitions_max_age_days),
            transitions_max_count: other.transitions_max_count.or(self.transitions_max_count),
            messages_max_age_days: other.messages_max_age_days.or(self.messages_max_age_days),
            messages_max_count: other.messages_max_count.or(self.messages_max_count),
            checkpoints_max_age_days: other
                .checkpoints_max_age_days
                .or(self.checkpoints_max_age_days),
            checkpoints_max_count: other.checkpoints_max_count.or(self.checkpoints_max_count),
            thread_checkpoints_max_age_days: other
                .thread_checkpoints_max_age_days
                .or(self.thread_checkpoints_max_age_days),
            thread_checkpoints_max_count: other
                .thread_checkpoints_max_count
                .or(self.thread_checkpoints_max_count),
            interval_minutes: other.interval_minutes.or(self.interval_minutes),
        }
    }
}

impl AgentTypesFile {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: AgentTypesFile = toml::from_str(text).map_err(|e| e.to_string())?;
        for (name, def) in &file.agent_types {
            let declared = |s: &str| def.states.iter().any(|d| d == s);
            if !declared(&def.initial_state) {
                return Err(format!(
                    "agent type {name:?}: initial_state {:?} is not in its states",
                    def.initial_state
                ));
            }
            for t in &def.transitions {
                for s in [&t.from, &t.to] {
                    if !declared(s) {
                        return Err(format!(
                            "agent type {name:?}: transition {} -> {} ({}) names undeclared state {s:?}",
                            t.from, t.to, t.trigger
                        ));
                    }
                }
            }
            for state in def.state_schemas.keys() {
                if !declared(state) {
                    return Err(format!(
                        "agent type {name:?}: state_schemas has undeclared state {state:?}"
                    ));
                }
            }
        }
        Ok(file)
    }
}

/// The URI with any password replaced, for logs and status.
pub fn redact_uri(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &uri[..scheme_end], &uri[at + 1..])
        }
        _ => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["agentstate", "serve"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::from_args(args(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7700");
        assert_eq!(c.data_dir, PathBuf::from("./agentstate-data"));
        assert_eq!(c.database, "agentstate");
        assert!(c.mongodb_uri.is_none());
    }

    #[test]
    fn bad_values_name_their_flag() {
        let e = Config::from_args(args(&["--mongodb-uri", "http://x"])).unwrap_err();
        assert_eq!(e.flag, "--mongodb-uri");
        let e = Config::from_args(args(&["--flush-interval-ms", "0"])).unwrap_err();
        assert_eq!(e.flag, "--flush-interval-ms");
    }

    #[test]
    fn agent_types_parse_and_check_their_states() {
        let ok = r#"
            [agent_types.greeter]
            initial_state = "idle"
            states = ["idle", "greeting"]
            transitions = [{ from = "idle", to = "greeting", trigger = "user_message" }]
            [agent_types.greeter.state_schemas]
            greeting = { type = "object", required = ["user_name"] }
        "#;
        let f = AgentTypesFile::parse(ok).unwrap();
        assert_eq!(f.agent_types["greeter"].transitions.len(), 1);
        let bad = ok.replace("to = \"greeting\"", "to = \"nowhere\"");
        assert!(AgentTypesFile::parse(&bad).unwrap_err().contains("nowhere"));
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_uri("mongodb://user:secret@db:27017/x"),
            "mongodb://***@db:27017/x"
        );
        assert_eq!(redact_uri("mongodb://db:27017"), "mongodb://db:27017");
    }
}
