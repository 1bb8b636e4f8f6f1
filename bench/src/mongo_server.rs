//! A MongoDB-wire server for a benchmark run.
//!
//! `MONGODB_URI` wins when set (a real mongod). Otherwise SecantusDB (`secantusd-py`,
//! PyPI, pinned like the tests) is started on a free loopback port with its storage in a
//! temporary directory, installed into `<workspace>/.venv-test` first if missing.
//!
//! SecantusDB does not fsync on commit unless asked (`--sync-on-commit`): without it a
//! `j: true` write is acknowledged before it is on disk, which would flatter every
//! direct-write figure. Benches that compare against "a journaled MongoDB write" ask for it.
//!
//! Hazard: a benchmark must never report a figure it did not measure, so a server that
//! cannot be found or started is an `Err` with the reason, for the caller to print.

use std::fs::{self, File};
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{free_port, workspace_root};

/// The SecantusDB release the tests pin, as a pip requirement (`tests/secantusdb.txt`,
/// shared by every harness).
pub fn secantus_requirement() -> &'static str {
    include_str!("../../tests/secantusdb.txt")
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .expect("a requirement in tests/secantusdb.txt")
}
/// How long SecantusDB may take to listen (it is a Python process opening WiredTiger).
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct MongoServer {
    /// Connection string for the driver and for `agentstate serve --mongodb-uri`.
    pub uri: String,
    /// What this is, for reports: "MONGODB_URI" or "SecantusDB 0.7.0b3 (--sync-on-commit)".
    pub description: String,
    /// Set when this run started the server; killed on drop.
    child: Option<Child>,
    /// The server's storage; removed on drop, after the server is gone.
    _storage: Option<TempDir>,
}

impl MongoServer {
    /// `MONGODB_URI` if set, else a fresh SecantusDB. `sync_on_commit` makes SecantusDB
    /// honour `j: true` with an fsync (a real mongod always does).
    pub fn start(sync_on_commit: bool) -> Result<MongoServer, String> {
        if let Ok(uri) = std::env::var("MONGODB_URI") {
            if !uri.is_empty() {
                return Ok(MongoServer {
                    uri,
                    description: "MONGODB_URI".into(),
                    child: None,
                    _storage: None,
                });
            }
        }
        Self::start_secantus(sync_on_commit)
    }

    fn start_secantus(sync_on_commit: bool) -> Result<MongoServer, String> {
        let bin = secantusd()?;
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let storage = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        let log_path = storage.path().join("secantusd.log");
        let log = File::create(&log_path).map_err(|e| format!("create SecantusDB log: {e}"))?;
        let mut cmd = Command::new(&bin);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--storage-path")
            .arg(storage.path().join("data"))
            .args(["--log-level", "WARNING"]);
        if sync_on_commit {
            cmd.arg("--sync-on-commit");
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut server = MongoServer {
            uri: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
            description: format!(
                "SecantusDB {}{}",
                secantus_requirement().trim_start_matches("SecantusDB=="),
                if sync_on_commit {
                    " (--sync-on-commit)"
                } else {
                    ""
                }
            ),
            child: Some(child),
            _storage: Some(storage),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let mut text = String::new();
                let _ = File::open(&log_path).and_then(|mut f| f.read_to_string(&mut text));
                return Err(format!(
                    "SecantusDB did not listen on {addr} (exit: {exited:?}); its log:\n{text}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The server's pid, when this run started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// A driver client with short selection timeouts (a dead server fails fast).
    pub async fn client(&self) -> anyhow::Result<mongodb::Client> {
        let mut opts = mongodb::options::ClientOptions::parse(&self.uri).await?;
        opts.server_selection_timeout = Some(Duration::from_secs(10));
        opts.max_pool_size = Some(256);
        Ok(mongodb::Client::with_options(opts)?)
    }
}

impl Drop for MongoServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Path of `secantusd-py`, installing SecantusDB into `.venv-test` if it is missing.
fn secantusd() -> Result<PathBuf, String> {
    let venv = workspace_root().join(".venv-test");
    let bin = venv.join("bin").join("secantusd-py");
    if bin.exists() {
        return Ok(bin);
    }
    let how = format!(
        "set MONGODB_URI to a running mongod, or install SecantusDB: python3 -m venv \
         .venv-test && .venv-test/bin/pip install '{}'",
        secantus_requirement()
    );
    fs::create_dir_all(&venv).map_err(|e| format!("create .venv-test: {e}; {how}"))?;
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .arg(secantus_requirement())
            .status()
            .is_ok_and(|s| s.success());
    if ok && bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "no MongoDB-wire server: installing SecantusDB failed; {how}"
        ))
    }
}
