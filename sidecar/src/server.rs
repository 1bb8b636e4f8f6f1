//! Wiring: opens the backend, serves HTTP, replays the WAL, runs the flusher, and on
//! shutdown drains in order (stop accepting, finish requests, flush, close the WAL).
//!
//! The listener is up before replay so `/healthz` answers during a long replay;
//! `/readyz` turns 200 only once replay is done.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::api::{self, App, Transport};
use crate::backlog::Backlog;
use crate::cache::StateCache;
use crate::config::{redact_uri, Config, RetentionPolicy};
use crate::engine::{Engine, EngineOptions, LeaseOptions};
use crate::memory_budget::Budget;
use crate::metrics as m;
use crate::store::{mongo::MongoStore, sqlite::SqliteStore, Backend, Store};
use crate::wal::WalOptions;
use crate::{flusher, recovery};

/// Most connections served at once; more wait in the kernel's accept queue.
const CONNECTIONS_MAX: usize = 1024;
/// A client must send its request headers within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the sidecar until `shutdown` resolves. `on_listening` receives the bound address
/// (tests bind port 0).
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    run_with(config, shutdown, on_listening, |_| {}).await
}

/// `run`, handing the engine to `on_ready` once the sidecar is ready (admin commands
/// that work through the WAL).
pub async fn run_with(
    config: Config,
    shutdown: impl Future<Output = ()>,
    on_listening: impl FnOnce(SocketAddr),
    on_ready: impl FnOnce(Arc<Engine>),
) -> anyhow::Result<()> {
    crate::metrics::install();
    crate::durable::create_dir_all(&config.data_dir)
        .with_context(|| format!("create data dir {}", config.data_dir.display()))?;
    // One process per data dir: two writers would interleave one WAL.
    let _lock = lock_data_dir(&config.data_dir)?;
    let store = open_store(&config, true).await?;
    serve_with(config, store, shutdown, on_listening, on_ready).await
}

/// Takes the data dir's lock file for as long as the returned handle lives.
pub fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<std::fs::File> {
    let path = crate::data_dir::lock(dir);
    let file =
        std::fs::File::create(&path).with_context(|| format!("create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(_) => anyhow::bail!(
            "another agentstate process is using the data dir {} (it holds {})",
            dir.display(),
            path.display()
        ),
    }
}

/// This sidecar's name in leases: made once, kept in the data dir, so that a restart on
/// the same volume keeps the leases it held.
fn owner_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = crate::data_dir::owner_id(data_dir);
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_string());
        }
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sidecar".into());
    let id = format!("{host}-{:08x}", rand::random::<u32>());
    // Durably: an owner-id lost to a power cut would make a new owner, and this
    // sidecar's own replayed writes would be fenced off as another's.
    crate::durable::replace(&path, id.as_bytes())
        .with_context(|| format!("write {}", path.display()))?;
    Ok(id)
}

/// The backend the configuration names (connecting lazily to MongoDB). `owner`: the
/// caller holds the data dir's lock (serve, recover), not an admin command beside a
/// running sidecar.
pub async fn open_store(config: &Config, owner: bool) -> anyhow::Result<Store> {
    let backend = match &config.mongodb_uri {
        Some(uri) => {
            tracing::info!(uri = %redact_uri(uri), database = %config.database, "backend: MongoDB");
            Backend::Mongo(Box::new(
                MongoStore::connect(
                    uri,
                    &config.database,
                    config.backend_timeout,
                    owner.then(|| crate::data_dir::mongo_txn_session(&config.data_dir)),
                )
                .await
                .context("invalid --mongodb-uri")?,
            ))
        }
        None => {
            let path = config.sqlite_path();
            tracing::info!(path = %path.display(), "backend: embedded SQLite");
            Backend::Sqlite(
                SqliteStore::open(&path).with_context(|| format!("open {}", path.display()))?,
            )
        }
    };
    Ok(Store::new(backend, config.backend_timeout))
}

