/**
 * A LangGraph.js `StateGraph` on `AgentstateSaver`, through a `kill -9` of the sidecar
 * between steps: it resumes with its whole history, and forks from an old checkpoint.
 */
import { Annotation, END, START, StateGraph } from "@langchain/langgraph";
import { describe, expect, it } from "vitest";

import type { AgentstateSaver } from "../src/langgraph.js";
import { sidecarAndSaver } from "./fixture.js";

const State = Annotation.Root({
  log: Annotation<string[]>({ reducer: (a, b) => a.concat(b), default: () => [] }),
});

function compile(saver: AgentstateSaver) {
  return new StateGraph(State)
    .addNode("step", (s: typeof State.State) => ({ log: [`step after ${s.log.at(-1)}`] }))
    .addEdge(START, "step")
    .addEdge("step", END)
    .compile({ checkpointer: saver });
}

describe.each(["sqlite", "mongo"] as const)("a StateGraph on %s", (backend) => {
  const held = sidecarAndSaver(backend);

  it("survives a kill -9 between steps, keeps its history and forks from an old checkpoint", async () => {
    const { sidecar, saver } = held;
    const app = compile(saver);
    const config = { configurable: { thread_id: `graph-${backend}` } };
    await app.invoke({ log: ["hello"] }, config);
    const afterFirst = await app.getState(config);
    expect(afterFirst.values.log).toEqual(["hello", "step after hello"]);

    await sidecar.kill9();
    await sidecar.spawn();

    const resumed = await app.invoke({ log: ["again"] }, config);
    expect(resumed.log).toEqual(["hello", "step after hello", "again", "step after again"]);
    const history = [];
    for await (const s of app.getStateHistory(config)) history.push(s);
    // Two runs of input + step, each with its starting checkpoint: newest first.
    expect(history.length).toBeGreaterThanOrEqual(5);
    expect(history[0]?.values.log).toEqual(resumed.log);
    expect(history.at(-1)?.values.log ?? []).toEqual([]);

    // Fork from the checkpoint after the first run: the second run is not in the fork.
    const forked = await app.invoke({ log: ["fork"] }, afterFirst.config);
    expect(forked.log).toEqual(["hello", "step after hello", "fork", "step after fork"]);
    const latest = await app.getState(config);
    expect(latest.values.log).toEqual(forked.log);
    expect(latest.parentConfig?.configurable?.checkpoint_id).toBeDefined();
  });
});
