//! The real `agentstate` binary as a child process: what the load tool measures, so that
//! its RSS, its start-up replay and a `kill -9` are the product's own.
//!
//! Hazard: the child is killed (SIGKILL, by its own handle) when this is dropped, so an
//! aborted run leaves no sidecar holding a port or a data dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use agentstate_protocol::Client;
use agentstate_testkit::sidecar;

use crate::{free_port, workspace_root};

/// How long a sidecar may take to replay its WAL and report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// The `agentstate` binary: `target/release`, else `target/debug`.
pub fn find_binary() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    ["release", "debug"]
        .iter()
        .map(|p| target.join(p).join("agentstate"))
        .find(|p| p.exists())
}

/// Whether `bin serve --help` lists `flag` (`--cache-bytes-max`): a phase passes a flag
/// that older binaries lack only when it is there.
pub fn serve_has_flag(bin: &Path, flag: &str) -> bool {
    Command::new(bin)
        .args(["serve", "--help"])
        .output()
        .is_ok_and(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim_start().starts_with(flag))
        })
}

pub struct SidecarProcess {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    bin: PathBuf,
    args: Vec<String>,
    log_path: PathBuf,
    child: Option<Child>,
}

impl SidecarProcess {
    /// Starts `bin serve --listen <free port> --data-dir <data_dir> <args>` and waits for
    /// `/readyz`. Its log (stderr, `RUST_LOG=info`) goes to `<data_dir>.log`.
    pub async fn start(bin: &Path, data_dir: &Path, args: &[String]) -> anyhow::Result<Self> {
        let mut s = SidecarProcess {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port()?)),
            data_dir: data_dir.to_path_buf(),
            bin: bin.to_path_buf(),
            args: args.to_vec(),
            log_path: data_dir.with_extension("log"),
            child: None,
        };
        s.spawn().await?;
        Ok(s)
    }

    /// Spawns the process and waits until it is ready; returns the time that took.
    async fn spawn(&mut self) -> anyhow::Result<Duration> {
        let mut command = Command::new(&self.bin);
        command
            .args(sidecar::serve_args(self.addr, &self.data_dir, &self.args))
            // JSON lines, so the load tool can read figures (replay time) from the log.
            .env("AGENTSTATE_LOG_FORMAT", "json");
        let client = self.client();
        let child = self
            .child
            .insert(sidecar::spawn(command, &self.log_path).map_err(anyhow::Error::msg)?);
        sidecar::wait_ready(child, &client, &self.log_path, READY_TIMEOUT)
            .await
            .map_err(anyhow::Error::msg)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> Client {
        Client::new(self.url()).with_timeout(Duration::from_secs(30))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid()?)
    }

    pub fn log(&self) -> String {
        agentstate_testkit::read_log(&self.log_path)
    }

    /// `kill -9`: nothing is flushed or synced on the way out.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same data dir and port; returns spawn-to-ready time.
    pub async fn restart(&mut self) -> anyhow::Result<Duration> {
        self.kill9();
        self.spawn().await
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// `VmRSS` of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
