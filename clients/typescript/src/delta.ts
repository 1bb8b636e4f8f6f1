/**
 * Which channel values a put sends as deltas, as the Python saver decides it.
 *
 * A list-valued channel (`messages` under `messagesStateReducer`) mostly grows by a few
 * items a step. When a channel's new value extends the value this saver last stored for
 * the same thread and namespace, and the put's parent is the checkpoint it stored then,
 * only the new items are packed and sent, as a blob that `extends` the stored version;
 * the sidecar answers every read with the whole value.
 *
 * "Extends" is decided without packing the old items (that is the cost saved): they must
 * be the very same objects, in the same places, each with the same own properties
 * holding the same values (`Object.is`) as when stored. So `RemoveMessage`, a
 * replacement by id, a reordering, a property assigned on an earlier message, a fork
 * from an older checkpoint, another process writing the thread, or a restarted saver all
 * send the whole value. Not seen: a change made inside a nested object of an earlier
 * item (`message.additional_kwargs.k = v`); LangGraph's state is meant to change through
 * node returns, and a saver built with `deltas: false` sends whole values always.
 *
 * A whole value is sent again after {@link CHAIN_MAX} deltas in a row, or once the
 * deltas since the last whole value add up to more than {@link GROWTH} times its size,
 * which bounds what is stored to 1 + (GROWTH + 1) / GROWTH times the final value.
 */

/** Deltas in a row before a whole value again. */
export const CHAIN_MAX = 128;
/** A whole value again once the deltas since the last exceed this many times its size. */
export const GROWTH = 3;
/** Threads (and namespaces) remembered; the least recently written is forgotten. */
export const THREADS_MAX = 1024;

/** A blob of a put, as the saver sends it. */
export interface PlannedBlob {
  channel: string;
  version: string;
  type: string;
  data: Uint8Array | string;
  /** The stored version this blob's items extend (a delta). */
  extends?: string;
}

/** Packs a list in Python's MessagePack, or says it cannot (then it goes whole, as JSON). */
export type ListPacker = (items: readonly unknown[]) => [string, Uint8Array] | undefined;
/** Serializes any value whole. */
export type Dumper = (value: unknown) => Promise<[string, Uint8Array]>;

type Shape = readonly (readonly [string, unknown])[] | undefined;

/** What an in-place change to an item would change: its own properties (shallow). */
function shapeOf(item: unknown): Shape {
  return item !== null && typeof item === "object" ? Object.entries(item) : undefined;
}

function sameShape(a: Shape, b: Shape): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const [ka, va] = a[i] as readonly [string, unknown];
    const [kb, vb] = b[i] as readonly [string, unknown];
    if (ka !== kb || !Object.is(va, vb)) return false;
  }
  return true;
}

/** What this saver stored of one channel: its version and the items of that value. */
class Stored {
  constructor(
    readonly version: string,
    /** (items, shapes) pairs: those it put and, once read back, those it read. */
    public views: [unknown[], Shape[]][],
    public wholeBytes: number,
    public deltaBytes = 0,
    public chain = 0,
  ) {}

  get length(): number {
    return this.views[0]?.[0].length ?? 0;
  }

  /** The shapes of the old items if `value` is them, unchanged, followed by new ones. */
  extendedBy(value: readonly unknown[]): Shape[] | undefined {
    const n = this.length;
    if (value.length < n) return undefined;
    for (const [items, shapes] of this.views) {
      let same = true;
      for (let i = 0; i < n && same; i++) same = value[i] === items[i];
      if (!same) continue;
      for (let i = 0; i < n; i++) {
        if (!sameShape(shapeOf(value[i]), shapes[i])) return undefined;
      }
      return shapes;
    }
    return undefined;
  }

  /** Adds the items of a read of this version. */
  readBack(value: readonly unknown[]): void {
    if (value.length === this.length) {
      this.views = [this.views[0] as [unknown[], Shape[]], [[...value], value.map(shapeOf)]];
    }
  }
}

interface Head {
  checkpointId: string;
  channels: Map<string, Stored>;
}

/** The blobs of one put and what to remember once it is stored. */
export interface PutPlan {
  key: string;
  checkpointId: string;
  parent: Head | undefined;
  blobs: PlannedBlob[];
  remember: Map<string, Stored | undefined>;
}

const keyOf = (threadId: string, ns: string) => `${threadId}\u0000${ns}`;

/** Per thread and namespace, the last checkpoint this saver stored and its lists' items. */
export class DeltaMemory {
  private readonly heads = new Map<string, Head>();

  constructor(
    readonly enabled: boolean,
    private readonly pack: ListPacker | undefined,
    private readonly dump: Dumper,
  ) {}

