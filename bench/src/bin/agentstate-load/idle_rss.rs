//! Idle RSS: what a fresh sidecar holds before any load (measured as each phase starts
//! its sidecar), against the target.

use agentstate_bench::report::mib;
use serde_json::Value;

use crate::ctx::Ctx;

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
    let max = fresh.iter().map(|f| f.1).max();
    let measured = fresh
        .iter()
        .map(|(k, v)| format!("{k}: {}", mib(*v)))
        .collect::<Vec<_>>()
        .join("; ");
    ctx.report.section("Idle RSS");
    ctx.report.target(
        "idle RSS < 20 MB",
        measured,
        max.map(|m| m * 1024 < 20_000_000),
    );
}
