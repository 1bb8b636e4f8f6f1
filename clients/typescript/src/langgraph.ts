/**
 * `AgentstateSaver`: a LangGraph.js checkpointer on the agentstate sidecar's threads API,
 * stored as the Python saver stores them, so either can read what the other wrote: the
 * checkpoint without its `channel_values` is one serialized value; each channel value is
 * a blob stored once per (namespace, channel, version), written only when its version
 * is new; a checkpoint's values are the blobs at its `channel_versions` (type `empty`:
 * the channel has no value). Values are serialized by the graph's serializer; the
 * sidecar keeps their type tag and bytes as they are, and answers a read with whole
 * values. A list that grew from what this saver stored for the parent checkpoint goes
 * as its new items only, in Python's MessagePack, as the Python saver sends it (see
 * ./delta.ts).
 */
import type { RunnableConfig } from "@langchain/core/runnables";
import {
  BaseCheckpointSaver,
  type ChannelVersions,
  type Checkpoint,
  type CheckpointListOptions,
  type CheckpointMetadata,
  type CheckpointPendingWrite,
  type CheckpointTuple,
  compareWritesSortKeys,
  type DeltaChannelHistory,
  maxChannelVersion,
  type PendingWrite,
  type SerializerProtocol,
  TASKS,
  WRITES_IDX_MAP,
  writesSortKey,
} from "@langchain/langgraph-checkpoint";

import {
  Client,
  PAGE_LIMIT_MAX,
  type Schemas,
  type ThreadCheckpointTuple,
  type Typed,
} from "./client.js";
import { asBytes } from "./codec.js";
import type { ClientOptions, Durability } from "./config.js";
import { DeltaMemory, type PlannedBlob } from "./delta.js";
import { Conflict, NotFound } from "./errors.js";
import { InteropSerializer } from "./serde.js";

export interface AgentstateSaverOptions extends ClientOptions {
  /** A client to use (and not close) instead of one built from the other options. */
  client?: Client;
  /**
   * The graph's serializer; by default LangGraph.js's JSON serializer, which also reads
   * the values LangGraph Python's saver wrote ({@link InteropSerializer}).
   */
  serde?: SerializerProtocol;
  /**
   * Send a list that grew as its new items only (default true; needs the default
   * serializer, whose MessagePack lists Python reads too).
   */
  deltas?: boolean;
}

function wireBlob(b: PlannedBlob): Schemas["ThreadBlob"] {
  // Bytes go as MessagePack `bin` (or base64 in JSON): the schema's string is the JSON form.
  const value = { type: b.type, data: b.data as unknown as string };
  return b.extends === undefined
    ? { channel: b.channel, version: b.version, value }
    : { channel: b.channel, version: b.version, value, extends: b.extends };
}

/** What identifies a checkpoint in a config. */
function threadOf(config: RunnableConfig): {
  threadId?: string;
  ns: string;
  checkpointId?: string;
} {
  const c = config.configurable ?? {};
  return {
    threadId: c.thread_id == null ? undefined : String(c.thread_id),
    ns: c.checkpoint_ns ?? "",
    checkpointId: c.checkpoint_id || undefined,
  };
}

/** Nesting the sidecar accepts in a document; deeper metadata is cut to a string. */
const DEPTH_MAX = 60;

/** Metadata as the sidecar stores it: JSON-like maps and values, finite numbers. */
function jsonSafe(value: unknown, depth = 0): unknown {
  if (value === null || typeof value === "boolean" || typeof value === "string") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : null;
  if (typeof value === "bigint") return value.toString();
  if (value === undefined || typeof value === "function" || typeof value === "symbol")
    return undefined;
  if (depth >= DEPTH_MAX) return String(value);
  if (value instanceof Uint8Array) return Buffer.from(value).toString("base64");
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map((v) => jsonSafe(v, depth + 1) ?? null);
  if (typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      const safe = jsonSafe(v, depth + 1);
      if (safe !== undefined) out[k] = safe;
    }
    return out;
  }
  return String(value);
}

