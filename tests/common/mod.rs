//! Harness for the black-box tests: the real `agentstate` binary, and a real
//! MongoDB-wire server.
//!
//! MongoDB: with `MONGODB_URI` set, tests use that server (each test its own database).
//! Otherwise they start SecantusDB (`secantusd-py`, PyPI) on a free loopback port,
//! installing it on first use into `<workspace>/.venv-test`. If neither works the test
//! fails and says what to run; it never passes without a server.

#![allow(dead_code)] // each test binary uses a different part of the harness

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use agentstate_protocol::Client;
use tempfile::TempDir;

pub use agentstate_testkit::workspace_root;
use agentstate_testkit::{read_log, secantus, sidecar};

pub fn free_port() -> u16 {
    agentstate_testkit::free_port().expect("bind an ephemeral port")
}

/// A running `agentstate serve`, killed (SIGKILL) when dropped.
pub struct Sidecar {
    pub data_dir: PathBuf,
    pub addr: SocketAddr,
    pub extra_args: Vec<String>,
    /// A cgroup's `cgroup.procs` file the process joins before it execs, so that it starts
    /// under that cgroup's limits.
    pub cgroup_procs: Option<PathBuf>,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Sidecar {
    /// Starts a sidecar on `data_dir` with extra flags; waits until `/readyz` is 200.
    pub async fn start(data_dir: &Path, extra_args: &[&str]) -> Sidecar {
        Self::start_in(data_dir, extra_args, None).await
    }

    /// [`Sidecar::start`], inside the cgroup whose `cgroup.procs` is given.
    pub async fn start_in(
        data_dir: &Path,
        extra_args: &[&str],
        cgroup_procs: Option<&Path>,
    ) -> Sidecar {
        let mut s = Sidecar {
            data_dir: data_dir.to_path_buf(),
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            cgroup_procs: cgroup_procs.map(Path::to_path_buf),
            child: None,
            log_path: data_dir.with_extension("log"),
        };
        s.spawn().await;
        s
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process has exited (reaping it if so).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    async fn spawn(&mut self) {
        let bin = env!("CARGO_BIN_EXE_agentstate");
        let command = match &self.cgroup_procs {
            None => Command::new(bin),
            // The shell joins the cgroup, then becomes the sidecar (same pid).
            Some(procs) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(r#"echo $$ > "$0" && exec "$@""#)
                    .arg(procs)
                    .arg(bin);
                c
            }
        };
        let mut command = command;
        command.args(sidecar::serve_args(
            self.addr,
            &self.data_dir,
            &self.extra_args,
        ));
        let client = self.client();
        let child = self
            .child
            .insert(sidecar::spawn(command, &self.log_path).unwrap_or_else(|e| panic!("{e}")));
        if let Err(e) =
            sidecar::wait_ready(child, &client, &self.log_path, Duration::from_secs(30)).await
        {
            panic!("{e}");
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> Client {
        Client::new(self.url()).with_timeout(Duration::from_secs(20))
    }

    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// `kill -9`: no chance to flush or sync anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("sidecar running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().expect("wait for sidecar")
    }

    /// Resident set size of the running process, from `/proc` (Linux).
    pub fn rss_bytes(&self) -> u64 {
        let pid = self.child.as_ref().expect("sidecar running").id();
        let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc status");
        kib * 1024
    }

    /// Starts again on the same data dir and port.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }
}

impl Drop for Sidecar {
    /// When a test fails, shows the end of the sidecar's log beside the failure.
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "the last lines of the sidecar on {} ({}):",
                self.addr,
                self.log_path.display()
            );
            for line in tail.iter().rev() {
                eprintln!("  {line}");
            }
        }
        self.kill9();
    }
}

/// A MongoDB-wire server for one test.
pub struct Mongo {
    pub uri: String,
    pub database: String,
    /// Set when this harness started the server (and so can stop it).
    local: Option<LocalMongo>,
}

struct LocalMongo {
    port: u16,
    /// Syncs its log at every commit (`--sync-on-commit`).
    synced: bool,
    storage: TempDir,
    child: Option<Child>,
    log_path: PathBuf,
}

impl Mongo {
    /// `MONGODB_URI` if set, else a fresh SecantusDB.
    pub fn start(test_name: &str) -> Mongo {
        let database = format!("agentstate_test_{test_name}_{}", std::process::id());
        match std::env::var("MONGODB_URI") {
            Ok(uri) if !uri.is_empty() => Mongo {
                uri,
                database,
                local: None,
            },
            _ => Mongo::local(database, false),
        }
    }

