//! `append`: WAL bytes written by message append #1, #10, ... #10,000 of one agent
//! (constant if an append does not rewrite the conversation).

use std::collections::BTreeMap;
use std::time::Instant;

use agentstate_bench::report::Verdict;
use agentstate_bench::sample;
use agentstate_bench::sidecar_proc::SidecarProcess;
use agentstate_protocol::{Durability, NewMessage, SaveStateRequest, StatePersistence};
use serde_json::json;

use crate::ctx::Ctx;
use crate::targets::{self, Id};

/// Appends at which WAL growth is measured.
const APPEND_POINTS: [u64; 5] = [1, 10, 100, 1000, 10_000];

pub async fn run(ctx: &mut Ctx, s: &SidecarProcess) -> anyhow::Result<()> {
    ctx.report.section("Bytes written per message append");
    let local = s.client();
    let memory = s.client().with_durability(Durability::Memory);
    let agent = format!("appender-{}", ctx.nonce);
    local
        .save_state(
            &agent,
            &SaveStateRequest {
                agent_type: Some("greeter".into()),
                state_name: "greeting".into(),
                state_data: Some(sample::state_data(ctx.args.state_bytes)),
                metadata: None,
            },
            None,
        )
        .await?;
    let message = |n: u64| {
        vec![NewMessage {
            role: if n.is_multiple_of(2) {
                "assistant"
            } else {
                "user"
            }
            .into(),
            content: format!(
                "Message {n}: autumn moonlight, a worm digs silently into the chestnut."
            ),
            metadata: Default::default(),
        }]
    };
    let points: Vec<u64> = APPEND_POINTS
        .iter()
        .copied()
        .filter(|p| *p <= ctx.args.appends)
        .collect();
    let mut grew = BTreeMap::new();
    let started = Instant::now();
    for n in 1..=ctx.args.appends {
        if points.contains(&n) {
            // The previous append was local: everything before it is on disk and counted.
            let before = local.status().await?.wal_bytes;
            local.append_messages(&agent, message(n), None).await?;
            let after = local.status().await?.wal_bytes;
            grew.insert(n, after as i64 - before as i64);
        } else if points.contains(&(n + 1)) {
            local.append_messages(&agent, message(n), None).await?;
        } else {
            memory.append_messages(&agent, message(n), None).await?;
        }
    }
    ctx.report.line(format!(
        "{} appends of one message (~75 B) to one agent in {:.1} s; WAL growth of the \
         append at each point (GET /v1/status wal_bytes before and after):",
        ctx.args.appends,
        started.elapsed().as_secs_f64()
    ));
    ctx.report.line("");
    ctx.report.line("| append # | WAL bytes written |");
    ctx.report.line("|---|---|");
    for (n, b) in &grew {
        ctx.report.line(format!("| {n} | {b} |"));
    }
    ctx.report
        .json
        .insert("append_wal_bytes".into(), json!(grew));
    ctx.report.line("");
    match (grew.get(&10), grew.get(&10_000)) {
        (Some(&a), Some(&b)) if a > 0 => {
            let ratio = b as f64 / a as f64;
            targets::record(
                &mut ctx.report,
                Id::AppendConstant,
                format!("{a} B vs {b} B = {ratio:.3}x"),
                Verdict::of((ratio - 1.0).abs() <= 0.05),
            );
        }
        _ => targets::not_measured(
            &mut ctx.report,
            Id::AppendConstant,
            format!("--appends {} < 10000", ctx.args.appends),
        ),
    }
    Ok(())
}