export class AgentstateSaver extends BaseCheckpointSaver {
  readonly client: Client;
  private readonly ownsClient: boolean;
  private readonly durability: Durability | undefined;
  private readonly deltas: DeltaMemory;

  constructor(options: AgentstateSaverOptions = {}) {
    const serde = options.serde ?? new InteropSerializer();
    super(serde);
    this.ownsClient = options.client === undefined;
    this.client = options.client ?? new Client(options);
    this.durability = options.durability;
    const pack =
      serde instanceof InteropSerializer
        ? (items: readonly unknown[]) => serde.dumpsList(items)
        : undefined;
    this.deltas = new DeltaMemory(options.deltas ?? true, pack, (v) => serde.dumpsTyped(v));
  }

  /**
   * The next version of a channel, in LangGraph Python's form (a zero-padded counter, a
   * dot, a random fraction), as the Python saver counts: a thread goes on in either, and
   * the sidecar's text order of versions is their order, which a delta needs (it
   * extends an older version). A thread stored with LangGraph.js's numbers goes on in
   * numbers (LangGraph.js orders a number and a text as texts, so the two cannot mix).
   */
  getNextVersion(current: number | undefined): number {
    // LangGraph.js types versions as numbers; it compares strings too.
    const seen = current as number | string | undefined;
    if (typeof seen === "number") return seen + 1;
    const next = Number.parseInt(seen?.split(".")[0] ?? "0", 10) + 1;
    const version = `${String(next).padStart(32, "0")}.${String(Math.random()).padStart(16, "0")}`;
    return version as unknown as number;
  }

  /** Closes the client if this saver built it. */
  async close(): Promise<void> {
    if (this.ownsClient) await this.client.close();
  }

  private async typed(value: unknown): Promise<Typed> {
    const [type, data] = await this.serde.dumpsTyped(value);
    // Bytes go as MessagePack `bin` (or base64 in JSON): the schema's string is the JSON form.
    return { type, data: data as unknown as string };
  }

  private async loaded(t: { type: string; data: unknown }): Promise<unknown> {
    return this.serde.loadsTyped(t.type, asBytes(t.data));
  }

  async getTuple(config: RunnableConfig): Promise<CheckpointTuple | undefined> {
    const { threadId, ns, checkpointId } = threadOf(config);
    if (threadId === undefined) return undefined;
    const t = await this.client.getThreadCheckpoint(threadId, ns, checkpointId);
    if (t === null) return undefined;
    const tuple = await this.toTuple(t);
    const { channel_versions: versions, channel_values: values } = tuple.checkpoint;
    this.deltas.read(t.thread_id, t.checkpoint_ns, t.checkpoint_id, versions, values);
    return tuple;
  }

  private async toTuple(t: ThreadCheckpointTuple): Promise<CheckpointTuple> {
    const checkpoint = (await this.loaded(t.checkpoint)) as Checkpoint;
    const values: Record<string, unknown> = {};
    for (const b of t.blobs) {
      if (b.value.type !== "empty") values[b.channel] = await this.loaded(b.value);
    }
    checkpoint.channel_values = values;
    if (checkpoint.v < 4 && t.parent_checkpoint_id) {
      await this.migratePendingSends(t, checkpoint);
    }
    const writes = [...t.writes].sort((a, b) =>
      compareWritesSortKeys(
        writesSortKey(a.task_path, a.task_id, a.idx),
        writesSortKey(b.task_path, b.task_id, b.idx),
      ),
    );
    const pendingWrites: CheckpointPendingWrite[] = [];
    for (const w of writes) {
      pendingWrites.push([w.task_id, w.channel, await this.loaded(w.value)]);
    }
    const where = { thread_id: t.thread_id, checkpoint_ns: t.checkpoint_ns };
    return {
      config: { configurable: { ...where, checkpoint_id: t.checkpoint_id } },
      checkpoint,
      metadata: t.metadata as CheckpointMetadata,
      parentConfig: t.parent_checkpoint_id
        ? { configurable: { ...where, checkpoint_id: t.parent_checkpoint_id } }
        : undefined,
      pendingWrites,
    };
  }

