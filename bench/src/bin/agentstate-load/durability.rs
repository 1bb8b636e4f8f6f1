//! `durability`: saves at `--clients` with `local` and with `memory`, the disk's serial
//! fdatasync rate before and after, the WAL's records per fsync (from `/metrics`), and
//! the sidecar's CPU time per save (from `/proc`, when this run started the sidecar).

use std::collections::BTreeMap;
use std::time::Duration;

use agentstate_bench::machine;
use agentstate_bench::probe;
use agentstate_bench::report::{us, Verdict};
use agentstate_bench::sample;
use agentstate_bench::sidecar_proc::SidecarProcess;
use agentstate_bench::stats::Summary;
use agentstate_bench::workload;
use agentstate_protocol::{Client, Durability, StatePersistence};
use anyhow::Context;
use serde_json::json;

use crate::ctx::{drain, print_errors, summaries_json, Ctx};
use crate::targets::{self, Id};

pub async fn run(ctx: &mut Ctx, url: &str, proc_: Option<&SidecarProcess>) -> anyhow::Result<()> {
    ctx.report.section("Durability: local vs memory");
    let dir = ctx.work.path().join("fsync-probe");
    let probe_fsync = || {
        machine::serial_fdatasync_rate(&dir, 512, Duration::from_secs(3))
            .context("measure the serial fdatasync rate")
    };
    // The sidecar's CPU over the whole phase (idle during the fsync probes), per save.
    let pid = proc_.and_then(SidecarProcess::pid);
    let cpu = || pid.and_then(probe::cpu_seconds);
    let cpu_start = cpu();
    let mut saves = 0;
    let mut cpu_per_save_us = BTreeMap::new();
    // This disk's fsync time swings with its neighbours' load: measured before and after
    // the runs, and the mean taken.
    let fsync_before = probe_fsync()?;
    let clients = ctx.args.clients;
    let req = sample::save_request(ctx.args.state_bytes);
    ctx.report.line("");
    ctx.report.line(
        "| durability | clients | saves/s | p50 | p99 | p99.9 | WAL records per fsync | \
         mean WAL write+fsync |",
    );
    ctx.report.line("|---|---|---|---|---|---|---|---|");
    let mut results = BTreeMap::new();
    let mut json_rows = Vec::new();
    for durability in [Durability::Memory, Durability::Local] {
        let client = Client::new(url)
            .with_timeout(Duration::from_secs(30))
            .with_durability(durability);
        let prefix = format!("dur-{}-{}", ctx.nonce, durability.as_str());
        let cpu_before = cpu();
        for i in 0..clients {
            client
                .save_state(&format!("{prefix}-{i}"), &req, None)
                .await
                .context("create the durability phase's agents")?;
        }
        let metrics_before = match proc_ {
            Some(s) => probe::metrics(s.addr).await,
            None => None,
        };
        let r = workload::run_clients(clients, ctx.duration(), |i, deadline| {
            let prefix = prefix.clone();
            workload::save_client(client.clone(), i, deadline, req.clone(), move |i, _| {
                format!("{prefix}-{i}")
            })
        })
        .await;
        let metrics_after = match proc_ {
            Some(s) => probe::metrics(s.addr).await,
            None => None,
        };
        let wal = metrics_before.zip(metrics_after).and_then(|(b, a)| {
            let d = |name| Some(a.sum(name)? - b.sum(name)?);
            Some((
                d("agentstate_wal_records_total")? / d("agentstate_wal_batches_total")?,
                d("agentstate_wal_fsync_duration_seconds_sum")?
                    / d("agentstate_wal_fsync_duration_seconds_count")?.max(1.0),
            ))
        });
        let per_fsync = wal.map(|w| w.0);
        let fsync_ms = wal.map(|w| w.1 * 1000.0);
        let s = Summary::of(&r.rec.combined());
        ctx.report.line(format!(
            "| {} | {clients} | {:.0} | {} | {} | {} | {} | {} |",
            durability.as_str(),
            r.ops_per_sec(),
            us(s.p50_us),
            us(s.p99_us),
            us(s.p999_us),
            per_fsync.map_or("?".into(), |v| format!("{v:.1}")),
            fsync_ms.map_or("?".into(), |v| format!("{v:.2} ms"))
        ));
        print_errors(&mut ctx.report, durability.as_str(), &r.rec);
        json_rows.push(
            json!({"durability": durability.as_str(), "clients": clients,
                   "records_per_fsync": per_fsync, "mean_fsync_ms": fsync_ms,
                   "result": summaries_json(&r)}),
        );
        results.insert(durability.as_str(), (r.ops_per_sec(), s));
        drain(&client).await?;
        // The agents' creation, the run and the drain (the flush is part of a save's cost).
        let run_saves = clients as u64 + r.rec.total_ops();
        saves += run_saves;
        if let (Some(a), Some(b)) = (cpu_before, cpu()) {
            cpu_per_save_us.insert(durability.as_str(), (b - a) / run_saves as f64 * 1e6);
        }
    }
    let fsync_after = probe_fsync()?;
    let cpu_phase_s = cpu_start.zip(cpu()).map(|(a, b)| b - a);
    let fsync_rate = (fsync_before + fsync_after) / 2.0;
    ctx.report.line(format!(
        "serial fdatasync rate of the WAL's disk (512 B appends, one at a time): \
         {fsync_before:.0}/s before the runs, {fsync_after:.0}/s after, mean {fsync_rate:.0}/s"
    ));
    let cpu_per_save = cpu_phase_s.map(|s| s / saves.max(1) as f64 * 1e6);
    if let Some(s) = cpu_phase_s {
        ctx.report.line(format!(
            "sidecar CPU time (/proc, user + system) over the phase: {s:.2} s for {saves} \
             saves = {:.1} µs per save; per durability, over its agents' creation, run and \
             drain: {}",
            s / saves.max(1) as f64 * 1e6,
            cpu_per_save_us
                .iter()
                .map(|(d, v)| format!("{d} {v:.1} µs"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    ctx.report.json.insert(
        "durability".into(),
        json!({"serial_fdatasync_per_sec": fsync_rate,
               "serial_fdatasync_per_sec_before": fsync_before,
               "serial_fdatasync_per_sec_after": fsync_after, "runs": json_rows,
               "saves": saves, "sidecar_cpu_s": cpu_phase_s,
               "sidecar_cpu_per_save_us": cpu_per_save,
               "sidecar_cpu_per_save_us_by_durability": cpu_per_save_us}),
    );
    ctx.report.line("");
    let (local, local_s) = results["local"];
    let (memory, _) = results["memory"];
    // The targets are stated at 64 clients and 1 KiB states.
    let sizes = [
        ("--clients", clients, targets::CLIENTS),
        ("--state-bytes", ctx.args.state_bytes, targets::STATE_BYTES),
    ];
    targets::record_sized(
        &mut ctx.report,
        Id::LocalVsMemory,
        format!("{local:.0}/s vs {memory:.0}/s = {:.2}x", local / memory),
        Verdict::of(local / memory >= 0.9),
        &sizes,
    );
    targets::record_sized(
        &mut ctx.report,
        Id::LocalVsFsync,
        format!(
            "{local:.0}/s vs {fsync_rate:.0}/s = {:.1}x",
            local / fsync_rate
        ),
        Verdict::of(local / fsync_rate >= 8.0),
        &sizes,
    );
    targets::record_sized(
        &mut ctx.report,
        Id::LocalP99,
        us(local_s.p99_us),
        Verdict::of(local_s.p99_us < 2000.0),
        &sizes,
    );
    match cpu_per_save {
        Some(v) => targets::record_sized(
            &mut ctx.report,
            Id::SaveCpu,
            format!("{v:.1} µs ({saves} saves, local and memory)"),
            Verdict::of(v <= 25.0),
            &sizes[1..],
        ),
        None => targets::not_measured(
            &mut ctx.report,
            Id::SaveCpu,
            "the sidecar is not this run's process (--url)",
        ),
    }
    Ok(())
}
