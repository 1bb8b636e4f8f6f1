//! The sidecar inside a real memory cgroup with the k8s base's limit (256 MiB) and
//! settings: backlog, read cache and thread cache filled together (saves of 32 KB agents
//! from 32 writers, reads of every one, 3,000 threads' 48 KB checkpoints, then the
//! backend stalled and saves until the backlog refuses), and the kernel never OOM-kills
//! it; once the backend is back, the backlog drains. The
//! sidecar finds the limit itself (no memory flag is given), as it does in a pod.
//!
//! Needs root, as on the project's machines, to make a child of this process's memory
//! cgroup (v1 `memory.limit_in_bytes`, or v2 `memory.max`); fails saying so otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentstate_protocol::{
    Client, ClientError, Payload, PutThreadCheckpointRequest, SaveStateRequest, StatePersistence,
    ThreadBlob, Typed,
};
use bytes::Bytes;
use common::{eventually, raw, Sidecar};
use serde_json::json;

/// The k8s base's memory limit for the sidecar container.
const LIMIT_BYTES: u64 = 256 * 1024 * 1024;
const WRITERS: usize = 32;
const AGENTS: u64 = 12_000;
const AGENT_BYTES: usize = 32 * 1024;
const THREADS: u64 = 3_000;
const THREAD_BYTES: usize = 48 * 1024;

/// A child memory cgroup of this process's, removed when dropped.
struct MemoryCgroup {
    dir: PathBuf,
    v1: bool,
}

impl MemoryCgroup {
    fn new(limit_bytes: u64) -> MemoryCgroup {
        let membership = std::fs::read_to_string("/proc/self/cgroup").unwrap();
        let v1_path = membership.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_string())
        });
        let (parent, v1, limit_file) = match v1_path {
            Some(p) => (
                Path::new("/sys/fs/cgroup/memory").join(p.trim_start_matches('/')),
                true,
                "memory.limit_in_bytes",
            ),
            None => {
                let p = membership
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .expect("a cgroup v1 memory controller or a cgroup v2 membership");
                (
                    Path::new("/sys/fs/cgroup").join(p.trim_start_matches('/')),
                    false,
                    "memory.max",
                )
            }
        };
        let dir = parent.join(format!("agentstate-memory-test-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot make the memory cgroup {} ({e}): this test needs root on a machine \
                 with a memory cgroup, as the project's machines are",
                dir.display()
            )
        });
        std::fs::write(dir.join(limit_file), limit_bytes.to_string())
            .unwrap_or_else(|e| panic!("cannot set {limit_file} in {}: {e}", dir.display()));
        MemoryCgroup { dir, v1 }
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// OOM kills in this cgroup so far.
    fn oom_kills(&self) -> u64 {
        let file = if self.v1 {
            "memory.oom_control"
        } else {
            "memory.events"
        };
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .map_or(0, |n| n.trim().parse().unwrap())
    }

    /// The most memory charged to this cgroup at once.
    fn peak_bytes(&self) -> u64 {
        let file = if self.v1 {
            "memory.max_usage_in_bytes"
        } else {
            "memory.peak"
        };
        std::fs::read_to_string(self.dir.join(file))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Only an empty cgroup can go; the sidecar is killed before this.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn blob(bytes: usize, seed: u64) -> String {
    // Incompressible enough that nothing shrinks it, and valid JSON string content.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (b'a' + (x % 26) as u8) as char
        })
        .collect()
}

