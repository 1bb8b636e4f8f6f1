/**
 * Deltas through real LangGraph.js graphs: the saver sends a grown `messages` list as its
 * new items only, and anything else whole, and every state read back is the one
 * LangGraph.js's `MemorySaver` holds for the same operations. Case by case, as the Python
 * saver's tests check it: appends, `RemoveMessage`, a replacement by id, a reordering, an
 * earlier message changed in place, a fork, a second saver on the thread, a `kill -9` of
 * the sidecar, a restarted saver, a refused delta and deltas turned off.
 */
import { AIMessage, type BaseMessage, HumanMessage, RemoveMessage } from "@langchain/core/messages";
import type { RunnableConfig } from "@langchain/core/runnables";
import {
  Annotation,
  END,
  messagesStateReducer,
  REMOVE_ALL_MESSAGES,
  START,
  StateGraph,
} from "@langchain/langgraph";
import { BaseCheckpointSaver, emptyCheckpoint, MemorySaver } from "@langchain/langgraph-checkpoint";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { AgentstateSaver } from "../src/langgraph.js";
import { Sidecar } from "./procs.js";
import { record } from "./record.js";

const State = Annotation.Root({
  messages: Annotation<BaseMessage[]>({ reducer: messagesStateReducer, default: () => [] }),
  cmd: Annotation<string>({ reducer: (_, b) => b, default: () => "" }),
});
type S = typeof State.State;

function reply(s: S) {
  if (s.cmd === "mutate" && s.messages[0]) {
    // In place, on an earlier message: the anti-pattern the saver must still see.
    s.messages[0].content = `${s.messages[0].content}!`;
  }
  return { messages: [new AIMessage(`re ${s.messages.length}`)], cmd: "" };
}

function graph(saver: BaseCheckpointSaver) {
  return new StateGraph(State)
    .addNode("reply", reply)
    .addEdge(START, "reply")
    .addEdge("reply", END)
    .compile({ checkpointer: saver });
}
type Graph = ReturnType<typeof graph>;

/** The whole history of a thread as values (ids differ between savers). */
async function view(g: Graph, config: RunnableConfig) {
  const out = [];
  for await (const s of g.getStateHistory(config)) {
    const v = s.values as Partial<S>;
    out.push([
      (v.messages ?? []).map((m) => [m.getType(), m.content]),
      v.cmd,
      s.next,
      s.metadata?.step,
      s.metadata?.source,
    ]);
  }
  return out;
}

let n = 0;
const thread = () => ({ configurable: { thread_id: `d-${process.pid}-${n++}` } });

const say =
  (text: string, cmd = "") =>
  (g: Graph, c: RunnableConfig) =>
    g.invoke({ messages: [new HumanMessage(text)], cmd }, { ...c, durability: "sync" });

const update =
  (make: (messages: BaseMessage[]) => BaseMessage[]) => async (g: Graph, c: RunnableConfig) => {
    const state = await g.getState(c);
    await g.updateState(c, { messages: make((state.values as S).messages) });
  };

