//! The admin commands: `dump`, `check`, `recover`, `cleanup`, and in [`backup`]
//! `export` and `import`.
//!
//! `dump` and `check` only read the data dir (safe beside a running sidecar). `recover`
//! writes, so it takes the data dir's lock like `serve` does; to replay the WAL or roll an
//! agent back it runs the sidecar itself, on an ephemeral loopback port, through the same
//! code paths as `serve`. So do `export` and `import`.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentstate_protocol::Client;
use anyhow::Context;

use crate::backlog::Backlog;
use crate::config::{CheckArgs, CleanupArgs, Config, DumpArgs, RecoverArgs, UsageArgs};
use crate::engine::Engine;
use crate::model::{Current, Op, ThreadChange};
use crate::wal::{self, WalError};
use crate::{engine, server};

mod backup;

pub use backup::{export, import};

/// One line about an operation, for `dump`.
fn describe(op: &Op) -> String {
    match op {
        Op::Put { record } => format!(
            "put {} v{} state={}",
            record.state.agent_id, record.state.version, record.state.state_name
        ),
        Op::Delete {
            agent_id,
            tombstone,
            ..
        } => format!("delete {agent_id} v{}", tombstone.version),
        Op::Transition {
            record,
            transition: t,
        } => format!(
            "transition {} #{} {} -> {} on {} ({}) v{}",
            t.agent_id,
            t.seq,
            t.from_state,
            t.to_state,
            t.trigger,
            if t.success { "ok" } else { "refused" },
            record.state.version
        ),
        Op::Messages { record, messages } => format!(
            "messages {} #{}..#{} v{}",
            record.state.agent_id,
            messages.first().map_or(0, |m| m.seq),
            messages.last().map_or(0, |m| m.seq),
            record.state.version
        ),
        Op::Checkpoint { checkpoint } => format!(
            "checkpoint {} {} at v{}",
            checkpoint.agent_id, checkpoint.checkpoint_id, checkpoint.version
        ),
        Op::Transfer {
            transfer,
            records,
            messages,
            ..
        } => format!(
            "transfer {} {} -> {} on {} ({})",
            transfer.transfer_id,
            transfer.from_agent,
            transfer.to_agent,
            transfer.trigger,
            if records.is_empty() {
                "imported record".to_string()
            } else {
                format!("{} messages", messages.len())
            }
        ),
        Op::Batch { ops } => format!(
            "batch of {}: {}",
            ops.len(),
            ops.iter().map(describe).collect::<Vec<_>>().join("; ")
        ),
        Op::Thread { record, changes } => {
            let parts: Vec<String> = changes
                .iter()
                .map(|c| match c {
                    ThreadChange::Put { checkpoint, blobs } => format!(
                        "put {:?}/{} ({} blobs)",
                        checkpoint.checkpoint_ns,
                        checkpoint.checkpoint_id,
                        blobs.len()
                    ),
                    ThreadChange::Writes { writes } => format!("{} writes", writes.len()),
                    ThreadChange::Drop { checkpoints, blobs } => format!(
                        "drop {} checkpoints, {} blobs",
                        checkpoints.len(),
                        blobs.len()
                    ),
                })
                .collect();
            format!(
                "thread {} v{}: {}",
                record.state.agent_id,
                record.state.version,
                parts.join("; ")
            )
        }
        Op::DropMessages {
            record,
            from_seq,
            to_seq,
        } => format!(
            "remove messages {} #{from_seq}..#{to_seq} v{}",
            record.state.agent_id, record.state.version
        ),
        Op::Import {
            agent_id,
            replaces,
            transitions,
            messages,
            checkpoints,
            threads,
            record,
        } => format!(
            "import {agent_id}{}{}: {} transitions, {} messages, {} checkpoints, {} thread changes{}",
            record
                .as_ref()
                .map_or(String::new(), |r| format!(" v{}", r.state.version)),
            replaces.map_or(String::new(), |t| format!(" replacing v{}", t.version - 1)),
            transitions.len(),
            messages.len(),
            checkpoints.len(),
            threads.len(),
            if record.is_none() {
                " (part; the record follows)"
            } else {
                ""
            }
        ),
    }
}