/// Saves `from..to` (agent `i % AGENTS`) from `WRITERS` writers until `until`; counts
/// acknowledged saves and those refused because the backlog is full.
async fn save_agents(client: &Client, from: u64, to: u64, until: Instant) -> (u64, u64) {
    let next = Arc::new(AtomicU64::new(from));
    let acked = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (client, next, acked, refused) =
                (client.clone(), next.clone(), acked.clone(), refused.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    // Done at `to`, at `until`, or once the backlog refuses every writer.
                    if i >= to
                        || Instant::now() > until
                        || refused.load(Ordering::Relaxed) >= WRITERS as u64
                    {
                        return;
                    }
                    let req = SaveStateRequest {
                        state_name: "idle".into(),
                        state_data: Some(json!({ "blob": blob(AGENT_BYTES, i) })),
                        ..Default::default()
                    };
                    let id = format!("agent-{}", i % AGENTS);
                    match client.save_state(&id, &req, None).await {
                        Ok(_) => acked.fetch_add(1, Ordering::Relaxed),
                        Err(e @ ClientError::Api { status: 503, .. }) => {
                            // Full, or (an agent not in memory) the stalled backend.
                            if e.to_string().contains("backlog is full") {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            0
                        }
                        Err(e) => panic!("save {id}: {e}"),
                    };
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (
        acked.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    )
}

fn checkpoint(i: u64) -> PutThreadCheckpointRequest {
    PutThreadCheckpointRequest {
        checkpoint_ns: String::new(),
        checkpoint_id: format!("{i:08}"),
        parent_checkpoint_id: None,
        checkpoint: Typed {
            type_: "json".into(),
            data: Payload(Bytes::from_static(b"{}")),
        },
        metadata: Default::default(),
        channel_versions: [("messages".to_string(), "1".to_string())].into(),
        blobs: vec![ThreadBlob {
            channel: "messages".into(),
            version: "1".into(),
            value: Typed {
                type_: "json".into(),
                data: Payload(Bytes::from(format!("{:?}", blob(THREAD_BYTES, i)))),
            },
            extends: None,
        }],
    }
}

/// Holds an exclusive lock on the embedded store, as a stuck backend would: the
/// sidecar's flushes fail (busy) and its backlog grows. Released when dropped.
struct StoreLock(std::process::Child);

impl StoreLock {
    fn take(db: &Path) -> StoreLock {
        let script = "import sqlite3, sys, time\n\
                      c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                      c.execute('BEGIN EXCLUSIVE')\n\
                      print('locked', flush=True)\n\
                      time.sleep(600)\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .arg(db)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "locked", "the store lock was not taken");
        StoreLock(child)
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_fits_the_k8s_base_memory_limit_with_every_bound_full() {
    let cgroup = MemoryCgroup::new(LIMIT_BYTES);
    let dir = tempfile::tempdir().unwrap();
    // The k8s base's environment (k8s/base/deployment.yaml), as flags; the embedded
    // store stands in for MongoDB, so that the backend can be stalled at will.
    let args = [
        "--backlog-bytes-max",
        "67108864",
        "--cache-entries-max",
        "10000",
        "--wal-segment-bytes-max",
        "16777216",
    ];
    let data = dir.path().join("data");
    let mut sidecar = Sidecar::start_in(&data, &args, Some(&cgroup.procs())).await;
    let started = Instant::now();
    let log = sidecar.log();
    assert!(
        log.contains("memory budget") && log.contains("limit_mib=256"),
        "the sidecar found the cgroup's limit:\n{log}"
    );
    let client = sidecar.client();

    // The read cache: saves of every agent, then a read of each.
    let (acked, _) =
        save_agents(&client, 0, AGENTS, Instant::now() + Duration::from_secs(30)).await;
    assert!(acked > 3000, "only {acked} saves acknowledged");
    for i in 0..acked.min(AGENTS) {
        if let Err(e) = client.load_state(&format!("agent-{i}")).await {
            panic!(
                "read agent-{i}: {e}; the sidecar exited: {:?}; OOM kills in the cgroup: {}",
                sidecar.exited(),
                cgroup.oom_kills()
            );
        }
    }
    // The thread cache.
    for i in 0..THREADS {
        client
            .put_thread_checkpoint(&format!("thread-{i}"), &checkpoint(i))
            .await
            .unwrap();
    }
    // The backlog: the backend stalled, saves until refused.
    let lock = StoreLock::take(&data.join("agentstate.db"));
    // Most saves then wait on the stalled backend (an agent not in memory must be read
    // first), so the backlog fills at the pace of the few in memory: on a machine whose
    // disk is slow under the cgroup's memory pressure that has taken 40 s. The phase ends
    // once every writer is refused, and at worst after 3 minutes.
    let (backlog_acked, refused) = save_agents(
        &client,
        AGENTS,
        AGENTS * 10,
        Instant::now() + Duration::from_secs(180),
    )
    .await;
    let status = client.status().await.unwrap();
    let metrics = raw("GET", &format!("{}/metrics", sidecar.url()), &[], "").await;
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    eprintln!(
        "memory_budget: {acked} saves, then {backlog_acked} with the backend stalled ({refused} refused); \
         backlog {} of {} bytes; cache {} entries; sidecar RSS {} MiB; peak charged to the cgroup (page cache included) {} MiB of {} MiB; {:?}",
        status.backlog_bytes,
        status.backlog_bytes_max,
        status.cache_entries,
        sidecar.rss_bytes() / (1024 * 1024),
        cgroup.peak_bytes() / (1024 * 1024),
        LIMIT_BYTES / (1024 * 1024),
        started.elapsed(),
    );
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("agentstate_memory_") || l.starts_with("agentstate_cache_bytes"))
    {
        eprintln!("  {line}");
    }
    assert!(refused > 0, "the backlog never filled");
    assert!(
        status.backlog_bytes * 10 >= status.backlog_bytes_max * 8,
        "the backlog is near its bound: {status:?}"
    );
    assert!(
        metrics.contains("agentstate_memory_limit_bytes 268435456"),
        "{metrics}"
    );
    assert_eq!(
        sidecar.exited(),
        None,
        "the sidecar died: {}",
        sidecar.log()
    );
    assert_eq!(cgroup.oom_kills(), 0, "the kernel OOM-killed in the cgroup");

    // The backend back: the backlog drains.
    drop(lock);
    eventually(Duration::from_secs(60), "an empty backlog", || {
        let c = client.clone();
        async move { c.status().await.ok().filter(|s| s.backlog_agents == 0) }
    })
    .await;
    assert_eq!(cgroup.oom_kills(), 0, "the kernel OOM-killed in the cgroup");
    sidecar.kill9();
}
