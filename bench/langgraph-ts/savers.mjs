// LangGraph.js checkpointers side by side, in one run on one machine: AgentstateSaver
// (the sidecar on its embedded store, and on MongoDB: SecantusDB from .venv-test, or
// MONGODB_URI) against LangGraph.js's MemorySaver and SqliteSaver (a file, its default
// settings). The workloads are bench/langgraph's:
// - one thread, 200 steps of a growing conversation: per step `put` (the message list as
//   the `messages` channel: two more messages each step, which AgentstateSaver sends as a
//   delta), `putWrites` (one message), `getTuple` (latest); p50 and p99 of each;
// - 32 threads at once, `put` + `putWrites` per step (50 steps each): steps per second;
// - a two-node StateGraph (MessagesAnnotation), `invoke` 100 times on one thread: mean ms.
// Results: bench/results/langgraph-ts.{md,json}.
import { spawn, spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { AIMessage, HumanMessage } from "@langchain/core/messages";
import { END, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import { emptyCheckpoint, MemorySaver, uuid6 } from "@langchain/langgraph-checkpoint";
import { SqliteSaver } from "@langchain/langgraph-checkpoint-sqlite";
import { Client } from "agentstate-client";
import { AgentstateSaver } from "agentstate-client/langgraph";

const ROOT = resolve(import.meta.dirname, "../..");
const STEPS = 200;
const THREADS = 32;
const STEPS_PER_THREAD = 50;
const INVOKES = 100;
const TEXT = "lorem ipsum dolor sit amet ".repeat(8); // ~220 bytes per message

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = [];
process.on("exit", () => children.forEach((c) => c.kill("SIGKILL")));

async function freePort() {
  return new Promise((ok) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

function binary() {
  for (const p of ["release", "debug"]) {
    const b = join(ROOT, "target", p, "agentstate");
    if (existsSync(b)) return b;
  }
  throw new Error("no agentstate binary: cargo build --release -p agentstate");
}

async function sidecar(args) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "agentstate-bench-ts-"));
  const child = spawn(binary(), ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", dir, ...args], {
    stdio: ["ignore", "ignore", openSync(`${dir}.log`, "a")],
  });
  children.push(child);
  const url = `http://127.0.0.1:${port}`;
  const c = new Client({ url, maxRetries: 0 });
  for (let i = 0; !(await c.ready()); i++) {
    if (i > 1500) throw new Error(`sidecar not ready: ${readFileSync(`${dir}.log`, "utf8")}`);
    await sleep(20);
  }
  await c.close();
  return url;
}

async function mongoUri() {
  if (process.env.MONGODB_URI) return { uri: process.env.MONGODB_URI, what: "MONGODB_URI" };
  const bin = join(ROOT, ".venv-test", "bin", "secantusd-py");
  if (!existsSync(bin)) throw new Error("no SecantusDB: run the Rust tests once (they install .venv-test)");
  const port = await freePort();
  const storage = mkdtempSync(join(tmpdir(), "agentstate-bench-ts-secantus-"));
  const child = spawn(bin, ["--host", "127.0.0.1", "--port", String(port), "--storage-path", storage, "--log-level", "WARNING", "--sync-on-commit"], { stdio: "ignore" });
  children.push(child);
  const { connect } = await import("node:net");
  for (let i = 0; ; i++) {
    const up = await new Promise((ok) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => (s.destroy(), ok(true)));
      s.once("error", () => ok(false));
    });
    if (up) break;
    if (i > 1200) throw new Error("SecantusDB did not listen");
    await sleep(50);
  }
  const version = readFileSync(join(ROOT, "tests/secantusdb.txt"), "utf8").match(/SecantusDB==(\S+)/)?.[1];
  return { uri: `mongodb://127.0.0.1:${port}/?directConnection=true`, what: `SecantusDB ${version} (--sync-on-commit)` };
}

const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};

function stepCheckpoint(prev, saver, messages, step) {
  const version = saver.getNextVersion(prev.channel_versions.messages);
  const ckpt = emptyCheckpoint();
  ckpt.id = uuid6(step);
  ckpt.channel_values = { messages: [...messages] };
  ckpt.channel_versions = { messages: version };
  ckpt.versions_seen = { chat: { messages: version } };
  return [ckpt, { messages: version }];
}

async function conversation(saver) {
  const times = { put: [], putWrites: [], getTuple: [] };
  const thread = `t-${randomUUID()}`;
  const messages = [];
  let prev = emptyCheckpoint();
  let config = { configurable: { thread_id: thread, checkpoint_ns: "" } };
  for (let step = 0; step < STEPS; step++) {
    messages.push(new HumanMessage(`${step}: ${TEXT}`), new AIMessage(`${step}: ${TEXT}`));
    const [ckpt, nv] = stepCheckpoint(prev, saver, messages, step);
    const t0 = performance.now();
    config = await saver.put(config, ckpt, { source: "loop", step, parents: {} }, nv);
    const t1 = performance.now();
    await saver.putWrites(config, [["messages", [new AIMessage(`w${step}: ${TEXT}`)]]], randomUUID());
    const t2 = performance.now();
    const got = await saver.getTuple({ configurable: { thread_id: thread, checkpoint_ns: "" } });
    const t3 = performance.now();
    if (got?.checkpoint.id !== ckpt.id) throw new Error("read back another checkpoint");
    times.put.push(t1 - t0);
    times.putWrites.push(t2 - t1);
    times.getTuple.push(t3 - t2);
    prev = ckpt;
  }
  return Object.fromEntries(Object.entries(times).map(([k, v]) => [k, { p50_ms: pct(v, 50), p99_ms: pct(v, 99) }]));
}

