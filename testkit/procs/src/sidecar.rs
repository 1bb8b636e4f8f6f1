//! The real `agentstate` binary as a child process: `agentstate serve` on a loopback
//! address and a data dir, its log (stderr) in a file, ready once `/readyz` says so.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentstate_protocol::Client;

/// The arguments of `agentstate serve` on `addr` and `data_dir`, then `extra`.
pub fn serve_args(addr: SocketAddr, data_dir: &Path, extra: &[String]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec![
        "serve".into(),
        "--listen".into(),
        addr.to_string().into(),
        "--data-dir".into(),
        data_dir.into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    args
}

/// Spawns `command` (the binary, or a wrapper that execs it, with [`serve_args`]) with
/// `RUST_LOG=info` and its stderr appended to `log`.
pub fn spawn(mut command: Command, log: &Path) -> Result<Child, String> {
    let log_file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("open the sidecar's log {}: {e}", log.display()))?;
    command
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("spawn {command:?}: {e}"))
}

/// Waits until the sidecar at `client` is ready; returns how long that took. Fails, with
/// the log, if the process exits first or `timeout` passes.
pub async fn wait_ready(
    child: &mut Child,
    client: &Client,
    log: &Path,
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    while !client.ready().await {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "sidecar exited with {status} before ready; log:\n{}",
                crate::read_log(log)
            ));
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "sidecar not ready after {timeout:?}; log:\n{}",
                crate::read_log(log)
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(started.elapsed())
}