    /// Always a local SecantusDB, for tests that kill (`kill -9`) and restart the server.
    /// What it acknowledged must survive that, as on mongod, where a majority commit is
    /// journaled; SecantusDB commits a transaction without syncing its log unless started
    /// with `--sync-on-commit`, whatever the write concern says.
    pub fn start_local(database: String) -> Mongo {
        Mongo::local(database, true)
    }

    fn local(database: String, synced: bool) -> Mongo {
        let storage = tempfile::tempdir().expect("temp dir for SecantusDB");
        let log_path = storage.path().with_extension("secantus.log");
        let mut local = LocalMongo {
            port: 0,
            synced,
            storage,
            child: None,
            log_path,
        };
        local.spawn();
        Mongo {
            uri: format!("mongodb://127.0.0.1:{}/?directConnection=true", local.port),
            database,
            local: Some(local),
        }
    }

    /// The port of a local server.
    pub fn local_port(&self) -> u16 {
        self.local.as_ref().expect("a local server").port
    }

    pub fn is_local(&self) -> bool {
        self.local.is_some()
    }

    /// `kill -9` the server (local only).
    pub fn kill9(&mut self) {
        let local = self
            .local
            .as_mut()
            .expect("only a local server can be stopped");
        if let Some(mut c) = local.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill9();
        self.local.as_mut().expect("local server").spawn();
    }

    pub async fn client(&self) -> mongodb::Client {
        let mut opts = mongodb::options::ClientOptions::parse(&self.uri)
            .await
            .expect("parse MongoDB URI");
        opts.server_selection_timeout = Some(Duration::from_secs(10));
        mongodb::Client::with_options(opts).expect("MongoDB client")
    }

    pub async fn db(&self) -> mongodb::Database {
        self.client().await.database(&self.database)
    }

    /// Flags that point a sidecar at this server.
    pub fn sidecar_args(&self) -> Vec<String> {
        vec![
            "--mongodb-uri".into(),
            self.uri.clone(),
            "--database".into(),
            self.database.clone(),
        ]
    }
}

impl LocalMongo {
    /// Starts the server on `self.port`, or on a port of its own choosing the first time
    /// (read back from its log), so no other process can take the port between picking
    /// it and binding it.
    fn spawn(&mut self) {
        let (child, port) = secantus::start(&secantus::Options {
            storage: self.storage.path(),
            log: &self.log_path,
            port: self.port,
            sync_on_commit: self.synced,
            log_level: "INFO",
        })
        .unwrap_or_else(|e| panic!("{e}"));
        self.child = Some(child);
        self.port = port;
    }

    fn log(&self) -> String {
        read_log(&self.log_path)
    }
}