async function concurrent(saver) {
  const one = async (i) => {
    const thread = `c-${randomUUID().slice(0, 8)}-${i}`;
    const messages = [];
    let prev = emptyCheckpoint();
    let config = { configurable: { thread_id: thread, checkpoint_ns: "" } };
    for (let step = 0; step < STEPS_PER_THREAD; step++) {
      messages.push(new HumanMessage(`${step}: ${TEXT}`));
      const [ckpt, nv] = stepCheckpoint(prev, saver, messages, step);
      config = await saver.put(config, ckpt, { source: "loop", step, parents: {} }, nv);
      await saver.putWrites(config, [["messages", [new AIMessage(TEXT)]]], randomUUID());
      prev = ckpt;
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: THREADS }, (_, i) => one(i)));
  return (THREADS * STEPS_PER_THREAD) / ((performance.now() - t0) / 1000);
}

async function invokes(saver) {
  const graph = new StateGraph(MessagesAnnotation)
    .addNode("a", () => ({ messages: [new AIMessage("from a")] }))
    .addNode("b", () => ({ messages: [new AIMessage("from b")] }))
    .addEdge(START, "a")
    .addEdge("a", "b")
    .addEdge("b", END)
    .compile({ checkpointer: saver });
  const config = { configurable: { thread_id: `g-${randomUUID().slice(0, 8)}` } };
  await graph.invoke({ messages: [new HumanMessage("warm up")] }, config);
  const t0 = performance.now();
  for (let i = 0; i < INVOKES; i++) await graph.invoke({ messages: [new HumanMessage(`hi ${i}`)] }, config);
  return (performance.now() - t0) / INVOKES;
}

const mongo = await mongoUri();
const savers = [
  ["MemorySaver", async () => new MemorySaver()],
  ["SqliteSaver (file)", async () => SqliteSaver.fromConnString(join(mkdtempSync(join(tmpdir(), "bench-sqlite-")), "cp.db"))],
  ["AgentstateSaver (embedded)", async () => new AgentstateSaver({ url: await sidecar([]) })],
  ["AgentstateSaver (MongoDB)", async () => new AgentstateSaver({ url: await sidecar(["--mongodb-uri", mongo.uri, "--database", `bench_ts_${Date.now()}`]) })],
];
const results = [];
for (const [name, make] of savers) {
  const saver = await make();
  const row = { saver: name, conversation: await conversation(saver), concurrent_steps_per_s: await concurrent(saver), invoke_mean_ms: await invokes(saver) };
  results.push(row);
  console.error(JSON.stringify(row));
  await saver.close?.();
}

const commit = spawnSync("git", ["rev-parse", "--short", "HEAD"], { cwd: ROOT, encoding: "utf8" }).stdout.trim();
const machine = `${cpus().length} x ${cpus()[0]?.model ?? "?"}, Node ${process.version}`;
const f = (x) => x.toFixed(x < 10 ? 2 : 0);
const lines = [
  `# LangGraph.js checkpointers, side by side`,
  ``,
  `Commit \`${commit}\`, ${new Date().toISOString().slice(0, 10)}, ${machine}, binary ${binary().replace(`${ROOT}/`, "")}; MongoDB: ${mongo.what}.`,
  `Command: \`bash bench/langgraph-ts/run.sh\`.`,
  ``,
  `| saver | put p50 / p99 ms | putWrites p50 / p99 ms | getTuple p50 / p99 ms | 32 threads: steps/s | StateGraph invoke: mean ms |`,
  `|---|---|---|---|---|---|`,
  ...results.map((r) => {
    const c = r.conversation;
    return `| ${r.saver} | ${f(c.put.p50_ms)} / ${f(c.put.p99_ms)} | ${f(c.putWrites.p50_ms)} / ${f(c.putWrites.p99_ms)} | ${f(c.getTuple.p50_ms)} / ${f(c.getTuple.p99_ms)} | ${f(r.concurrent_steps_per_s)} | ${f(r.invoke_mean_ms)} |`;
  }),
  ``,
];
mkdirSync(join(ROOT, "bench/results"), { recursive: true });
writeFileSync(join(ROOT, "bench/results/langgraph-ts.md"), lines.join("\n"));
writeFileSync(join(ROOT, "bench/results/langgraph-ts.json"), `${JSON.stringify({ commit, machine, mongo: mongo.what, results }, null, 2)}\n`);
console.log(lines.join("\n"));
process.exit(0);