/// `agentstate dump`.
pub fn dump(args: DumpArgs) -> anyhow::Result<ExitCode> {
    let backlog = Backlog::new(u64::MAX);
    let wal_dir = crate::data_dir::wal(&args.data_dir);
    let scanned = wal::scan(&wal_dir, |lsn, body| {
        let op = Op::decode(body).context("decode WAL operation")?;
        backlog.apply(lsn, &op, body.len() as u64, false);
        if args
            .agent
            .as_deref()
            .is_some_and(|a| !op.agents().contains(&a))
        {
            return Ok(());
        }
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "lsn": lsn, "bytes": body.len(), "op": op })
            );
        } else {
            println!("{lsn:>10}  {:>6} B  {}", body.len(), describe(&op));
        }
        Ok(())
    });
    let (stats, torn) = match scanned {
        Ok(s) => s,
        Err(e @ WalError::Corrupt { .. }) => {
            eprintln!("agentstate dump: {e}");
            eprintln!("(records above were read before the damage)");
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e.into()),
    };
    eprintln!(
        "{} segments, {} records, {} bytes, last LSN {}",
        stats.segments, stats.records, stats.bytes, stats.last_lsn
    );
    if let Some(t) = torn {
        eprintln!(
            "torn tail: {} has {} bytes after its last whole record (offset {}); the sidecar cuts them at start",
            t.file.display(),
            t.cut_bytes(),
            t.valid_len
        );
    }
    if let Some(agent) = &args.agent {
        match backlog.get(agent) {
            Some(Current::Live(r)) => println!("{}", serde_json::to_string_pretty(&r.state)?),
            Some(Current::Deleted(t)) => println!("{agent}: deleted at v{}", t.version),
            None => println!("{agent}: no state in the WAL"),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `agentstate check`.
pub async fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_args(args.serve)?;
    let backlog = Backlog::new(u64::MAX);
    let (stats, torn) = wal::scan(&config.wal_dir(), |lsn, body| {
        backlog.apply(lsn, &Op::decode(body)?, body.len() as u64, false);
        Ok(())
    })?;
    let store = server::open_store(&config, false).await?;
    let batch = backlog.take_batch(usize::MAX, u64::MAX);
    let mut differences = 0;
    let mut report = |what: String| {
        differences += 1;
        println!("DIFF {what}");
    };
    for item in &batch.items {
        let id = &item.agent_id;
        let stored = store
            .load(id)
            .await
            .with_context(|| format!("read {id} from the backend"))?;
        match (&item.current, stored) {
            (Some(Current::Live(w)), None) => report(format!(
                "{id}: v{} in the WAL, missing in the backend",
                w.state.version
            )),
            (Some(Current::Live(w)), Some(b)) if b.state.version < w.state.version => {
                report(format!(
                    "{id}: v{} in the WAL, v{} in the backend",
                    w.state.version, b.state.version
                ))
            }
            (Some(Current::Live(w)), Some(b))
                if b.state.version == w.state.version
                    && (b.state.state_name != w.state.state_name
                        || b.state.state_data != w.state.state_data
                        || b.state.metadata != w.state.metadata) =>
            {
                report(format!(
                    "{id}: v{} differs between the WAL and the backend",
                    w.state.version
                ))
            }
            (Some(Current::Deleted(t)), Some(b)) if b.state.version < t.version => report(format!(
                "{id}: deleted in the WAL (v{}), v{} in the backend",
                t.version, b.state.version
            )),
            _ => {}
        }
    }
    for t in &batch.transfers {
        let id = &t.transfer().transfer_id;
        if store.transfer(id).await?.is_none() {
            report(format!("transfer {id}: in the WAL, missing in the backend"));
        }
    }
    if let Some(t) = torn {
        report(format!(
            "torn WAL tail in {} at offset {}",
            t.file.display(),
            t.valid_len
        ));
    }
    println!(
        "checked {} agents and {} transfers from {} WAL records against the {} backend: {differences} differences",
        batch.items.len(),
        batch.transfers.len(),
        stats.records,
        store.kind()
    );
    Ok(if differences == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the sidecar on an ephemeral loopback port for `work`, then shuts it down (which
/// flushes what it can within the grace period).
async fn with_sidecar<T>(
    mut config: Config,
    work: impl AsyncFnOnce(Client, Arc<Engine>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let token = config.auth_token.clone();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let (engine_tx, engine_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::run_with(
        config,
        async {
            let _ = stop_rx.await;
        },
        move |addr| {
            let _ = addr_tx.send(addr);
        },
        move |engine| {
            let _ = engine_tx.send(engine);
        },
    ));
    let Ok(addr) = addr_rx.await else {
        return Err(server
            .await?
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("the sidecar stopped")));
    };
    let mut client = Client::new(format!("http://{addr}"));
    // Its port is as guarded as the real one's.
    if let Some(token) = token {
        client = client.with_token(token);
    }
    while !client.ready().await {
        if server.is_finished() {
            return Err(server
                .await?
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("the sidecar stopped")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let engine = engine_rx
        .await
        .context("the sidecar stopped before it was ready")?;
    let out = work(client, engine).await;
    let _ = stop_tx.send(());
    server.await??;
    out
}

/// Waits until the backlog is empty (everything in the backend), or `wait` passes.
async fn drained(
    client: &Client,
    wait: Duration,
) -> anyhow::Result<agentstate_protocol::StatusResponse> {
    let deadline = Instant::now() + wait;
    loop {
        let status = client.status().await?;
        if status.backlog_agents == 0 {
            return Ok(status);
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{} agents not flushed after {} s (last error: {}); the WAL keeps them",
                status.backlog_agents,
                wait.as_secs(),
                status.last_flush_error.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `agentstate recover`.
pub async fn recover(args: RecoverArgs) -> anyhow::Result<ExitCode> {
    let wait = Duration::from_secs(args.wait_secs);
    let config = Config::from_args(args.serve)?;
    if args.truncate_corrupt {
        crate::durable::create_dir_all(&config.data_dir)?;
        let _lock = server::lock_data_dir(&config.data_dir)?;
        return quarantine_corruption(&config.wal_dir());
    }
    if let (Some(agent), Some(checkpoint)) = (args.rollback, args.checkpoint) {
        let resp = with_sidecar(config, async |client: Client, _| {
            let resp = client.rollback(&agent, &checkpoint, None).await?;
            drained(&client, wait).await?;
            Ok(resp)
        })
        .await?;
        println!(
            "rolled {agent} back to checkpoint {checkpoint}: now v{} in state {}",
            resp.version, resp.transition.to_state
        );
        return Ok(ExitCode::SUCCESS);
    }
    let status = with_sidecar(config, async |client: Client, _| {
        drained(&client, wait).await
    })
    .await?;
    println!(
        "WAL replayed to the {} backend: every record through LSN {} is flushed",
        status.backend, status.flushed_lsn
    );
    Ok(ExitCode::SUCCESS)
}

/// Finds the first corrupt record and moves it, the rest of its segment and every later
/// segment to `wal/quarantine/`.
fn quarantine_corruption(wal_dir: &Path) -> anyhow::Result<ExitCode> {
    let (file, offset) = match wal::scan(wal_dir, |_, _| Ok(())) {
        Ok(_) => {
            println!("no corrupt record in {}", wal_dir.display());
            return Ok(ExitCode::SUCCESS);
        }
        Err(WalError::Corrupt {
            file,
            offset,
            reason,
        }) => {
            println!(
                "corrupt record in {} at offset {offset}: {reason}",
                file.display()
            );
            (file, offset)
        }
        Err(e) => return Err(e.into()),
    };
    let quarantine = crate::data_dir::quarantine(wal_dir);
    crate::durable::create_dir_all(&quarantine)?;
    let name = |p: &Path| p.file_name().map(PathBuf::from).unwrap_or_default();
    // Keep a full copy of the damaged segment, then cut it at the damage.
    let copy = quarantine.join(name(&file)).with_extension("wal.corrupt");
    crate::durable::copy(&file, &copy).with_context(|| format!("copy {} aside", file.display()))?;
    let f = fs::OpenOptions::new().write(true).open(&file)?;
    f.set_len(offset)?;
    f.sync_all()?;
    println!(
        "kept a copy in {}; cut {} at offset {offset}",
        copy.display(),
        file.display()
    );
    let mut later: Vec<PathBuf> = fs::read_dir(wal_dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wal") && name(p) > name(&file))
        .collect();
    later.sort();
    for p in later {
        let to = quarantine.join(name(&p));
        crate::durable::rename(&p, &to)?;
        println!("moved {} to {}", p.display(), to.display());
    }
    println!("the sidecar can start now; the changes in the moved records are lost");
    Ok(ExitCode::SUCCESS)
}

/// How long `cleanup` waits for what it logged to reach the backend.
const CLEANUP_WAIT: Duration = Duration::from_secs(60);

/// `agentstate cleanup`.
/// `agentstate usage`.
pub async fn usage(args: UsageArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_args(args.serve)?;
    let store = server::open_store(&config, false).await?;
    let tables = store.usage().await.context("read the backend's usage")?;
    let largest = store
        .largest_agents(args.top)
        .await
        .context("read the largest agents")?;
    println!("the {} backend holds:", store.kind());
    println!(
        "{:<22} {:>12} {:>14} {:>14} {:>14}",
        "table", "rows", "data bytes", "storage bytes", "index bytes"
    );
    for t in &tables {
        println!(
            "{:<22} {:>12} {:>14} {:>14} {:>14}",
            t.name, t.rows, t.data_bytes, t.storage_bytes, t.index_bytes
        );
    }
    if !largest.is_empty() {
        println!("largest agents (bytes in every table):");
        for a in &largest {
            println!("{:>14}  {}", a.bytes, a.agent_id);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn cleanup(args: CleanupArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_args(args.serve)?;
    let policy = config.retention.overridden_by(&args.retention);
    if policy.is_empty() {
        anyhow::bail!("no retention limits: give --transitions-max-age-days and the like, or a [retention] section in --config");
    }
    let (r, backend) = if policy.limits_threads() {
        // Threads' checkpoints may share blobs with unflushed ones: they are thinned
        // through the WAL, which needs the data dir.
        with_sidecar(config, async |client: Client, engine: Arc<Engine>| {
            let r = engine.retain(&policy, engine::now()).await?;
            drained(&client, CLEANUP_WAIT).await?;
            Ok((r, engine.store.kind()))
        })
        .await
        .context(
            "thread checkpoint limits are applied through the data dir: stop the sidecar \
             using it first, or let it apply them from its [retention] section",
        )?
    } else {
        let store = server::open_store(&config, false).await?;
        (store.retain(&policy, engine::now()).await?, store.kind())
    };
    println!(
        "deleted {} transitions, {} messages, {} checkpoints, {} thread checkpoints from the {backend} backend",
        r.transitions, r.messages, r.checkpoints, r.thread_checkpoints,
    );
    Ok(ExitCode::SUCCESS)
}
