//! The read path and end-to-end HTTP, through the real server on loopback.
//!
//! The server runs in-process (`agentstate_sidecar::server::run`, embedded SQLite store
//! in a temporary data dir) and is driven by `agentstate_protocol::Client`, one request
//! at a time, so these are latencies (the load tool measures concurrency).
//!
//! - `cache_get/entries={}`: the cache itself (`StateCache::get` of a present agent).
//! - `http_load/codec={}`: `GET /v1/agents/{id}` of an agent already flushed, so the
//!   answer comes from the cache (the backlog is empty).
//! - `http_save/codec={}/durability={}/state_data_bytes={}`: `PUT /v1/agents/{id}`,
//!   last writer wins; `local` waits for the WAL's fdatasync, `memory` does not.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentstate_bench::sample;
use agentstate_protocol::{Client, Codec, Durability, StatePersistence};
use agentstate_sidecar::cache::StateCache;
use agentstate_sidecar::config::{Cli, Command, Config};
use agentstate_sidecar::model::Current;
use clap::Parser;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::MsgPack => "msgpack",
        Codec::Json => "json",
    }
}

fn cache_get(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache_get");
    for entries in [1_000u64, 100_000] {
        let cache = StateCache::new(entries, 1 << 30);
        let mut state = sample::persisted_state(1024);
        for i in 0..entries {
            state.agent_id = format!("agent-{i}");
            let record = sample::agent_record(&state);
            cache.insert(&state.agent_id, Current::Live(Arc::new(record)));
        }
        // Let moka settle its admission bookkeeping, so every key is a hit.
        cache.entries();
        let ids: Vec<String> = (0..entries).map(|i| format!("agent-{i}")).collect();
        let mut k = 0usize;
        group.bench_function(
            BenchmarkId::from_parameter(format!("entries={entries}")),
            |b| {
                b.iter(|| {
                    k = (k + 7919) % ids.len();
                    black_box(cache.get(&ids[k]))
                })
            },
        );
    }
    group.finish();
}

/// A sidecar served in-process on a free loopback port; stopped on drop.
struct Server {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    rt: Arc<tokio::runtime::Runtime>,
}

impl Server {
    fn start(rt: Arc<tokio::runtime::Runtime>, data_dir: &Path) -> Server {
        let argv = [
            "agentstate",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data_dir.to_str().expect("temp dir path is UTF-8"),
        ];
        let cli = Cli::try_parse_from(argv).expect("static arguments parse");
        let Command::Serve(args) = cli.command else {
            unreachable!("the arguments name `serve`")
        };
        let config = Config::from_args(args).expect("default configuration is valid");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let task = rt.spawn(agentstate_sidecar::server::run(
            config,
            async move {
                let _ = stopped.await;
            },
            move |addr| {
                let _ = addr_tx.send(addr);
            },
        ));
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server listening within 30 s");
        let url = format!("http://{addr}");
        let client = Client::new(url.clone());
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !client.ready().await {
                assert!(Instant::now() < deadline, "server not ready within 30 s");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Server {
            url,
            stop: Some(stop),
            task: Some(task),
            rt,
        }
    }

    /// Waits until the flusher has emptied the backlog, so reads come from the cache.
    fn wait_flushed(&self) {
        let client = Client::new(self.url.clone());
        self.rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let status = client.status().await.expect("GET /v1/status");
                if status.backlog_agents == 0 {
                    return;
                }
                assert!(Instant::now() < deadline, "backlog not flushed in 30 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = self.rt.block_on(task);
        }
    }
}

fn http(c: &mut Criterion) {
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime"),
    );
    let dir = tempfile::tempdir().expect("temp data dir");
    let server = Server::start(rt.clone(), dir.path());

    let save = sample::save_request(1024);
    let setup = Client::new(server.url.clone());
    rt.block_on(setup.save_state("cached", &save, None))
        .expect("save the agent to read");
    server.wait_flushed();

    let mut group = c.benchmark_group("http_load");
    for codec in [Codec::MsgPack, Codec::Json] {
        let client = Client::new(server.url.clone()).with_codec(codec);
        let id = format!("codec={}", codec_name(codec));
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.to_async(&*rt).iter(|| async {
                let state = client.load_state("cached").await.expect("GET the agent");
                assert!(state.is_some(), "the agent exists");
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("http_save");
    for state_data_bytes in [1024, 16 * 1024] {
        let req = sample::save_request(state_data_bytes);
        for codec in [Codec::MsgPack, Codec::Json] {
            for durability in [Durability::Local, Durability::Memory] {
                let client = Client::new(server.url.clone())
                    .with_codec(codec)
                    .with_durability(durability);
                let id = format!(
                    "codec={}/durability={}/state_data_bytes={state_data_bytes}",
                    codec_name(codec),
                    durability.as_str()
                );
                let agent = format!("saved-{state_data_bytes}");
                group.bench_function(BenchmarkId::from_parameter(id), |b| {
                    b.to_async(&*rt).iter(|| async {
                        client
                            .save_state(&agent, &req, None)
                            .await
                            .expect("PUT the agent")
                    })
                });
            }
        }
    }
    group.finish();
    drop(server);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = cache_get, http
}
criterion_main!(benches);