  /**
   * Checkpoints older than format 4 kept the `Send`s of their parent's tasks as the
   * parent's pending writes to `__pregel_tasks`: they become the channel's value here.
   */
  private async migratePendingSends(
    t: ThreadCheckpointTuple,
    checkpoint: Checkpoint,
  ): Promise<void> {
    const parent = await this.client.getThreadCheckpoint(
      t.thread_id,
      t.checkpoint_ns,
      t.parent_checkpoint_id ?? undefined,
    );
    const sends = (parent?.writes ?? [])
      .filter((w) => w.channel === TASKS)
      .sort((a, b) => (a.task_id === b.task_id ? a.idx - b.idx : a.task_id < b.task_id ? -1 : 1));
    if (sends.length === 0) return;
    const values: unknown[] = [];
    for (const w of sends) values.push(await this.loaded(w.value));
    checkpoint.channel_values[TASKS] = values;
    const versions = Object.values(checkpoint.channel_versions);
    checkpoint.channel_versions[TASKS] = versions.length > 0 ? maxChannelVersion(...versions) : 1;
  }

  async *list(
    config: RunnableConfig,
    options: CheckpointListOptions = {},
  ): AsyncGenerator<CheckpointTuple> {
    const c = config?.configurable ?? {};
    const threadId = c.thread_id == null ? null : String(c.thread_id);
    const ns: string | null = c.checkpoint_ns ?? null;
    const base: Schemas["SearchCheckpointsRequest"] = {
      thread_id: threadId,
      checkpoint_ns: ns,
      checkpoint_id: c.checkpoint_id || null,
      filter: options.filter ? (jsonSafe(options.filter) as Schemas["Metadata"]) : null,
    };
    let before: string | null = options.before?.configurable?.checkpoint_id ?? null;
    let remaining = options.limit ?? null;
    // Across threads or namespaces an id can repeat (a copied thread keeps its ids), and
    // `before` would skip the repeats a full page cut off: they are fetched by id first.
    const idsUnique = threadId !== null && ns !== null;
    while (remaining === null || remaining > 0) {
      const asked = remaining === null ? PAGE_LIMIT_MAX : Math.min(PAGE_LIMIT_MAX, remaining);
      const page = await this.client.searchCheckpoints({ ...base, before, limit: asked });
      let fresh = page;
      const last = page.at(-1)?.checkpoint_id;
      const full = page.length === asked && last !== undefined;
      if (full && !idsUnique) {
        const seen = new Set(
          page
            .filter((t) => t.checkpoint_id === last)
            .map((t) => `${t.thread_id}\u0000${t.checkpoint_ns}`),
        );
        const ties = await this.client.searchCheckpoints({
          ...base,
          checkpoint_id: last,
          before: null,
          limit: PAGE_LIMIT_MAX,
        });
        fresh = [
          ...page,
          ...ties.filter((t) => !seen.has(`${t.thread_id}\u0000${t.checkpoint_ns}`)),
        ];
      }
      if (remaining !== null) {
        fresh = fresh.slice(0, remaining);
        remaining -= fresh.length;
      }
      for (const t of fresh) yield await this.toTuple(t);
      if (!full) return;
      before = last;
    }
  }

