//! Shared parts of the criterion benches (`benches/`) and the load tool
//! (`src/bin/agentstate-load/`).
//!
//! - [`mongo_server`]: a MongoDB-wire server for a run: `MONGODB_URI`, else SecantusDB
//!   (`secantusd-py`) started on a free loopback port.
//! - [`sidecar_proc`]: the real `agentstate` binary as a child process (kill -9, RSS).
//!
//!   Both start their processes with `agentstate-testkit` (`testkit/procs`), as the
//!   tests do: one SecantusDB install and pin, one way to start a sidecar.
//! - [`sample`]: realistic states and request bodies of a given size.
//! - [`stats`]: latency histograms (HdrHistogram) per operation.
//! - [`workload`]: the simulated agents, against the sidecar or straight against MongoDB.
//! - [`probe`]: figures read from outside: `/metrics`, the log, `serverStatus`, RSS.
//! - [`report`]: the load tool's Markdown and JSON results.
//! - [`charts`]: its SVG charts for `bench/results/` (plotters).
//! - [`redis_server`]: Redis for the read-latency yardstick: the server, its clients and
//!   `redis-benchmark`.
//! - [`machine`]: what the figures were measured on, and the disk's serial fsync rate.
//!
//! Hazard: every child process started here is killed (by its own handle) when its owner
//! is dropped, so an aborted run leaves no servers behind.

pub mod charts;
pub mod machine;
pub mod mongo_server;
pub mod probe;
pub mod redis_server;
pub mod report;
pub mod sample;
pub mod sidecar_proc;
pub mod stats;
pub mod workload;
pub mod wrk;

use std::path::PathBuf;

pub use agentstate_testkit::{free_port, workspace_root};

/// The example agent types (greeter, haiku, git_assistant) the load tool drives.
pub fn example_agent_types() -> PathBuf {
    workspace_root().join("protocol/examples/agent-types.toml")
}
