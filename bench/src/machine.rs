//! What the figures were measured on, and the disk's own speed limit: the serial
//! `fdatasync` rate, which a WAL without group commit could not beat.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Machine {
    pub nproc: String,
    pub cpu_model: String,
    pub kernel: String,
    pub date_utc: String,
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Machine {
    pub fn describe() -> Machine {
        let cpu_model = command_output("lscpu", &[])
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("Model name:"))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Machine {
            nproc: command_output("nproc", &[]).unwrap_or_else(|| "?".into()),
            cpu_model,
            kernel: command_output("uname", &["-sr"]).unwrap_or_else(|| "?".into()),
            date_utc: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }
}

/// Appends `record_bytes` and `fdatasync`s, one at a time, for `duration`, in a file in
/// `dir` (the WAL's file system): syncs per second.
pub fn serial_fdatasync_rate(
    dir: &Path,
    record_bytes: usize,
    duration: Duration,
) -> std::io::Result<f64> {
    fs::create_dir_all(dir)?;
    let path = dir.join("fdatasync-probe");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let record = vec![0x5a_u8; record_bytes];
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < duration {
        f.write_all(&record)?;
        f.sync_data()?;
        syncs += 1;
    }
    let rate = syncs as f64 / started.elapsed().as_secs_f64();
    drop(f);
    fs::remove_file(&path)?;
    Ok(rate)
}