  /** The blobs of a put: deltas where a list extends what was stored for the parent. */
  async plan(
    threadId: string,
    ns: string,
    checkpointId: string,
    parentId: string | undefined,
    values: Record<string, unknown>,
    newVersions: Record<string, unknown>,
  ): Promise<PutPlan> {
    const key = keyOf(threadId, ns);
    const head = this.enabled && parentId !== undefined ? this.heads.get(key) : undefined;
    const parent = head?.checkpointId === parentId ? head : undefined;
    const blobs: PlannedBlob[] = [];
    const remember = new Map<string, Stored | undefined>();
    for (const [channel, v] of Object.entries(newVersions)) {
      const version = String(v);
      if (!(channel in values)) {
        blobs.push({ channel, version, type: "empty", data: "" });
        remember.set(channel, undefined);
        continue;
      }
      const [blob, kept] = await this.blob(
        channel,
        version,
        values[channel],
        parent?.channels.get(channel),
      );
      blobs.push(blob);
      remember.set(channel, kept);
    }
    return { key, checkpointId, parent, blobs, remember };
  }

  private async blob(
    channel: string,
    version: string,
    value: unknown,
    stored: Stored | undefined,
  ): Promise<[PlannedBlob, Stored | undefined]> {
    const list = this.enabled && this.pack !== undefined && Array.isArray(value);
    // The sidecar orders versions as text: a delta extends one that sorts before it.
    if (list && stored !== undefined && stored.chain < CHAIN_MAX && stored.version < version) {
      const shapes = stored.extendedBy(value);
      const packed = shapes && this.pack?.(value.slice(stored.length));
      if (shapes && packed && stored.deltaBytes + packed[1].length <= GROWTH * stored.wholeBytes) {
        const [type, data] = packed;
        const kept = new Stored(
          version,
          [[[...value], [...shapes, ...value.slice(stored.length).map(shapeOf)]]],
          stored.wholeBytes,
          stored.deltaBytes + data.length,
          stored.chain + 1,
        );
        return [{ channel, version, type, data, extends: stored.version }, kept];
      }
    }
    const packed = list ? this.pack?.(value) : undefined;
    const [type, data] = packed ?? (await this.dump(value));
    const whole = { channel, version, type, data };
    if (!packed) return [whole, undefined];
    const items = value as unknown[];
    return [whole, new Stored(version, [[[...items], items.map(shapeOf)]], data.length)];
  }

  /** Turns a plan's deltas into whole values (the sidecar refused a delta). */
  async whole(plan: PutPlan, values: Record<string, unknown>): Promise<void> {
    for (const [i, b] of plan.blobs.entries()) {
      if (b.extends === undefined) continue;
      const value = values[b.channel] as unknown[];
      const [type, data] = this.pack?.(value) ?? (await this.dump(value));
      plan.blobs[i] = { channel: b.channel, version: b.version, type, data };
      const kept = plan.remember.get(b.channel);
      if (kept !== undefined) {
        kept.wholeBytes = data.length;
        kept.deltaBytes = 0;
        kept.chain = 0;
      }
    }
  }

  /** Remembers a put the sidecar acknowledged. */
  stored(plan: PutPlan): void {
    if (!this.enabled) return;
    const channels = new Map(plan.parent?.channels ?? []);
    for (const [channel, kept] of plan.remember) {
      if (kept === undefined) channels.delete(channel);
      else channels.set(channel, kept);
    }
    this.heads.delete(plan.key);
    this.heads.set(plan.key, { checkpointId: plan.checkpointId, channels });
    while (this.heads.size > THREADS_MAX) {
      const oldest = this.heads.keys().next().value as string;
      this.heads.delete(oldest);
    }
  }

  /** Remembers the objects of a read of the checkpoint this saver stored last. */
  read(
    threadId: string,
    ns: string,
    checkpointId: string,
    versions: Record<string, unknown>,
    values: Record<string, unknown>,
  ): void {
    const head = this.heads.get(keyOf(threadId, ns));
    if (head?.checkpointId !== checkpointId) return;
    for (const [channel, stored] of head.channels) {
      const value = values[channel];
      if (Array.isArray(value) && String(versions[channel]) === stored.version) {
        stored.readBack(value);
      }
    }
  }

  /** Forgets a thread in every namespace (deleted, copied onto or pruned). */
  forget(threadId: string): void {
    const prefix = keyOf(threadId, "");
    for (const key of [...this.heads.keys()]) {
      if (key.startsWith(prefix)) this.heads.delete(key);
    }
  }
}
