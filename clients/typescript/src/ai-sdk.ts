/**
 * Chat persistence for the Vercel AI SDK (`ai`): `loadChat` and `saveChat` keep a chat's
 * `UIMessage`s as an agent's conversation, one message each. The text parts are the
 * message's `content` (what the inspector and the other clients show); the whole message
 * (its id, parts and metadata) rides in the message's `metadata`, so a chat reads back as
 * it was saved. Messages appended to the agent by other means read back as text.
 *
 * Typical use, in a route that streams the answer:
 *
 * ```ts
 * const messages = [...(await loadChat(client, chatId)), newMessage];
 * const result = streamText({ model, messages: await convertToModelMessages(messages) });
 * return result.toUIMessageStreamResponse({
 *   originalMessages: messages,
 *   onFinish: ({ messages }) => saveChat(client, chatId, messages),
 * });
 * ```
 */
import { type Client, PAGE_LIMIT_MAX, type Schemas, type WriteOptions } from "./client.js";

/** The shape of the AI SDK's `UIMessage` that persistence needs. */
export interface ChatMessage {
  id: string;
  role: "system" | "user" | "assistant";
  metadata?: unknown;
  parts: unknown[];
}

/** The agent state a chat is created in. */
export const CHAT_STATE = "active";

function textOf(parts: unknown[]): string {
  return parts
    .filter((p): p is { type: "text"; text: string } => {
      const part = p as { type?: unknown; text?: unknown };
      return part.type === "text" && typeof part.text === "string";
    })
    .map((p) => p.text)
    .join("\n");
}

function toWire(m: ChatMessage): Schemas["NewMessage"] {
  const metadata: Record<string, unknown> = { ui_message_id: m.id, ui_parts: m.parts };
  if (m.metadata !== undefined) metadata.ui_metadata = m.metadata;
  return { role: m.role, content: textOf(m.parts), metadata: metadata as Schemas["Metadata"] };
}

function fromWire<M extends ChatMessage>(m: Schemas["Message"]): M {
  const meta = (m.metadata ?? {}) as Record<string, unknown>;
  const message: ChatMessage = {
    id: typeof meta.ui_message_id === "string" ? meta.ui_message_id : `seq-${m.seq}`,
    role: (["system", "user", "assistant"].includes(m.role)
      ? m.role
      : "assistant") as ChatMessage["role"],
    parts: Array.isArray(meta.ui_parts) ? meta.ui_parts : [{ type: "text", text: m.content }],
  };
  if (meta.ui_metadata !== undefined) message.metadata = meta.ui_metadata;
  return message as M;
}

/** The chat's messages, oldest first; none if the chat was never saved. */
export async function loadChat<M extends ChatMessage = ChatMessage>(
  client: Client,
  chatId: string,
): Promise<M[]> {
  const out: M[] = [];
  for (let after = 0; ; ) {
    const page = await client.listMessages(chatId, after, PAGE_LIMIT_MAX).catch((e: unknown) => {
      if ((e as { code?: string }).code === "not_found") return [];
      throw e;
    });
    out.push(...page.map((m) => fromWire<M>(m)));
    if (page.length < PAGE_LIMIT_MAX) return out;
    after = page.at(-1)?.seq ?? after;
  }
}

/**
 * Saves the chat as `messages`: appends the ones not stored yet, in one call. Where the
 * stored chat differs from `messages` (a regenerated answer, an edited message), the
 * stored messages from the first difference on are removed first. Each write is
 * conditioned on the version the previous one left, so a concurrent writer to the same
 * chat makes this fail with `VersionConflict` rather than interleave.
 */
export async function saveChat(
  client: Client,
  chatId: string,
  messages: ChatMessage[],
  options: WriteOptions = {},
): Promise<void> {
  let version = (await client.getAgent(chatId))?.version;
  if (version === undefined) {
    version = await client.saveAgent(
      chatId,
      { state_name: CHAT_STATE },
      { ...options, ifNoneMatch: true },
    );
  }
  const stored = await loadChat(client, chatId);
  const same = (a: ChatMessage, b: ChatMessage) =>
    a.id === b.id && a.role === b.role && JSON.stringify(a.parts) === JSON.stringify(b.parts);
  let kept = 0;
  while (
    kept < stored.length &&
    kept < messages.length &&
    same(stored[kept] as ChatMessage, messages[kept] as ChatMessage)
  ) {
    kept++;
  }
  if (kept === 0 && stored.length > 0) {
    version = await client.clearMessages(chatId, { ...options, ifMatch: version });
  } else {
    for (let i = stored.length; i > kept; i--) {
      version = (await client.popMessage(chatId, { ...options, ifMatch: version })).version;
    }
  }
  const fresh = messages.slice(kept);
  if (fresh.length > 0) {
    await client.appendMessages(chatId, fresh.map(toWire), { ...options, ifMatch: version });
  }
}
