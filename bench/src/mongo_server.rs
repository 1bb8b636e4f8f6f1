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

use std::process::Child;
use std::time::Duration;

use agentstate_testkit::secantus;
use tempfile::TempDir;

use crate::free_port;

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
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let storage = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
        // A port given, so SecantusDB may log at WARNING (its INFO lines cost time).
        let (child, port) = secantus::start(&secantus::Options {
            storage: &storage.path().join("data"),
            log: &storage.path().join("secantusd.log"),
            port,
            sync_on_commit,
            log_level: "WARNING",
        })?;
        Ok(MongoServer {
            uri: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
            description: format!(
                "SecantusDB {}{}",
                secantus::version(),
                if sync_on_commit {
                    " (--sync-on-commit)"
                } else {
                    ""
                }
            ),
            child: Some(child),
            _storage: Some(storage),
        })
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
