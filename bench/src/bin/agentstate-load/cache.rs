//! `cache`: reads of flushed (cache-resident) agents against Redis GETs of the same bytes
//! at the same concurrency, timed by the same harness.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agentstate_bench::redis_server::{self, RedisServer};
use agentstate_bench::report::{us, Verdict};
use agentstate_bench::sample;
use agentstate_bench::stats::{Recorder, Summary};
use agentstate_bench::workload;
use agentstate_bench::wrk;
use agentstate_protocol::{Client, Codec, PersistedState, StatePersistence};
use anyhow::Context;
use redis::AsyncCommands;
use serde_json::json;

use crate::ctx::{drain, print_errors, summaries_json, Ctx};
use crate::targets::{self, Id};

/// Agents the cache phase reads (all flushed, so all cache hits).
const CACHE_AGENTS: usize = 1000;

/// One client of Redis GETs over `keys` until `deadline`; with `decode`, each value is
/// also decoded into a `PersistedState`, as the sidecar's client does with its answer.
async fn redis_client(
    addr: std::net::SocketAddr,
    i: usize,
    deadline: Instant,
    keys: Vec<String>,
    decode: bool,
) -> Recorder {
    let mut rec = Recorder::default();
    let mut conn = match redis_server::connect(addr).await {
        Ok(c) => c,
        Err(e) => {
            rec.error("redis get", e);
            return rec;
        }
    };
    let mut k = i;
    while Instant::now() < deadline {
        let key = &keys[k % keys.len()];
        let get = async {
            // An absent key is an error: the yardstick only reads keys it wrote.
            let bytes: Option<Vec<u8>> = conn.get(key).await?;
            let bytes = bytes.with_context(|| format!("no key {key}"))?;
            if decode {
                Codec::MsgPack.decode::<PersistedState>(&bytes)?;
            }
            anyhow::Ok(())
        };
        if rec.time("get", get).await.is_none() {
            return rec;
        }
        k += 1;
    }
    rec
}