describe("deltas on a StateGraph", () => {
  let sidecar: Sidecar;
  const savers: AgentstateSaver[] = [];
  const saver = () => {
    const s = new AgentstateSaver({ url: sidecar.url });
    savers.push(s);
    return s;
  };

  beforeAll(async () => {
    sidecar = await Sidecar.start();
  });

  afterAll(async () => {
    for (const s of savers) await s.close();
    await sidecar?.kill9();
  });

  it("sends appends as deltas and every other change whole, with MemorySaver's states", async () => {
    const first = saver();
    const kinds = record(first);
    const [g, ref] = [graph(first), graph(new MemorySaver())];
    const [cfg, rcfg] = [thread(), thread()];
    const both = async (op: (g: Graph, c: RunnableConfig) => Promise<unknown>) => {
      const mark = kinds.length;
      await op(g, cfg);
      await op(ref, rcfg);
      expect(await view(g, cfg)).toEqual(await view(ref, rcfg));
      return kinds.slice(mark);
    };

    // The first put with messages is whole; then appends are deltas (input, reply). A
    // long first message keeps the deltas below the size that starts a new whole value.
    expect(await both(say("a".repeat(20_000)))).toEqual(["whole", "delta"]);
    expect(await both(say("b"))).toEqual(["delta", "delta"]);
    // RemoveMessage, replacement by id, reordering: whole.
    expect(await both(update((m) => [new RemoveMessage({ id: m[1]?.id ?? "" })]))).toEqual([
      "whole",
    ]);
    expect(await both(update((m) => [new AIMessage({ content: "new", id: m[0]?.id })]))).toEqual([
      "whole",
    ]);
    const reorder = update((m) => [
      new RemoveMessage({ id: REMOVE_ALL_MESSAGES }),
      ...[...m].reverse(),
    ]);
    expect(await both(reorder)).toEqual(["whole"]);
    expect(await both(say("c"))).toEqual(["delta", "delta"]);
    // An earlier message changed in place by a node: the reply's put is whole.
    expect(await both(say("d", "mutate"))).toEqual(["delta", "whole"]);

    // A fork from an older checkpoint: whole; then deltas on the fork.
    const history = async (gr: Graph, c: RunnableConfig) => {
      const out = [];
      for await (const s of gr.getStateHistory(c)) out.push(s);
      return out;
    };
    const old = (await history(g, cfg))[4];
    const rold = (await history(ref, rcfg))[4];
    const mark = kinds.length;
    await say("fork")(g, old?.config ?? cfg);
    await say("fork")(ref, rold?.config ?? rcfg);
    expect(await view(g, cfg)).toEqual(await view(ref, rcfg));
    expect(kinds.slice(mark)).toEqual(["whole", "delta"]);
    expect(await both(say("e"))).toEqual(["delta", "delta"]);

    // A second saver writes the thread: both it (no memory) and the first (its parent
    // is not what it stored last) send whole values, then deltas again.
    const other = saver();
    const otherKinds = record(other);
    await say("from other")(graph(other), cfg);
    await say("from other")(ref, rcfg);
    expect(otherKinds).toEqual(["whole", "delta"]);
    expect(await both(say("f"))).toEqual(["whole", "delta"]);

    // The sidecar killed mid-thread: what was acknowledged holds, deltas go on.
    await sidecar.kill9();
    await sidecar.spawn();
    expect(await both(say("g"))).toEqual(["delta", "delta"]);

    // A restarted saver remembers nothing: whole first.
    const fresh = saver();
    const freshKinds = record(fresh);
    await say("h")(graph(fresh), cfg);
    await say("h")(ref, rcfg);
    expect(await view(g, cfg)).toEqual(await view(ref, rcfg));
    expect(freshKinds).toEqual(["whole", "delta"]);
  });

  it("sends a refused delta whole: the thread was deleted under the saver", async () => {
    const s = saver();
    const kinds = record(s);
    let config: RunnableConfig = thread();
    const items: BaseMessage[] = [new HumanMessage({ content: "x".repeat(1000), id: "0" })];
    let version: number | undefined;
    for (let i = 1; i <= 3; i++) {
      items.push(new HumanMessage({ content: String(i), id: String(i) }));
      if (i === 3) await saver().deleteThread(String(config.configurable?.thread_id));
      const checkpoint = emptyCheckpoint();
      version = s.getNextVersion(version);
      checkpoint.channel_values = { messages: [...items] };
      checkpoint.channel_versions = { messages: version };
      config = await s.put(
        config,
        checkpoint,
        { source: "loop", step: i, parents: {} },
        {
          messages: version,
        },
      );
    }
    expect(kinds).toEqual(["whole", "delta", "delta", "whole"]);
    const got = await s.getTuple(config);
    const messages = got?.checkpoint.channel_values.messages as BaseMessage[];
    expect(messages.map((m) => m.content)).toEqual(["x".repeat(1000), "1", "2", "3"]);
    expect(messages[0]).toBeInstanceOf(HumanMessage);
  });

  it("answers the delta channel history in one call, as LangGraph.js's parent walk does", async () => {
    const s = saver();
    const [g, cfg] = [graph(s), thread()];
    for (const text of ["a", "b", "c"]) await say(text)(g, cfg);
    await update((m) => [new RemoveMessage({ id: m[0]?.id ?? "" })])(g, cfg);
    await say("d")(g, cfg);
    const channels = ["messages", "cmd", "never"];
    let [compared, writes, seeds] = [0, 0, 0];
    for await (const state of g.getStateHistory(cfg)) {
      const options = { config: state.config, channels };
      const walked = await BaseCheckpointSaver.prototype.getDeltaChannelHistory.call(s, options);
      expect(await s.getDeltaChannelHistory(options)).toEqual(walked);
      compared++;
      writes += walked.messages?.writes.length ?? 0;
      seeds += walked.messages && "seed" in walked.messages ? 1 : 0;
    }
    expect([compared > 8, writes > 0, seeds > 0]).toEqual([true, true, true]);
    const none = { configurable: { thread_id: "no-such-thread" } };
    expect(await s.getDeltaChannelHistory({ config: none, channels })).toEqual({
      messages: { writes: [] },
      cmd: { writes: [] },
      never: { writes: [] },
    });
  });

  it("sends whole values with deltas off", async () => {
    const s = new AgentstateSaver({ url: sidecar.url, deltas: false });
    savers.push(s);
    const kinds = record(s);
    const [g, cfg] = [graph(s), thread()];
    for (const text of ["a", "b", "c"]) await say(text)(g, cfg);
    expect(new Set(kinds)).toEqual(new Set(["whole"]));
    expect(((await g.getState(cfg)).values as S).messages).toHaveLength(6);
  });
});
