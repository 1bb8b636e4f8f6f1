//! Idle RSS: what a fresh sidecar holds before any load (measured as each phase starts
//! its sidecar), against the target.

use agentstate_bench::report::{mib, Verdict};
use serde_json::Value;

use crate::ctx::Ctx;
use crate::targets::{self, Id};

/// The idle-RSS target over every fresh sidecar of the run.
pub fn target(ctx: &mut Ctx) {
    let fresh: Vec<(String, u64)> = ctx
        .report
        .json
        .get("idle_rss_kib")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.ends_with("fresh"))
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default();
    let measured = fresh
        .iter()
        .map(|(k, v)| format!("{k}: {}", mib(*v)))
        .collect::<Vec<_>>()
        .join("; ");
    // No fresh sidecar: none of the phases that start one ran (the Targets section says
    // "not run"), or the main one was at `--url`.
    let Some(max) = fresh.iter().map(|f| f.1).max() else {
        if ctx.args.url.is_some() {
            ctx.report.section("Idle RSS");
            let why = "the main sidecar was at --url, not started by this run";
            targets::not_measured(&mut ctx.report, Id::IdleRss, why);
        }
        return;
    };
    ctx.report.section("Idle RSS");
    targets::record(
        &mut ctx.report,
        Id::IdleRss,
        measured,
        Verdict::of(max * 1024 < 20_000_000),
    );
}
