/**
 * The default serializer's MessagePack lists read back exactly as its JSON does (the
 * saver may store a list either way), and a list with anything that would not is left to
 * JSON.
 */
import {
  AIMessage,
  AIMessageChunk,
  HumanMessage,
  RemoveMessage,
  SystemMessage,
  ToolMessage,
} from "@langchain/core/messages";
import { JsonPlusSerializer } from "@langchain/langgraph-checkpoint";
import { ExtData, encode } from "@msgpack/msgpack";
import { describe, expect, it } from "vitest";

import { InteropSerializer } from "../src/serde.js";

const serde = new InteropSerializer();

async function bothWays(list: unknown[]) {
  const packed = serde.dumpsList(list);
  if (packed === undefined) throw new Error("no MessagePack form");
  const [type, data] = packed;
  expect(type).toBe("msgpack");
  const json = await serde.dumpsTyped(list);
  return [await serde.loadsTyped(type, data), await serde.loadsTyped(...json)];
}

describe("InteropSerializer lists", () => {
  it("read back from MessagePack as from JSON", async () => {
    const lists: unknown[][] = [
      [],
      [1, -0, 2.5, -7, 2 ** 53 + 2, 1e300, "text", "é 𝄞 日本", true, false, null],
      [{ a: 1, nested: { b: [1, "x", null], c: {} } }, [[], [[1]]], { "": "empty key" }],
      // Looks like LangChain's serialized objects: revived alike.
      [
        { lc: 2, type: "constructor", id: ["Set"], args: [[1, 2]] },
        { lc: 2, type: "other" },
      ],
      [
        new HumanMessage({ content: "hi", id: "h1", name: "ann" }),
        new AIMessage({
          content: [{ type: "text", text: "calling" }],
          id: "a1",
          tool_calls: [{ name: "f", args: { x: [1, 2] }, id: "t1", type: "tool_call" }],
          usage_metadata: { input_tokens: 3, output_tokens: 4, total_tokens: 7 },
          response_metadata: { model: "m" },
        }),
        new ToolMessage({ content: "42", tool_call_id: "t1", id: "t", status: "success" }),
        new SystemMessage({ content: "be brief", id: "s" }),
        new AIMessageChunk({ content: "part", id: "c" }),
        new RemoveMessage({ id: "h1" }),
      ],
      // Functions are left out by JSON, and here.
      [{ keep: 1, fn: () => 1 }],
    ];
    for (const list of lists) {
      const [fromMsgpack, fromJson] = await bothWays(list);
      // A message's arguments left undefined (AIMessageChunk's usage_metadata) are not
      // sent: the messages are equal, their constructor arguments hold one key less.
      const strict = !list.some((v) => v instanceof AIMessageChunk);
      if (strict) expect(fromMsgpack).toStrictEqual(fromJson);
      else expect(fromMsgpack).toEqual(fromJson);
    }
    const [messages] = await bothWays([new AIMessage({ content: "x", id: "1" })]);
    expect((messages as unknown[])[0]).toBeInstanceOf(AIMessage);
  });

  it("read Python's messages as LangChain.js's reviver builds them", async () => {
    // As LangGraph Python packs them: (module, class, model_dump(), method).
    const python = [
      [
        "human",
        "HumanMessage",
        {
          content: "hi",
          type: "human",
          id: "1",
          name: null,
          example: false,
          additional_kwargs: {},
          response_metadata: {},
        },
      ],
      [
        "ai",
        "AIMessage",
        {
          content: "",
          type: "ai",
          id: "2",
          name: null,
          tool_calls: [{ name: "f", args: { a: 1 }, id: "t", type: "tool_call" }],
          invalid_tool_calls: [],
          usage_metadata: null,
          additional_kwargs: {},
          response_metadata: { finish_reason: "stop" },
          some_extra: 1,
        },
      ],
      [
        "tool",
        "ToolMessage",
        {
          content: "r",
          type: "tool",
          id: "3",
          tool_call_id: "t",
          artifact: null,
          status: "success",
          additional_kwargs: {},
          response_metadata: {},
        },
      ],
    ] as const;
    const packed = encode(
      python.map(
        ([module, name, kwargs]) =>
          new ExtData(
            5,
            encode([`langchain_core.messages.${module}`, name, kwargs, "model_validate_json"]),
          ),
      ),
    );
    const envelopes = python.map(([, name, { type: _, ...kwargs }]) => ({
      lc: 1,
      type: "constructor",
      id: ["langchain_core", "messages", name],
      kwargs,
    }));
    const revived = await new JsonPlusSerializer().loadsTyped("json", JSON.stringify(envelopes));
    expect(await serde.loadsTyped("msgpack", packed)).toStrictEqual(revived);
  });

  it("leave to JSON what would not read back the same", () => {
    for (const item of [
      undefined,
      { a: undefined },
      Number.NaN,
      Number.POSITIVE_INFINITY,
      "lone \ud800 surrogate",
      { "\udc00": 1 },
      new Date(0),
      new Map([[1, 2]]),
      new Set([1]),
      new Uint8Array([1]),
      10n,
      { toJSON: () => "x" },
      new (class Custom {})(),
    ]) {
      expect(serde.dumpsList([1, item]), String(item)).toBeUndefined();
    }
  });
});
