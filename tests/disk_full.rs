//! A full disk under the WAL: writes are refused with a clear error, nothing is left
//! half-written, the sidecar keeps serving reads, and once space returns it writes again;
//! after a `kill -9` every acknowledged write is still there.
//!
//! The disk is a small tmpfs mounted for the test, which needs root (as on the project's
//! machines and CI); without it the test fails and says so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agentstate_protocol::{ErrorCode, SaveStateRequest, StatePersistence};
use common::{eventually, Mongo, Sidecar};
use serde_json::json;

/// A tmpfs of `size` at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "the disk-full test mounts a small tmpfs and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount the tmpfs");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn padded(n: u64) -> SaveStateRequest {
    SaveStateRequest {
        state_name: "busy".into(),
        state_data: Some(json!({ "n": n, "pad": "x".repeat(4000) })),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_full_disk_refuses_writes_cleanly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let disk = Tmpfs::mount(&data, "256k");
    let mut mongo = Mongo::start_local("agentstate_disk_full".into());
    let args = mongo.sidecar_args();
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend([
        "--backend-timeout-ms",
        "300",
        "--wal-segment-bytes-max",
        "65536",
    ]);
    let mut sidecar = Sidecar::start(&data, &args).await;
    let client = sidecar.client();
    client.save_state("d", &padded(0), None).await.unwrap();

    // With MongoDB gone nothing is flushed, so the WAL grows until the disk is full.
    mongo.kill9();
    let mut acked = 0;
    let mut refused = None;
    for n in 1..=500 {
        match client.save_state("d", &padded(n), None).await {
            Ok(v) => acked = v,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let e = refused.expect("the disk fills up");
    assert_eq!(e.code(), Some(ErrorCode::Unavailable), "{e}");
    assert!(e.to_string().contains("No space left on device"), "{e}");
    // Still serving: reads, health, and clear refusals.
    assert_eq!(
        client.load_state("d").await.unwrap().unwrap().version,
        acked
    );
    let e = client
        .save_state("d", &padded(999), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Unavailable));

    // Space comes back: writes go on, after the gap the failed batches left.
    disk.resize("4m");
    let v = eventually(Duration::from_secs(10), "writes accepted again", || {
        let client = client.clone();
        async move { client.save_state("d", &padded(1000), None).await.ok() }
    })
    .await;
    assert!(v > acked);

    // Nothing half-written: a restart replays cleanly, with every acknowledged write.
    sidecar.kill9();
    sidecar.restart().await;
    let s = sidecar.client().load_state("d").await.unwrap().unwrap();
    assert_eq!((s.version, s.state_data["n"].as_u64()), (v, Some(1000)));
    assert!(!sidecar.log().contains("corrupt"), "{}", sidecar.log());

    mongo.restart();
    eventually(Duration::from_secs(30), "the backlog drained", || {
        let c = sidecar.client();
        async move { c.status().await.ok().filter(|s| s.backlog_agents == 0) }
    })
    .await;
    drop(sidecar);
    drop(disk);
}