  async put(
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    newVersions: ChannelVersions,
  ): Promise<RunnableConfig> {
    const { threadId, ns, checkpointId: parentId } = threadOf(config);
    if (threadId === undefined) {
      throw new Error("put needs a config with configurable.thread_id");
    }
    const { channel_values: values, ...rest } = checkpoint;
    const plan = await this.deltas.plan(threadId, ns, checkpoint.id, parentId, values, newVersions);
    const channelVersions: Record<string, string> = {};
    for (const [k, v] of Object.entries(checkpoint.channel_versions))
      channelVersions[k] = String(v);
    const request = {
      checkpoint_ns: ns,
      checkpoint_id: checkpoint.id,
      parent_checkpoint_id: parentId ?? null,
      checkpoint: await this.typed(rest),
      metadata: (jsonSafe(metadata) ?? {}) as Schemas["Metadata"],
      channel_versions: channelVersions,
    };
    const opts = { durability: this.durability };
    try {
      await this.client.putThreadCheckpoint(
        threadId,
        { ...request, blobs: plan.blobs.map(wireBlob) },
        opts,
      );
    } catch (e) {
      if (!(e instanceof Conflict) || !plan.blobs.some((b) => b.extends !== undefined)) throw e;
      // The sidecar no longer holds a base (or refuses the chain): send it whole.
      await this.deltas.whole(plan, values);
      await this.client.putThreadCheckpoint(
        threadId,
        { ...request, blobs: plan.blobs.map(wireBlob) },
        opts,
      );
    }
    this.deltas.stored(plan);
    return {
      configurable: { thread_id: threadId, checkpoint_ns: ns, checkpoint_id: checkpoint.id },
    };
  }

  async putWrites(
    config: RunnableConfig,
    writes: PendingWrite[],
    taskId: string,
    taskPath = "",
  ): Promise<void> {
    const { threadId, ns, checkpointId } = threadOf(config);
    if (threadId === undefined || checkpointId === undefined) {
      throw new Error("putWrites needs a config with configurable.thread_id and checkpoint_id");
    }
    if (writes.length === 0) return;
    const wire: Schemas["NewThreadWrite"][] = [];
    for (const [i, [channel, value]] of writes.entries()) {
      // Special channels (errors, interrupts...) have a fixed negative index, so that a
      // later write replaces them; a task's other writes keep the first one stored.
      wire.push({ idx: WRITES_IDX_MAP[channel] ?? i, channel, value: await this.typed(value) });
    }
    await this.client.putThreadWrites(
      threadId,
      {
        checkpoint_ns: ns,
        checkpoint_id: checkpointId,
        task_id: taskId,
        task_path: taskPath,
        writes: wire,
      },
      { durability: this.durability },
    );
  }

  /**
   * Per channel, the writes on the path to a checkpoint since the nearest stored value
   * (LangGraph's `DeltaChannel`), in one call: the sidecar walks the parents.
   */
  async getDeltaChannelHistory(options: {
    config: RunnableConfig;
    channels: string[];
  }): Promise<Record<string, DeltaChannelHistory>> {
    const { config, channels } = options;
    if (channels.length === 0) return {};
    const { threadId, ns, checkpointId } = threadOf(config);
    let found: Schemas["DeltaHistoryResponse"]["channels"] = {};
    if (threadId !== undefined) {
      try {
        const request = { checkpoint_ns: ns, checkpoint_id: checkpointId ?? null, channels };
        found = (await this.client.deltaHistory(threadId, request)).channels;
      } catch (e) {
        if (!(e instanceof NotFound)) throw e;
      }
    }
    const out: Record<string, DeltaChannelHistory> = {};
    for (const channel of channels) {
      const h = found[channel];
      const writes: CheckpointPendingWrite[] = [];
      for (const w of h?.writes ?? []) {
        writes.push([w.task_id, w.channel, await this.loaded(w.value)]);
      }
      const entry: DeltaChannelHistory = { writes };
      if (h?.seed && h.seed.type !== "empty") entry.seed = await this.loaded(h.seed);
      out[channel] = entry;
    }
    return out;
  }

  async deleteThread(threadId: string): Promise<void> {
    this.deltas.forget(String(threadId));
    try {
      await this.client.deleteThread(String(threadId), { durability: this.durability });
    } catch (e) {
      if (!(e instanceof NotFound)) throw e;
    }
  }
}