pub async fn run(ctx: &mut Ctx, url: &str) -> anyhow::Result<()> {
    ctx.report.section("Cache-hit reads vs Redis GET");
    let client = Client::new(url).with_timeout(Duration::from_secs(30));
    let req = sample::save_request(ctx.args.state_bytes);
    let ids: Vec<String> = (0..CACHE_AGENTS)
        .map(|i| format!("cache-{}-{i}", ctx.nonce))
        .collect();
    for id in &ids {
        client
            .save_state(id, &req, None)
            .await
            .context("create the cache phase's agents")?;
    }
    drain(&client).await?;
    let body = client
        .load_state(&ids[0])
        .await?
        .map(|s| Codec::MsgPack.encode(&s))
        .transpose()?
        .context("a cached agent is missing")?;
    let redis = RedisServer::start();
    let redis_why = redis.as_ref().err().cloned();
    if let Ok(r) = &redis {
        let mut conn = redis_server::connect(r.addr)
            .await
            .context("connect to Redis")?;
        let mut sets = redis::pipe();
        for id in &ids {
            sets.set(id, &body).ignore();
        }
        sets.query_async::<()>(&mut conn)
            .await
            .context("Redis SET")?;
    }
    ctx.report.line(format!(
        "{} agents, flushed first so every read is a cache hit; GET /v1/agents/{{id}} as \
         MessagePack ({} B), decoded by the client. Redis: GET of the same bytes, same \
         harness (tokio, one connection per client, the redis crate); the same plus decoding them into a \
         PersistedState (half as long a run). And the target's yardsticks, C load generators \
         with two threads each: wrk (GET of one cached agent, MessagePack) against \
         redis-benchmark --threads 2 (GET of a value of the same size). The targets use \
         the yardsticks when both are installed, else the same harness. The ratio is \
         sidecar p50 / Redis GET p50, same harness.",
        CACHE_AGENTS,
        body.len()
    ));
    ctx.report.line("");
    ctx.report.line(
        "| clients | sidecar GET/s | sidecar p50 | sidecar p99 | Redis GET/s | Redis p50 | \
         Redis p99 | Redis GET + decode p50 | p50 ratio | wrk GET/s | wrk p50 | \
         redis-benchmark GET/s | redis-benchmark p50 |",
    );
    ctx.report
        .line("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let one_agent = format!("{}/v1/agents/{}", url.trim_end_matches('/'), ids[0]);
    let duration = ctx.duration();
    let mut json_rows = Vec::new();
    // Per concurrency: (sidecar p50, Redis p50, sidecar GET/s, Redis GET/s), from the
    // yardsticks when both ran, else from the same harness.
    let mut pairs = BTreeMap::new();
    let mut yardstick = "same harness";
    for &c in &ctx.args.concurrency.clone() {
        let r = workload::run_clients(c, duration, |i, deadline| {
            workload::load_client(client.clone(), i, deadline, ids.clone())
        })
        .await;
        print_errors(&mut ctx.report, "sidecar GET", &r.rec);
        let s = Summary::of(&r.rec.combined());
        ctx.report
            .throughput
            .entry("sidecar: cache-hit GET")
            .or_default()
            .push((c as f64, r.ops_per_sec()));
        let (redis_r, bench) = match &redis {
            Ok(server) => {
                let addr = server.addr;
                let rr = workload::run_clients(c, duration, |i, deadline| {
                    redis_client(addr, i, deadline, ids.clone(), false)
                })
                .await;
                print_errors(&mut ctx.report, "Redis GET", &rr.rec);
                let rd = workload::run_clients(c, duration / 2, |i, deadline| {
                    redis_client(addr, i, deadline, ids.clone(), true)
                })
                .await;
                print_errors(&mut ctx.report, "Redis GET + decode", &rd.rec);
                let decoded = Summary::of(&rd.rec.combined());
                (Some((rr, decoded)), server.benchmark_get(c, body.len()))
            }
            Err(_) => (None, Err("no Redis".to_string())),
        };
        let wrk_run = wrk::get(&one_agent, c, duration, &["Accept: application/msgpack"]);
        let decoded = redis_r.as_ref().map(|r| r.1);
        let redis_r = redis_r.map(|r| r.0);
        let rs = redis_r.as_ref().map(|rr| Summary::of(&rr.rec.combined()));
        if let Some(rr) = &redis_r {
            ctx.report
                .throughput
                .entry("Redis GET (same harness)")
                .or_default()
                .push((c as f64, rr.ops_per_sec()));
        }
        let ratio = rs.map(|rs| s.p50_us / rs.p50_us);
        ctx.report.line(format!(
            "| {c} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.ops_per_sec(),
            us(s.p50_us),
            us(s.p99_us),
            redis_r
                .as_ref()
                .map_or("-".into(), |rr| format!("{:.0}", rr.ops_per_sec())),
            rs.map_or("-".into(), |rs| us(rs.p50_us)),
            rs.map_or("-".into(), |rs| us(rs.p99_us)),
            decoded.map_or("-".into(), |d| us(d.p50_us)),
            ratio.map_or("-".into(), |x| format!("{x:.2}x")),
            wrk_run
                .as_ref()
                .map_or_else(|e| e.clone(), |w| format!("{:.0}", w.requests_per_sec)),
            wrk_run.as_ref().map_or("-".into(), |w| us(w.p50_us)),
            bench
                .as_ref()
                .map_or_else(|e| e.clone(), |b| format!("{:.0}", b.1)),
            bench.as_ref().map_or("-".into(), |b| us(b.0)),
        ));
        match (&wrk_run, &bench, rs, &redis_r) {
            (Ok(w), Ok((p50, rps)), _, _) => {
                yardstick = "wrk vs redis-benchmark --threads 2";
                pairs.insert(c, (w.p50_us, *p50, w.requests_per_sec, *rps));
            }
            (_, _, Some(rs), Some(rr)) => {
                pairs.insert(c, (s.p50_us, rs.p50_us, r.ops_per_sec(), rr.ops_per_sec()));
            }
            _ => {}
        }
        json_rows.push(json!({
            "clients": c, "sidecar": summaries_json(&r),
            "redis": redis_r.as_ref().map(summaries_json),
            "redis_benchmark_p50_us": bench.as_ref().ok().map(|b| b.0),
            "redis_benchmark_rps": bench.as_ref().ok().map(|b| b.1),
            "wrk_p50_us": wrk_run.as_ref().ok().map(|w| w.p50_us),
            "wrk_rps": wrk_run.as_ref().ok().map(|w| w.requests_per_sec),
            "redis_get_decode_p50_us": decoded.map(|d| d.p50_us),
        }));
    }
    ctx.report.json.insert(
        "cache".into(),
        json!({"body_bytes": body.len(), "redis": redis_why.clone().unwrap_or("ok".into()),
               "runs": json_rows}),
    );
    ctx.report.line("");
    let sizes = [("--state-bytes", ctx.args.state_bytes, targets::STATE_BYTES)];
    let missing = |c: usize| match &redis_why {
        Some(why) => format!("no Redis: {why}"),
        None => format!("--concurrency has no {c}"),
    };
    match pairs.get(&1) {
        Some(&(s, r, _, _)) => targets::record_sized(
            &mut ctx.report,
            Id::CacheGetP50,
            format!(
                "{} vs {} = {:.2}x ({} B bodies; {yardstick})",
                us(s),
                us(r),
                s / r,
                body.len()
            ),
            Verdict::of(s / r <= 1.2),
            &sizes,
        ),
        None => targets::not_measured(&mut ctx.report, Id::CacheGetP50, missing(1)),
    }
    match pairs.get(&64) {
        Some(&(_, _, s, r)) => targets::record_sized(
            &mut ctx.report,
            Id::CacheGetRate,
            format!("{s:.0}/s vs {r:.0}/s = {:.2}x ({yardstick})", s / r),
            Verdict::of(s >= r),
            &sizes,
        ),
        None => targets::not_measured(&mut ctx.report, Id::CacheGetRate, missing(64)),
    }
    Ok(())
}