impl Drop for LocalMongo {
    /// When a test fails, says whether the server was still up, with its log: a test
    /// that lost its server should say so, not only that a query failed.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if std::thread::panicking() {
                let state = match c.try_wait() {
                    Ok(Some(status)) => format!("had exited with {status}"),
                    _ => "was running".to_string(),
                };
                eprintln!(
                    "SecantusDB on port {} {state} when the test failed; its log:\n{}",
                    self.port,
                    self.log()
                );
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A TCP proxy on loopback in front of a MongoDB server, which a test cuts (every
/// connection dropped, new ones closed at once) and heals: a partition between one
/// sidecar and MongoDB while others still reach it. It can also hold a write in flight:
/// armed with a command and a collection, it stops passing anything to the server from
/// the first such command on (it reads the wire protocol's `OP_MSG` frames), until
/// released: a flush delayed past its lease, deterministically.
pub struct Proxy {
    pub port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    hold: std::sync::Arc<Hold>,
}

#[derive(Default)]
struct Hold {
    /// The `(command, collection)` that stops traffic toward the server.
    trigger: std::sync::Mutex<Option<(String, String)>>,
    /// Traffic toward the server stopped.
    held: tokio::sync::watch::Sender<bool>,
}

/// The command name and collection of a client's `OP_MSG` frame.
fn command_of(frame: &[u8]) -> Option<(String, String)> {
    const OP_MSG: i32 = 2013;
    let i32_at = |at: usize| Some(i32::from_le_bytes(frame.get(at..at + 4)?.try_into().ok()?));
    // Header (16 bytes), flag bits (4), then a body section: kind 0 and one document.
    if i32_at(12)? != OP_MSG || *frame.get(20)? != 0 {
        return None;
    }
    let len = usize::try_from(i32_at(21)?).ok()?;
    let body = mongodb::bson::RawDocument::from_bytes(frame.get(21..21 + len)?).ok()?;
    let (command, value) = body.iter().next()?.ok()?;
    Some((command.to_string(), value.as_str()?.to_string()))
}

/// Passes a client's frames to the server, holding them from the armed command on.
async fn forward(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    hold: &Hold,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut held = hold.held.subscribe();
    loop {
        let mut frame = vec![0u8; 4];
        from.read_exact(&mut frame).await?;
        let len = i32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        frame.resize(usize::try_from(len).unwrap_or(4).max(4), 0);
        from.read_exact(&mut frame[4..]).await?;
        {
            let mut trigger = hold.trigger.lock().unwrap();
            if trigger.is_some() && command_of(&frame) == *trigger {
                *trigger = None;
                hold.held.send_replace(true);
            }
        }
        let _ = held.wait_for(|h| !*h).await;
        to.write_all(&frame).await?;
    }
}

impl Proxy {
    pub async fn start(target_port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (cut, is_cut) = tokio::sync::watch::channel(false);
        let hold = std::sync::Arc::new(Hold::default());
        let proxy_hold = hold.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if *is_cut.borrow() {
                    continue; // dropped: closed at once
                }
                let mut cut = is_cut.clone();
                let hold = proxy_hold.clone();
                tokio::spawn(async move {
                    let Ok(server) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target_port)).await
                    else {
                        return;
                    };
                    let (mut from_client, mut to_server) = (client, server);
                    let (mut client_r, mut client_w) = from_client.split();
                    let (mut server_r, mut server_w) = to_server.split();
                    let toward_server = forward(&mut client_r, &mut server_w, &hold);
                    tokio::select! {
                        _ = toward_server => {}
                        _ = tokio::io::copy(&mut server_r, &mut client_w) => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy { port, cut, hold }
    }

    /// A MongoDB URI that goes through the proxy.
    pub fn mongodb_uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true", self.port)
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    /// Stops all traffic toward the server from the next `command` on `collection`
    /// (that command included) until [`Proxy::release`].
    pub fn hold_from(&self, command: &str, collection: &str) {
        *self.hold.trigger.lock().unwrap() = Some((command.into(), collection.into()));
    }

    /// Whether a command armed by [`Proxy::hold_from`] came and is being held.
    pub fn holding(&self) -> bool {
        *self.hold.held.borrow()
    }

    /// Lets held traffic through.
    pub fn release(&self) {
        self.hold.held.send_replace(false);
    }
}

/// Every document of `collection` that matches `filter`.
pub async fn find_all(
    db: &mongodb::Database,
    collection: &str,
    filter: mongodb::bson::Document,
) -> Vec<mongodb::bson::Document> {
    let mut cursor = db
        .collection::<mongodb::bson::Document>(collection)
        .find(filter)
        .await
        .unwrap();
    let mut docs = Vec::new();
    while cursor.advance().await.unwrap() {
        docs.push(cursor.deserialize_current().unwrap());
    }
    docs
}

/// An agent's log in MongoDB (`state_transitions` or `conversation_history`): seq -> the
/// string field `key` (a trigger, a message's content).
pub async fn mongo_log(
    db: &mongodb::Database,
    collection: &str,
    agent: &str,
    key: &str,
) -> std::collections::BTreeMap<u64, String> {
    find_all(db, collection, mongodb::bson::doc! { "agent_id": agent })
        .await
        .iter()
        .map(|d| {
            (
                d.get_i64("seq").unwrap() as u64,
                d.get_str(key).unwrap().to_string(),
            )
        })
        .collect()
}

/// The environment variable `name` parsed, or `default` if unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Waits (10 s at most) until the sidecar's backlog is empty: everything is in the
/// backend.
#[allow(dead_code)]
pub async fn drained(c: &Client) {
    eventually(Duration::from_secs(10), "backlog drained", || {
        let c = c.clone();
        async move { c.status().await.ok().filter(|s| s.backlog_agents == 0) }
    })
    .await;
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A seed from `AGENTSTATE_TEST_SEED`, or a fresh one; printed so a failure can be replayed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("AGENTSTATE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test}: seed {seed} (replay with AGENTSTATE_TEST_SEED={seed})");
    seed
}

/// A raw HTTP exchange, for what the typed client will not send (bad bodies, odd headers).
pub struct RawResponse {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: bytes::Bytes,
}

impl RawResponse {
    /// The body as a JSON value, decoded by its content type (JSON or MessagePack).
    pub fn json(&self) -> serde_json::Value {
        let ct = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        match ct.and_then(agentstate_protocol::Codec::from_media_type) {
            Some(codec) => codec
                .decode(&self.body)
                .unwrap_or_else(|e| panic!("undecodable {ct:?} body ({e}): {:?}", self.body)),
            None => panic!("no known content type ({ct:?}): {:?}", self.body),
        }
    }

    /// The `error.code` of an error body.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

/// An HTTP/1 connection to a sidecar's Unix socket, ready to send requests on.
pub async fn unix_http(
    socket: &Path,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>> {
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .expect("connect to the sidecar's Unix socket");
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
        .await
        .expect("HTTP/1 handshake over the Unix socket");
    tokio::spawn(conn);
    send
}

pub async fn raw(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<bytes::Bytes>,
) -> RawResponse {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let mut req = http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(body.into())).expect("valid request"))
        .await
        .expect("sidecar answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("read body")
        .to_bytes();
    RawResponse {
        status,
        headers,
        body,
    }
}

/// Runs a scenario (an `async fn(Backend)` of the test file) on the embedded store and
/// on MongoDB, as two tests. Needs `#[macro_use] mod common;` and `Backend` in scope.
#[allow(unused_macros)]
macro_rules! both_backends {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$scenario(super::Backend::Embedded).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mongo() {
                super::$scenario(super::Backend::Mongo).await;
            }
        }
    };
}

/// Runs an admin command of the binary (`dump`, `check`, ...) on the data dir `data`.
pub fn agentstate(args: &[&str], data: &Path, extra: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentstate"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run agentstate")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Which backend a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Mongo,
}

/// The example agent types (greeter, haiku, git_assistant).
pub fn example_config() -> PathBuf {
    workspace_root().join("protocol/examples/agent-types.toml")
}

/// A sidecar on `backend` with the example agent types, plus its MongoDB if any.
pub async fn start_with(
    backend: Backend,
    test: &str,
    dir: &Path,
    extra: &[&str],
) -> (Sidecar, Option<Mongo>) {
    let config = example_config();
    let mut args: Vec<String> = vec!["--config".into(), config.display().to_string()];
    let mongo = match backend {
        Backend::Embedded => None,
        Backend::Mongo => {
            let m = Mongo::start(test);
            args.extend(m.sidecar_args());
            Some(m)
        }
    };
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Sidecar::start(&dir.join("data"), &args).await, mongo)
}

