/** Chat persistence for the Vercel AI SDK, with the SDK's mock model and the real sidecar. */
import { convertToModelMessages, generateText, type UIMessage, validateUIMessages } from "ai";
import { MockLanguageModelV3 } from "ai/test";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { loadChat, saveChat } from "../src/ai-sdk.js";
import { Client } from "../src/index.js";
import { Sidecar } from "./procs.js";

let sidecar: Sidecar;
let client: Client;

beforeAll(async () => {
  sidecar = await Sidecar.start();
  client = new Client({ url: sidecar.url });
});

afterAll(async () => {
  await client?.close();
  await sidecar?.kill9();
});

/** A mock model answering each call with the next of `answers`. */
function model(answers: string[]) {
  return new MockLanguageModelV3({
    doGenerate: answers.map((text) => ({
      content: [{ type: "text" as const, text }],
      finishReason: { unified: "stop" as const, raw: "stop" },
      usage: {
        inputTokens: { total: 3, noCache: 3, cacheRead: undefined, cacheWrite: undefined },
        outputTokens: { total: 2, text: 2, reasoning: undefined },
      },
      warnings: [],
    })),
  });
}

const user = (id: string, text: string): UIMessage => ({
  id,
  role: "user",
  parts: [{ type: "text", text }],
});

describe("loadChat and saveChat", () => {
  it("keep a chat across turns and a sidecar kill -9, and feed it back to the model", async () => {
    const chatId = "ai-chat-1";
    expect(await loadChat(client, chatId)).toEqual([]);
    const llm = model(["Hello, Ada.", "You asked about haiku."]);

    const first = [user("u1", "Hi, I am Ada.")];
    const a1 = await generateText({ model: llm, messages: await convertToModelMessages(first) });
    await saveChat(client, chatId, [
      ...first,
      {
        id: "a1",
        role: "assistant",
        metadata: { model: "mock" },
        parts: [{ type: "text", text: a1.text }],
      },
    ]);

    await sidecar.kill9();
    await sidecar.spawn();

    const loaded = await validateUIMessages<UIMessage>({
      messages: await loadChat(client, chatId),
    });
    expect(loaded.map((m) => m.id)).toEqual(["u1", "a1"]);
    expect(loaded[1]?.metadata).toEqual({ model: "mock" });
    const second = [...loaded, user("u2", "What did I ask?")];
    const a2 = await generateText({ model: llm, messages: await convertToModelMessages(second) });
    // The model saw the whole conversation, as loaded.
    const prompt = JSON.stringify(llm.doGenerateCalls[1]?.prompt);
    expect(prompt).toContain("Hi, I am Ada.");
    expect(prompt).toContain("Hello, Ada.");
    await saveChat(client, chatId, [
      ...second,
      { id: "a2", role: "assistant", parts: [{ type: "text", text: a2.text }] },
    ]);

    const stored = await client.listMessages(chatId);
    expect(stored.map((m) => [m.role, m.content])).toEqual([
      ["user", "Hi, I am Ada."],
      ["assistant", "Hello, Ada."],
      ["user", "What did I ask?"],
      ["assistant", "You asked about haiku."],
    ]);
  });

  it("replaces a regenerated answer instead of appending it", async () => {
    const chatId = "ai-chat-2";
    const q = user("u1", "Tell me a joke.");
    await saveChat(client, chatId, [
      q,
      { id: "a1", role: "assistant", parts: [{ type: "text", text: "first" }] },
    ]);
    await saveChat(client, chatId, [
      q,
      { id: "a1b", role: "assistant", parts: [{ type: "text", text: "second" }] },
    ]);
    const chat = await loadChat(client, chatId);
    expect(chat.map((m) => m.id)).toEqual(["u1", "a1b"]);
    // Saving the same chat again changes nothing.
    const before = (await client.getAgent(chatId))?.version;
    await saveChat(client, chatId, chat);
    expect((await client.getAgent(chatId))?.version).toBe(before);
  });
});