async fn serve_with(
    config: Config,
    store: Store,
    shutdown: impl Future<Output = ()>,
    on_listening: impl FnOnce(SocketAddr),
    on_ready: impl FnOnce(Arc<Engine>),
) -> anyhow::Result<()> {
    report_memory_budget(&config.memory);
    let app = Arc::new(App {
        engine: Default::default(),
        body_bytes_max: config.body_bytes_max,
        auth_token: config.auth_token.clone(),
        allowed_hosts: api::AllowedHosts::new(&config.allowed_hosts),
        ui_writes: config.ui_writes,
    });
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {} (--listen)", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "listening");
    on_listening(addr);

    let unix = match &config.unix_socket {
        None => None,
        Some(path) => Some(bind_unix(path)?),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(serve(listener, unix, app.clone(), stop_rx.clone()));

    // Replay before anything else touches the WAL.
    let wal_opts = WalOptions {
        dir: config.wal_dir(),
        segment_bytes_max: config.wal_segment_bytes_max,
        fsync: config.wal_fsync,
    };
    let backlog_bytes_max = config.memory.backlog_bytes_max;
    let (wal, backlog, flush_progress) = tokio::task::spawn_blocking(move || {
        let backlog = Backlog::new(backlog_bytes_max);
        recovery::replay(wal_opts, &backlog).map(|(wal, _, progress)| (wal, backlog, progress))
    })
    .await
    .context("WAL replay task")??;

    let lease = match store.uses_leases() {
        false => None,
        true => Some(LeaseOptions {
            owner: owner_id(&config.data_dir)?,
            ttl: config.lease,
        }),
    };
    let engine = Arc::new(Engine::new(
        wal.clone(),
        backlog,
        flush_progress,
        StateCache::new(config.cache_entries_max, config.memory.cache_bytes_max),
        store,
        config.agent_types.clone(),
        EngineOptions {
            remote_timeout: config.remote_timeout,
            flush_batch_max: config.flush_batch_max,
            limits: config.limits.clone(),
            lease,
            thread_cache_bytes_max: config.memory.thread_cache_bytes_max,
        },
    ));
    let flusher = tokio::spawn(flusher::run(
        engine.clone(),
        config.flush_interval,
        config.flush_batch_max,
        stop_rx.clone(),
    ));
    if let Some(every) = config.usage_interval {
        tokio::spawn(storage_usage(engine.clone(), every, stop_rx.clone()));
    }
    if !config.retention.is_empty() {
        tokio::spawn(retention(engine.clone(), config.retention.clone(), stop_rx));
    }
    let _ = app.engine.set(engine.clone());
    engine.set_ready(true);
    engine.flush_now.notify_one();
    tracing::info!("ready");
    on_ready(engine.clone());

    shutdown.await;
    tracing::info!(
        grace_ms = config.shutdown_grace.as_millis() as u64,
        "shutting down"
    );
    engine.set_ready(false);
    let deadline = tokio::time::Instant::now() + config.shutdown_grace;
    let _ = stop_tx.send(true);
    // In-flight requests finish first (they may add to the backlog)...
    let _ = tokio::time::timeout_at(deadline, server).await;
    let _ = flusher.await;
    // ...then one last flush, bounded by what is left of the grace period.
    match tokio::time::timeout_at(
        deadline,
        flusher::flush_through(&engine, config.flush_batch_max, u64::MAX),
    )
    .await
    {
        Ok(Ok(())) => tracing::info!("backlog flushed"),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "backlog not flushed; it stays in the WAL for the next start")
        }
        Err(_) => tracing::warn!("grace period over; the rest of the backlog stays in the WAL"),
    }
    tokio::task::spawn_blocking(move || wal.close()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Says at start-up, and in metrics, what memory the bounds were fitted to.
fn report_memory_budget(b: &Budget) {
    const MIB: u64 = 1024 * 1024;
    tracing::info!(
        limit_mib = b.limit_bytes.map(|l| l / MIB),
        source = b.source.as_str(),
        backlog_mib = b.backlog_bytes_max / MIB,
        cache_mib = b.cache_bytes_max / MIB,
        thread_cache_mib = b.thread_cache_bytes_max / MIB,
        "memory budget"
    );
    if !b.fits() {
        tracing::warn!(
            limit_mib = b.limit_bytes.map(|l| l / MIB),
            bounds_mib = b.bounds_bytes() / MIB,
            "the backlog and cache bounds given add up past half the memory limit; under load the \
             sidecar may be OOM-killed"
        );
    }
    metrics::gauge!(m::MEMORY_LIMIT_BYTES).set(b.limit_bytes.unwrap_or(0) as f64);
    for (part, bytes) in [
        ("backlog", b.backlog_bytes_max),
        ("cache", b.cache_bytes_max),
        ("thread_cache", b.thread_cache_bytes_max),
    ] {
        metrics::gauge!(m::MEMORY_BOUND_BYTES, "part" => part).set(bytes as f64);
    }
}

/// A Unix socket only its owner can use (mode 0600), replacing a stale one.
fn bind_unix(path: &std::path::Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove stale socket {}", path.display())),
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("listen on {} (--unix-socket)", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("make {} owner-only", path.display()))?;
    tracing::info!(path = %path.display(), "listening on a Unix socket");
    Ok(listener)
}

/// Accepts connections (TCP, and the Unix socket if any) until `stop`, then lets open
/// ones finish their requests.
async fn serve(
    tcp: TcpListener,
    unix: Option<UnixListener>,
    app: Arc<App>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stopped(&mut stop) => break,
        };
        let accepted = tokio::select! {
            r = tcp.accept() => r.and_then(|(s, _)| {
                let _ = s.set_nodelay(true);
                let transport = Transport::Tcp { local: s.local_addr()? };
                spawn_connection(s, transport, &app, &graceful, permit);
                Ok(())
            }),
            r = accept_unix(unix.as_ref()) => r.map(|s| spawn_connection(s, Transport::Unix, &app, &graceful, permit)),
            _ = stopped(&mut stop) => break,
        };
        if let Err(e) = accepted {
            // Out of file descriptors and the like: pause rather than spin.
            tracing::warn!(error = %e, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop(tcp);
    drop(unix);
    graceful.shutdown().await;
}

async fn accept_unix(unix: Option<&UnixListener>) -> std::io::Result<tokio::net::UnixStream> {
    match unix {
        Some(l) => l.accept().await.map(|(s, _)| s),
        None => std::future::pending().await,
    }
}

/// Serves one connection; its permit is returned when it closes.
fn spawn_connection<S>(
    stream: S,
    transport: Transport,
    app: &Arc<App>,
    graceful: &GracefulShutdown,
    permit: OwnedSemaphorePermit,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = app.clone();
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| api::handle(app.clone(), transport, req)),
        );
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        let _ = conn.await;
        drop(permit);
    });
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Applies the retention policy every `interval_minutes` (default 60) until shutdown.
/// Reads the backend's storage usage into the `agentstate_storage_*` gauges: at start,
/// then every `every`.
async fn storage_usage(engine: Arc<Engine>, every: Duration, mut stop: watch::Receiver<bool>) {
    loop {
        match engine.store.usage().await {
            Ok(tables) => crate::metrics::set_storage(&tables),
            Err(e) => {
                tracing::warn!(error = %e, "storage usage not read; next try at the next interval")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

async fn retention(engine: Arc<Engine>, policy: RetentionPolicy, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(60 * policy.interval_minutes.unwrap_or(60).max(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped(&mut stop) => return,
        }
        match engine.retain(&policy, crate::engine::now()).await {
            Ok(r) => tracing::info!(
                transitions = r.transitions,
                messages = r.messages,
                checkpoints = r.checkpoints,
                thread_checkpoints = r.thread_checkpoints,
                "retention applied"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "retention not applied; next try at the next interval")
            }
        }
    }
}
