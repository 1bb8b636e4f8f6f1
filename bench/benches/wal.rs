//! WAL benches, on the sidecar's own `wal` and `recovery` modules.
//!
//! - `wal_append/record_bytes={}/fsync={}/writers={}`: time per record with `writers`
//!   tasks each appending and waiting for durability in a loop, so one fdatasync covers
//!   whatever the writers had waiting (group commit). Reported as records/s.
//! - `wal_replay/records={}/record_bytes={}`: reading and CRC-checking a log at open.
//! - `sidecar_replay/records={}/agents={}`: the sidecar's start-up replay (decode every
//!   operation and rebuild the backlog), `recovery::replay`.
//! - `wal_fdatasync/record_bytes={}/file={appended,preallocated}`: one record written and
//!   fdatasync'ed, on a file that grows with each write (as the WAL's segments do) or
//!   over a segment zero-filled and synced ahead of use (as PostgreSQL's and etcd's WALs
//!   do), where a sync changes no file size or block map: what preallocation would save.

use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentstate_bench::sample;
use agentstate_sidecar::backlog::Backlog;
use agentstate_sidecar::model::Op;
use agentstate_sidecar::recovery;
use agentstate_sidecar::wal::{Wal, WalOptions};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
const RECORD_SIZES: [usize; 3] = [100, 1024, 16 * 1024];
const WRITERS: [usize; 3] = [1, 8, 64];
const REPLAY_RECORDS: u64 = 100_000;

fn opts(dir: &Path, fsync: bool) -> WalOptions {
    WalOptions {
        dir: dir.to_path_buf(),
        segment_bytes_max: SEGMENT_BYTES_MAX,
        fsync,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn append(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("wal_append");
    group.throughput(Throughput::Elements(1));
    for fsync in [false, true] {
        for record_bytes in RECORD_SIZES {
            let dir = tempfile::tempdir().expect("temp dir for the WAL");
            let (wal, _) = Wal::open(opts(dir.path(), fsync), |_, _| Ok(())).expect("open WAL");
            let body: Arc<[u8]> = vec![0xa5; record_bytes].into();
            for writers in WRITERS {
                let id = format!("record_bytes={record_bytes}/fsync={fsync}/writers={writers}");
                group.bench_function(BenchmarkId::from_parameter(id), |b| {
                    b.to_async(&rt).iter_custom(|iters| {
                        let (wal, body) = (wal.clone(), body.clone());
                        async move { append_rounds(wal, body, writers, iters).await }
                    })
                });
            }
            wal.close();
        }
    }
    group.finish();
}

/// `writers` tasks append `iters` records between them, each waiting for its fsync;
/// returns the time scaled to exactly `iters` records.
async fn append_rounds(wal: Wal, body: Arc<[u8]>, writers: usize, iters: u64) -> Duration {
    let per_writer = iters.div_ceil(writers as u64);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (wal, body) = (wal.clone(), body.clone());
            tokio::spawn(async move {
                for _ in 0..per_writer {
                    let mut appended = wal.append(&body, true).expect("append to the WAL");
                    appended.wait_durable().await.expect("WAL record durable");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer task finished");
    }
    let elapsed = started.elapsed();
    // Keep the disk bounded: nothing here needs old segments.
    let _ = wal.release_through(wal.last_lsn());
    elapsed.mul_f64(iters as f64 / (per_writer * writers as u64) as f64)
}

fn fdatasync(c: &mut Criterion) {
    const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
    let mut group = c.benchmark_group("wal_fdatasync");
    group.throughput(Throughput::Elements(1));
    // On the disk the sidecar's data dir would be on, not a tmpfs.
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    for record_bytes in [4 * 1024, 64 * 1024, 256 * 1024] {
        let record = vec![0xa5u8; record_bytes];
        for preallocated in [false, true] {
            let dir = tempfile::tempdir_in(&base).expect("temp dir beside the build");
            let path = dir.path().join("segment");
            let file = if preallocated {
                let mut f = File::create(&path).expect("create the segment");
                let zeros = vec![0u8; 1 << 20];
                for _ in 0..SEGMENT_BYTES >> 20 {
                    f.write_all(&zeros).expect("zero-fill the segment");
                }
                f.sync_all().expect("sync the zero-filled segment");
                f
            } else {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .expect("create the segment")
            };
            let kind = if preallocated {
                "preallocated"
            } else {
                "appended"
            };
            let id = format!("record_bytes={record_bytes}/file={kind}");
            let mut offset = 0u64;
            group.bench_function(BenchmarkId::from_parameter(id), |b| {
                b.iter(|| {
                    if offset + record_bytes as u64 > SEGMENT_BYTES {
                        offset = 0; // past the end: over the same (written) blocks again
                        if !preallocated {
                            file.set_len(0).expect("start the segment over");
                        }
                    }
                    if preallocated {
                        file.write_all_at(&record, offset).expect("write a record");
                    } else {
                        (&file).write_all(&record).expect("write a record");
                    }
                    offset += record_bytes as u64;
                    file.sync_data().expect("fdatasync");
                })
            });
        }
    }
    group.finish();
}

fn replay(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal_replay");
    group.throughput(Throughput::Elements(REPLAY_RECORDS));
    group.sample_size(10);
    for record_bytes in [100, 1024] {
        let dir = tempfile::tempdir().expect("temp dir for the WAL");
        let (wal, _) = Wal::open(opts(dir.path(), false), |_, _| Ok(())).expect("open WAL");
        let body = vec![0xa5; record_bytes];
        for _ in 0..REPLAY_RECORDS {
            wal.append(&body, false).expect("append to the WAL");
        }
        wal.close();
        let id = format!("records={REPLAY_RECORDS}/record_bytes={record_bytes}");
        group.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| {
                let (wal, stats) = Wal::open(opts(dir.path(), false), |lsn, body| {
                    black_box((lsn, body));
                    Ok(())
                })
                .expect("reopen WAL");
                assert_eq!(stats.records, REPLAY_RECORDS, "every record replayed");
                wal.close();
            })
        });
    }
    group.finish();
}

fn sidecar_replay(c: &mut Criterion) {
    const AGENTS: u64 = 1000;
    let mut group = c.benchmark_group("sidecar_replay");
    group.throughput(Throughput::Elements(REPLAY_RECORDS));
    group.sample_size(10);
    let dir = tempfile::tempdir().expect("temp dir for the WAL");
    let (wal, _) = Wal::open(opts(dir.path(), false), |_, _| Ok(())).expect("open WAL");
    let mut state = sample::persisted_state(256);
    for i in 0..REPLAY_RECORDS {
        state.agent_id = format!("agent-{}", i % AGENTS);
        state.version = i / AGENTS + 1;
        let op = Op::Put {
            record: sample::agent_record(&state).into(),
        };
        let body = op.encode().expect("encode a WAL operation");
        wal.append(&body, false).expect("append to the WAL");
    }
    wal.close();
    let id = format!("records={REPLAY_RECORDS}/agents={AGENTS}");
    group.bench_function(BenchmarkId::from_parameter(id), |b| {
        b.iter(|| {
            let backlog = Backlog::new(u64::MAX / 2);
            let (wal, stats, _) =
                recovery::replay(opts(dir.path(), false), &backlog).expect("replay the WAL");
            assert_eq!(stats.records, REPLAY_RECORDS, "every record replayed");
            wal.close();
            black_box(backlog);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = append, fdatasync, replay, sidecar_replay
}
criterion_main!(benches);
