//! The command line: which phases to run, their sizes and lengths, and where results go.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Phase {
    Mix,
    Durability,
    Cache,
    Hot,
    Append,
    Sustained,
    Replay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
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
pub struct Args {
    /// A running sidecar to drive instead of starting one. Phases that need their own
    /// sidecar (append, sustained, replay) still start one.
    #[arg(long)]
    pub url: Option<String>,
    /// The `agentstate` binary (default: target/release, else target/debug).
    #[arg(long)]
    pub sidecar_bin: Option<PathBuf>,
    /// Concurrent simulated agents, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    pub concurrency: Vec<usize>,
    /// Length of each measured run.
    #[arg(long, default_value_t = 6)]
    pub duration_secs: u64,
    /// Size of `state_data` (as JSON) in saves.
    #[arg(long, default_value_t = 1024)]
    pub state_bytes: usize,
    /// Clients of the durability, hot-agent and sustained phases.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Agents of the hot-agent phase.
    #[arg(long, default_value_t = 8)]
    pub hot_agents: usize,
    /// Message appends of the append phase.
    #[arg(long, default_value_t = 10_000)]
    pub appends: u64,
    /// Records left in the WAL for the replay phase.
    #[arg(long, default_value_t = 200_000)]
    pub replay_records: u64,
    /// Size of `state_data` in the replay phase's records.
    #[arg(long, default_value_t = 128)]
    pub replay_state_bytes: usize,
    /// Length of the sustained-load phase.
    #[arg(long, default_value_t = 30)]
    pub sustained_secs: u64,
    /// `--cache-entries-max` of the sustained phase's sidecar: small enough that the run
    /// reaches it, so the plateau (or its absence) shows.
    #[arg(long, default_value_t = 20_000)]
    pub sustained_cache_entries: u64,
    /// `--cache-bytes-max` of the sustained phase's sidecar, passed only if the sidecar has
    /// that flag: reached before the entries bound at 1 KiB states (about 2.8 KB charged
    /// per agent), and large enough that its cost per agent stands out of the RSS noise.
    #[arg(long, default_value_t = 48 * 1024 * 1024)]
    pub sustained_cache_bytes: u64,
    /// Wait up to this long at start for other processes to leave the CPU idle.
    #[arg(long, default_value_t = 60)]
    pub wait_idle_secs: u64,
    /// Backend of the sidecar the mix, durability and cache phases use (the hot-agent
    /// phase always starts a MongoDB-backed one).
    #[arg(long, value_enum, default_value_t = Backend::Sqlite)]
    pub backend: Backend,
    /// Skip MongoDB entirely (no direct-write comparison, no hot-agent phase).
    #[arg(long)]
    pub no_mongo: bool,
    /// Phases to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "mix,durability,cache,hot,append,sustained,replay"
    )]
    pub phases: Vec<Phase>,
    /// Where results, tables and charts go (default: bench/results).
    #[arg(long)]
    pub out: Option<PathBuf>,
}
