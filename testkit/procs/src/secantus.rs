//! SecantusDB (`secantusd-py`, PyPI), the MongoDB-wire server the tests and benches start
//! when `MONGODB_URI` is not set. One pin for every harness: `tests/secantusdb.txt`.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{read_log, workspace_root};

/// How long SecantusDB may take to listen (a Python process opening WiredTiger).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The pinned release, as a pip requirement.
pub fn requirement() -> &'static str {
    include_str!("../../../tests/secantusdb.txt")
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .expect("a requirement in tests/secantusdb.txt")
}

/// The pinned version, for reports ("0.7.0b3").
pub fn version() -> &'static str {
    requirement().trim_start_matches("SecantusDB==")
}

/// Path of `secantusd-py`, installing SecantusDB into `<workspace>/.venv-test` on first
/// use. Several processes may get here at once; a lock file makes one of them install.
pub fn install() -> Result<PathBuf, String> {
    let venv = workspace_root().join(".venv-test");
    let bin = venv.join("bin").join("secantusd-py");
    if bin.exists() {
        return Ok(bin);
    }
    let how = format!(
        "Mongo-backed tests and benches need a MongoDB-wire server. Either set MONGODB_URI \
         to a running mongod, or install SecantusDB: python3 -m venv .venv-test && \
         .venv-test/bin/pip install '{}'",
        requirement()
    );
    fs::create_dir_all(&venv).map_err(|e| format!("create .venv-test: {e}. {how}"))?;
    let lock = File::create(venv.with_extension("lock"))
        .map_err(|e| format!("create the install lock: {e}. {how}"))?;
    lock.lock()
        .map_err(|e| format!("take the install lock: {e}. {how}"))?;
    if !bin.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin").join("pip"))
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(requirement())
                .status()
                .is_ok_and(|s| s.success());
        if !(ok && bin.exists()) {
            return Err(format!("installing SecantusDB failed. {how}"));
        }
    }
    Ok(bin)
}

/// How to start a server.
pub struct Options<'a> {
    /// Its storage directory.
    pub storage: &'a Path,
    /// Its log (stderr), appended to.
    pub log: &'a Path,
    /// 0: a port of its own choosing, read back from its log (which needs `log_level`
    /// INFO), so no other process can take the port between picking it and binding it.
    pub port: u16,
    /// Honour `j: true` with an fsync (a real mongod always does; SecantusDB only when
    /// asked, and a journaled write acknowledged before it is on disk flatters figures).
    pub sync_on_commit: bool,
    /// Its `--log-level`.
    pub log_level: &'a str,
}

/// Starts a server; returns it and its port once it accepts connections.
pub fn start(opts: &Options) -> Result<(Child, u16), String> {
    let bin = install()?;
    let log = File::options()
        .create(true)
        .append(true)
        .open(opts.log)
        .map_err(|e| format!("open SecantusDB's log: {e}"))?;
    let logged_before = read_log(opts.log).len();
    let mut command = Command::new(&bin);
    command
        .args(["--host", "127.0.0.1", "--port", &opts.port.to_string()])
        .arg("--storage-path")
        .arg(opts.storage)
        .args(["--log-level", opts.log_level]);
    if opts.sync_on_commit {
        command.arg("--sync-on-commit");
    }
    let mut child = command
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let deadline = Instant::now() + START_TIMEOUT;
    // Still starting: `Ok`; exited or out of time: why, with its log (the process killed).
    let starting = |child: &mut Child, waiting_for: &str| -> Result<(), String> {
        let why = match child.try_wait() {
            Ok(Some(status)) => format!("SecantusDB exited with {status} at start"),
            _ if Instant::now() > deadline => {
                format!("SecantusDB {waiting_for} within {START_TIMEOUT:?}")
            }
            _ => return Ok(()),
        };
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("{why}; its log:\n{}", read_log(opts.log)))
    };
    let port = loop {
        if opts.port != 0 {
            break opts.port;
        }
        let log = read_log(opts.log);
        if let Some(port) = log.get(logged_before..).and_then(listening_port) {
            break port;
        }
        starting(&mut child, "did not log its port")?;
        std::thread::sleep(Duration::from_millis(20));
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        starting(&mut child, &format!("did not accept connections on {addr}"))?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((child, port))
}

/// The port in SecantusDB's "secantus listening on 127.0.0.1:PORT" line (logged at INFO).
fn listening_port(log: &str) -> Option<u16> {
    let (_, rest) = log.split_once("listening on 127.0.0.1:")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_port_is_read_from_the_listening_line() {
        let log =
            "2026-12-07 14:29:15,650 INFO secantus.server: secantus listening on 127.0.0.1:38939\n";
        assert_eq!(super::listening_port(log), Some(38939));
        assert_eq!(super::listening_port("starting\n"), None);
    }

    #[test]
    fn the_pin_is_a_secantusdb_requirement() {
        assert!(super::requirement().starts_with("SecantusDB=="));
        assert!(!super::version().is_empty());
    }
}
