//! `export` and `import`: agents to a file and back, for backups and for moving agents
//! between data dirs or databases.
//!
//! Both run the sidecar on the data dir (as `recover` does), so an export sees changes
//! still in the WAL and an import goes through the engine: its checks, the WAL, the
//! flush. An import reads the file three times: once for its structure before the data
//! dir is opened, once to compare it with what is here, and once to write; a damaged
//! file or a conflict therefore changes nothing.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use agentstate_protocol::Client;
use anyhow::Context;

use super::{drained, with_sidecar};
use crate::config::{Config, ExportArgs, ImportArgs};
use crate::engine::{self, Engine, EngineError, ImportOptions, Imported};
use crate::export_file::{Header, Item, Reader, Writer};

/// Agents or transfers listed per read.
const LIST_PAGE: u32 = 1000;
/// Conflicts listed; the rest are only counted.
const CONFLICTS_SHOWN_MAX: usize = 100;

/// `agentstate export`.
pub async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_args(args.serve)?;
    let partial = partial_path(&args.file)?;
    let only: Option<HashSet<String>> =
        (!args.agents.is_empty()).then(|| args.agents.iter().cloned().collect());
    let written = with_sidecar(config, async |_, engine: Arc<Engine>| {
        let file =
            File::create(&partial).with_context(|| format!("create {}", partial.display()))?;
        let header = Header::new(engine.store_kind(), engine::now());
        let mut w = Writer::new(BufWriter::new(file), &header)?;
        write_agents(&engine, &mut w, only.as_ref()).await?;
        let mut after = String::new();
        loop {
            let page = engine.transfers_after(&after, LIST_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.transfer_id.clone();
            for t in &page {
                let wanted = only
                    .as_ref()
                    .is_none_or(|o| o.contains(&t.from_agent) || o.contains(&t.to_agent));
                if wanted {
                    w.transfer(t)?;
                }
            }
        }
        let (out, counts) = w.finish()?;
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok((counts, engine.store_kind()))
    })
    .await;
    let (counts, backend) = match written {
        Ok(w) => w,
        Err(e) => {
            let _ = fs::remove_file(&partial);
            return Err(e.context(format!("export to {}", args.file.display())));
        }
    };
    // Only a whole file takes the name.
    crate::durable::rename(&partial, &args.file)
        .with_context(|| format!("rename {} to {}", partial.display(), args.file.display()))?;
    println!(
        "exported {} agents ({} transitions, {} messages, {} checkpoints; threads: {} checkpoints, {} blobs, {} writes) and {} transfers from the {backend} backend to {}",
        counts.agents,
        counts.transitions,
        counts.messages,
        counts.checkpoints,
        counts.thread_checkpoints,
        counts.thread_blobs,
        counts.thread_writes,
        counts.transfers,
        args.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The hidden file an export is written to before it takes its name.
fn partial_path(file: &Path) -> anyhow::Result<PathBuf> {
    let name = file
        .file_name()
        .with_context(|| format!("{} is not a file name", file.display()))?;
    Ok(file.with_file_name(format!(".{}.partial", name.to_string_lossy())))
}

/// Every agent (or those in `only`), in order of id.
async fn write_agents(
    engine: &Engine,
    w: &mut Writer<BufWriter<File>>,
    only: Option<&HashSet<String>>,
) -> anyhow::Result<()> {
    if let Some(only) = only {
        let mut ids: Vec<&String> = only.iter().collect();
        ids.sort();
        for id in ids {
            let agent = engine
                .export_agent(id)
                .await?
                .with_context(|| format!("agent {id} not found"))?;
            w.agent(&agent)?;
        }
        return Ok(());
    }
    let mut after = String::new();
    loop {
        let ids = engine.agent_ids(&after, LIST_PAGE).await?;
        let Some(last) = ids.last() else { break };
        after = last.clone();
        for id in &ids {
            // Deleted, or (after a cut-short import) history without a record.
            let Some(agent) = engine.export_agent(id).await? else {
                continue;
            };
            w.agent(&agent)?;
        }
    }
    Ok(())
}

/// What an import did, or would do.
#[derive(Default)]
struct Tally {
    agents_added: u64,
    agents_replaced: u64,
    agents_unchanged: u64,
    transfers_added: u64,
    transfers_unchanged: u64,
    transfers_kept: u64,
    /// Agents and transfers that differ from what is here, with their lines: the first
    /// [`CONFLICTS_SHOWN_MAX`] of them, and how many in all.
    conflicts: Vec<String>,
    conflicts_total: u64,
}

impl Tally {
    fn count(&mut self, transfer: bool, imported: Imported) {
        let n = match (transfer, imported) {
            (false, Imported::Added) => &mut self.agents_added,
            (false, Imported::Replaced { .. }) => &mut self.agents_replaced,
            (false, _) => &mut self.agents_unchanged,
            (true, Imported::Added) => &mut self.transfers_added,
            (true, Imported::Kept) => &mut self.transfers_kept,
            (true, _) => &mut self.transfers_unchanged,
        };
        *n += 1;
    }

    fn changes(&self) -> u64 {
        self.agents_added + self.agents_replaced + self.transfers_added
    }

    fn summary(&self, verb: &str) -> String {
        format!(
            "agents: {} {verb}added, {} {verb}replaced, {} unchanged; transfers: {} {verb}added, {} unchanged, {} kept as they are here",
            self.agents_added,
            self.agents_replaced,
            self.agents_unchanged,
            self.transfers_added,
            self.transfers_unchanged,
            self.transfers_kept
        )
    }
}

/// Reads the file whole, checking its structure only.
fn check_file(path: &Path) -> anyhow::Result<()> {
    let mut r = open(path)?;
    while r
        .next_item()
        .with_context(|| format!("{} is damaged", path.display()))?
        .is_some()
    {}
    Ok(())
}

fn open(path: &Path) -> anyhow::Result<Reader<BufReader<File>>> {
    let file = File::open(path).with_context(|| format!("open {}", path.display()))?;
    Reader::new(BufReader::new(file))
        .with_context(|| format!("{} is not an export file", path.display()))
}

/// Runs every agent and transfer of the file through the engine: with `dry_run`, to
/// find out what importing would do (conflicts included); else to import.
async fn run_file(engine: &Arc<Engine>, path: &Path, opts: ImportOptions) -> anyhow::Result<Tally> {
    let mut r = open(path)?;
    let mut tally = Tally::default();
    while let Some(item) = r.next_item()? {
        let (line, what, done) = match item {
            Item::Agent { line, agent } => {
                let what = format!("agent {}", agent.record.state.agent_id);
                let done = engine.import_agent(*agent, opts).await;
                (line, what, done.map(|i| (false, i)))
            }
            Item::Transfer { line, transfer } => {
                let what = format!("transfer {}", transfer.transfer_id);
                let done = engine.import_transfer(transfer, opts).await;
                (line, what, done.map(|i| (true, i)))
            }
        };
        match done {
            Ok((transfer, imported)) => tally.count(transfer, imported),
            Err(EngineError::Conflict(m)) if opts.dry_run => {
                tally.conflicts_total += 1;
                if tally.conflicts.len() < CONFLICTS_SHOWN_MAX {
                    tally.conflicts.push(format!("line {line}: {m}"));
                }
            }
            Err(e) if opts.dry_run => anyhow::bail!("line {line} ({what}): {e}"),
            Err(e) => anyhow::bail!(
                "line {line} ({what}): {e}; what came before it is imported, and importing the file again finishes the job"
            ),
        }
    }
    Ok(tally)
}

/// `agentstate import`.
pub async fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let config = Config::from_args(args.serve)?;
    let wait = Duration::from_secs(args.wait_secs);
    let path = args.file;
    check_file(&path)?;
    let opts = ImportOptions {
        overwrite: args.overwrite,
        dry_run: true,
    };
    let (tally, backend) = with_sidecar(config, async |client: Client, engine: Arc<Engine>| {
        let planned = run_file(&engine, &path, opts).await?;
        if planned.conflicts_total > 0 || args.dry_run || planned.changes() == 0 {
            return Ok((planned, engine.store_kind()));
        }
        let done = run_file(
            &engine,
            &path,
            ImportOptions {
                dry_run: false,
                ..opts
            },
        )
        .await?;
        drained(&client, wait).await?;
        Ok((done, engine.store_kind()))
    })
    .await?;
    let file = path.display();
    if tally.conflicts_total > 0 {
        for c in &tally.conflicts {
            println!("CONFLICT {c}");
        }
        let unshown = tally.conflicts_total - tally.conflicts.len() as u64;
        if unshown > 0 {
            println!("... and {unshown} more");
        }
        anyhow::bail!(
            "{} of {file} differ from what the {backend} backend has: nothing imported; --overwrite replaces what is here with the file's",
            plural(tally.conflicts_total, "agent or transfer", "agents or transfers")
        );
    }
    if args.dry_run {
        println!("dry run, nothing changed: {}", tally.summary("to be "));
    } else if tally.changes() == 0 {
        println!(
            "nothing changed in the {backend} backend: {}",
            tally.summary("")
        );
    } else {
        println!(
            "imported {file} into the {backend} backend: {}",
            tally.summary("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
