//! Every target the load tool checks, in one list: what it is, the phase that measures
//! it and its threshold. Phases record outcomes by [`Id`]; at the end [`finish`] orders
//! them as listed here and adds a "not run" row for each target no phase reported, so the
//! report's Targets section always names all of them.

use agentstate_bench::report::{Report, TargetRow, Verdict};

use crate::args::Phase;

/// A target, as phases name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Id {
    CacheGetP50,
    CacheGetRate,
    LocalVsMemory,
    LocalVsFsync,
    LocalP99,
    SaveCpu,
    HotDocs,
    ReplayRate,
    CacheBytesBound,
    CacheOverhead,
    RssFlat,
    SaveVsDirect,
    AppendConstant,
    IdleRss,
}

struct Spec {
    id: Id,
    key: &'static str,
    /// The phases that measure it: it is "not run" when none of them ran.
    phases: &'static [Phase],
    target: &'static str,
    threshold: &'static str,
}

/// The sizes the targets are stated at; a run with other `--clients`, `--hot-agents` or
/// `--state-bytes` reports its figures as "not measured".
pub const CLIENTS: usize = 64;
pub const HOT_AGENTS: usize = 8;
pub const STATE_BYTES: usize = 1024;
/// The sustained phase's length the RSS target is stated at.
pub const SUSTAINED_SECS: u64 = 600;

/// In report order: issue 10's targets first, then the earlier ones still checked.
const SPECS: [Spec; 14] = [
    Spec {
        id: Id::CacheGetP50,
        key: "cache_get_p50",
        phases: &[Phase::Cache],
        target: "cache-hit GET p50 (1 KiB state), 1 connection, vs Redis GET of the same bytes",
        threshold: "<= 1.2x",
    },
    Spec {
        id: Id::CacheGetRate,
        key: "cache_get_rate",
        phases: &[Phase::Cache],
        target: "cache-hit GET/s (1 KiB state), 64 connections, vs Redis GET/s",
        threshold: ">= 1x",
    },
    Spec {
        id: Id::LocalVsMemory,
        key: "local_vs_memory",
        phases: &[Phase::Durability],
        target: "`local` saves/s (1 KiB), 64 clients, vs `memory`",
        threshold: ">= 0.9x",
    },
    Spec {
        id: Id::LocalVsFsync,
        key: "local_vs_fsync",
        phases: &[Phase::Durability],
        target: "`local` saves/s (1 KiB), 64 clients, vs the disk's serial fdatasync rate",
        threshold: ">= 8x",
    },
    Spec {
        id: Id::LocalP99,
        key: "local_p99",
        phases: &[Phase::Durability],
        target: "`local` save p99 (1 KiB), 64 clients",
        threshold: "< 2 ms",
    },
    Spec {
        id: Id::SaveCpu,
        key: "save_cpu",
        phases: &[Phase::Durability],
        target: "sidecar CPU per 1 KiB save (its CPU time over the durability phase / saves)",
        threshold: "<= 25 µs",
    },
    Spec {
        id: Id::HotDocs,
        key: "hot_docs",
        phases: &[Phase::Hot],
        target: "hot agents (64 clients, 8 agents, MongoDB): documents written per update",
        threshold: "<= 1/50",
    },
    Spec {
        id: Id::ReplayRate,
        key: "replay_rate",
        phases: &[Phase::Replay],
        target: "WAL replay at start-up",
        threshold: ">= 1M records/s",
    },
    Spec {
        id: Id::CacheBytesBound,
        key: "cache_bytes_bound",
        phases: &[Phase::Sustained],
        target: "the cache holds `--cache-bytes-max` (peak `agentstate_cache_bytes`)",
        threshold: "<= the bound",
    },
    Spec {
        id: Id::CacheOverhead,
        key: "cache_overhead",
        phases: &[Phase::Sustained],
        target: "memory per cached agent beyond its data (RSS per more cached agent less what the cache charges it)",
        threshold: "<= 1 KiB",
    },
    Spec {
        id: Id::RssFlat,
        key: "rss_flat",
        phases: &[Phase::Sustained],
        target: "RSS under 600 s of sustained saves (fitted growth over the last 2/3)",
        threshold: "< 5%",
    },
    Spec {
        id: Id::SaveVsDirect,
        key: "save_vs_direct",
        phases: &[Phase::Mix],
        target: "sidecar save p50 vs a direct journaled MongoDB write",
        threshold: "<= 0.25x",
    },
    Spec {
        id: Id::AppendConstant,
        key: "append_constant",
        phases: &[Phase::Append],
        target: "WAL bytes per message append, #10 vs #10,000",
        threshold: "within 5%",
    },
    Spec {
        id: Id::IdleRss,
        key: "idle_rss",
        phases: &[Phase::Mix, Phase::Durability, Phase::Cache, Phase::Append],
        target: "idle RSS of a fresh sidecar",
        threshold: "< 20 MB",
    },
];

