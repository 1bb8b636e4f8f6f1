/**
 * Threads cross between the Python saver and this one: a LangGraph Python graph writes a
 * thread (its values in Python's MessagePack, the second step as a delta), a LangGraph.js
 * graph reads and continues it, and Python reads the result back; a thread LangGraph.js
 * starts (its values in the same MessagePack, grown by deltas) reads back and goes on in
 * Python. On both backends. Needs `.venv-py` (made by
 * clients/python/setup-venv.sh, which run-tests.sh calls).
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";

import { AIMessage, type BaseMessage, HumanMessage } from "@langchain/core/messages";
import { END, MessagesAnnotation, START, StateGraph } from "@langchain/langgraph";
import { describe, expect, it } from "vitest";

import { AgentstateSaver } from "../src/langgraph.js";
import { sidecarAndSaver } from "./fixture.js";
import { ROOT } from "./procs.js";
import { record } from "./record.js";

const PYTHON = join(ROOT, ".venv-py", "bin", "python");

const SCRIPT = `
import json, sys
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from agentstate_client.langgraph import AgentstateSaver

mode, url, thread = sys.argv[1:4]
config = {"configurable": {"thread_id": thread}}
with AgentstateSaver(url) as saver:
    if mode == "write":
        graph = StateGraph(MessagesState)
        graph.add_node("echo", lambda s: {"messages": [AIMessage(content="python echo: " + s["messages"][-1].content)]})
        graph.add_edge(START, "echo")
        graph.add_edge("echo", END)
        app = graph.compile(checkpointer=saver)
        for text in sys.argv[4:]:
            app.invoke({"messages": [HumanMessage(content=text)]}, config)
    t = saver.get_tuple(config)
    print(json.dumps([[m.type, m.content] for m in t.checkpoint["channel_values"]["messages"]]))
`;

function python(...args: string[]): [string, string][] {
  if (!existsSync(PYTHON)) {
    throw new Error(`${PYTHON} is missing: run clients/python/setup-venv.sh first`);
  }
  const run = spawnSync(PYTHON, ["-c", SCRIPT, ...args], { encoding: "utf8", timeout: 120_000 });
  if (run.status !== 0) throw new Error(`python failed (${run.status}): ${run.stderr}`);
  return JSON.parse(run.stdout.trim().split("\n").at(-1) ?? "[]");
}

function echoGraph(saver: AgentstateSaver) {
  return new StateGraph(MessagesAnnotation)
    .addNode("echo", (s: typeof MessagesAnnotation.State) => ({
      messages: [new AIMessage(`typescript echo: ${s.messages.at(-1)?.content}`)],
    }))
    .addEdge(START, "echo")
    .addEdge("echo", END)
    .compile({ checkpointer: saver });
}

const shapes = (messages: BaseMessage[]) => messages.map((m) => [m.getType(), m.content]);

describe.each(["sqlite", "mongo"] as const)(
  "threads across Python and TypeScript on %s",
  (backend) => {
    const held = sidecarAndSaver(backend);

    it("a Python thread reads back and goes on in TypeScript, and Python reads the result", async () => {
      const { sidecar, saver } = held;
      const written = python("write", sidecar.url, "py-thread", "hello", "again");
      expect(written).toEqual([
        ["human", "hello"],
        ["ai", "python echo: hello"],
        ["human", "again"],
        ["ai", "python echo: again"],
      ]);
      const config = { configurable: { thread_id: "py-thread" } };
      const read = await saver.getTuple(config);
      const messages = read?.checkpoint.channel_values.messages as BaseMessage[];
      expect(messages[0]).toBeInstanceOf(HumanMessage);
      expect(messages[1]).toBeInstanceOf(AIMessage);
      expect(shapes(messages)).toEqual(written);

      const app = echoGraph(saver);
      const state = await app.invoke({ messages: [new HumanMessage("from typescript")] }, config);
      expect(shapes(state.messages)).toEqual([
        ...written,
        ["human", "from typescript"],
        ["ai", "typescript echo: from typescript"],
      ]);
      expect(python("read", sidecar.url, "py-thread")).toEqual(shapes(state.messages));
    });

    it("a TypeScript thread, its growth sent as deltas, reads back and goes on in Python", async () => {
      const { sidecar, saver } = held;
      const own = new AgentstateSaver({ url: sidecar.url });
      const kinds = record(own);
      const app = echoGraph(own);
      const config = { configurable: { thread_id: "ts-thread" } };
      await app.invoke({ messages: [new HumanMessage("hi".repeat(100))] }, config);
      const state = await app.invoke({ messages: [new HumanMessage("and more")] }, config);
      await own.close();
      expect(kinds).toEqual(["whole", "delta", "delta", "delta"]);
      expect(python("read", sidecar.url, "ts-thread")).toEqual(shapes(state.messages));
      const written = python("write", sidecar.url, "ts-thread", "from python");
      expect(written).toEqual([
        ...shapes(state.messages),
        ["human", "from python"],
        ["ai", "python echo: from python"],
      ]);
      const read = await saver.getTuple(config);
      expect(shapes(read?.checkpoint.channel_values.messages as BaseMessage[])).toEqual(written);
    });
  },
);