/// A MessagePack list of the strings `{prefix}{i}` for `i` in `from..to`: a list channel's
/// value, or the items a delta adds.
#[allow(dead_code)]
pub fn msgpack_list(prefix: &str, from: usize, to: usize) -> agentstate_protocol::Typed {
    let items: Vec<String> = (from..to).map(|i| format!("{prefix}{i}")).collect();
    agentstate_protocol::Typed {
        type_: "msgpack".into(),
        data: agentstate_protocol::Payload(rmp_serde::to_vec(&items).unwrap().into()),
    }
}

/// A channel's blob at `version`; a delta when it `extends` another version.
#[allow(dead_code)]
pub fn thread_blob(
    channel: &str,
    version: &str,
    value: agentstate_protocol::Typed,
    extends: Option<&str>,
) -> agentstate_protocol::ThreadBlob {
    agentstate_protocol::ThreadBlob {
        channel: channel.into(),
        version: version.into(),
        value,
        extends: extends.map(str::to_string),
    }
}

/// Checkpoint `id` (in the root namespace) after `parent`, with its channels at
/// `versions` and the blobs of those that changed.
#[allow(dead_code)]
pub fn thread_put(
    id: &str,
    parent: Option<&str>,
    versions: &[(&str, &str)],
    blobs: Vec<agentstate_protocol::ThreadBlob>,
) -> agentstate_protocol::PutThreadCheckpointRequest {
    agentstate_protocol::PutThreadCheckpointRequest {
        checkpoint_ns: String::new(),
        checkpoint_id: id.into(),
        parent_checkpoint_id: parent.map(str::to_string),
        checkpoint: agentstate_protocol::Typed {
            type_: "json".into(),
            data: agentstate_protocol::Payload(format!("{{\"id\":\"{id}\"}}").into_bytes().into()),
        },
        metadata: Default::default(),
        channel_versions: versions
            .iter()
            .map(|(c, v)| (c.to_string(), v.to_string()))
            .collect(),
        blobs,
    }
}