fn spec(id: Id) -> &'static Spec {
    SPECS
        .iter()
        .find(|s| s.id == id)
        .expect("every Id has a Spec")
}

/// Records a target's outcome (a line of the page now, a row of the Targets section).
pub fn record(report: &mut Report, id: Id, measured: impl Into<String>, verdict: Verdict) {
    let s = spec(id);
    report.target(TargetRow {
        id: s.key,
        target: s.target.into(),
        threshold: s.threshold.into(),
        measured: measured.into(),
        verdict,
    });
}

/// Like [`record`], but "not measured" (the figures kept, and why) when the run's sizes
/// are not those the target is stated at: `sizes` are `(flag, value, stated)`.
pub fn record_sized(
    report: &mut Report,
    id: Id,
    measured: String,
    verdict: Verdict,
    sizes: &[(&str, usize, usize)],
) {
    let off: Vec<String> = sizes
        .iter()
        .filter(|(_, value, stated)| value != stated)
        .map(|(flag, value, stated)| format!("{flag} {value}, the target is at {stated}"))
        .collect();
    if off.is_empty() {
        record(report, id, measured, verdict);
    } else {
        let measured = format!("{measured} ({})", off.join("; "));
        record(report, id, measured, Verdict::NotMeasured);
    }
}

/// A target that could not be measured in a phase that ran, and why.
pub fn not_measured(report: &mut Report, id: Id, why: impl Into<String>) {
    record(report, id, why, Verdict::NotMeasured);
}

/// Orders the recorded targets as [`SPECS`] lists them, and adds every target no phase
/// recorded: "not run" if none of its phases ran, else "not measured".
pub fn finish(report: &mut Report, phases: &[Phase]) {
    let position = |key: &str| SPECS.iter().position(|s| s.key == key);
    for s in &SPECS {
        if report.targets.iter().any(|t| t.id == s.key) {
            continue;
        }
        let ran = s.phases.iter().any(|p| phases.contains(p));
        let (measured, verdict) = if ran {
            (
                "its phase reported nothing".to_string(),
                Verdict::NotMeasured,
            )
        } else {
            let names: Vec<String> = s.phases.iter().map(|p| format!("{p:?}")).collect();
            (
                format!("phase {} not in --phases", names.join(" / ").to_lowercase()),
                Verdict::NotRun,
            )
        };
        report.targets.push(TargetRow {
            id: s.key,
            target: s.target.into(),
            threshold: s.threshold.into(),
            measured,
            verdict,
        });
    }
    // Stable: rows of one target (one per concurrency) keep their order.
    report.targets.sort_by_key(|t| position(t.id));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_is_listed_once_and_in_order() {
        let mut report = Report::default();
        record(&mut report, Id::ReplayRate, "2M records/s", Verdict::Met);
        record(&mut report, Id::CacheGetP50, "1.1x", Verdict::Met);
        finish(&mut report, &[Phase::Replay, Phase::Cache]);
        let keys: Vec<&str> = report.targets.iter().map(|t| t.id).collect();
        let listed: Vec<&str> = SPECS.iter().map(|s| s.key).collect();
        assert_eq!(keys, listed);
        let row = |key| report.targets.iter().find(|t| t.id == key).unwrap();
        assert_eq!(row("cache_get_p50").verdict, Verdict::Met);
        // The cache phase ran but did not report this one.
        assert_eq!(row("cache_get_rate").verdict, Verdict::NotMeasured);
        assert_eq!(row("hot_docs").verdict, Verdict::NotRun);
        assert_eq!(row("hot_docs").measured, "phase hot not in --phases");
        // One of its phases ran, but nothing recorded it.
        assert_eq!(row("idle_rss").verdict, Verdict::NotMeasured);
    }
}
