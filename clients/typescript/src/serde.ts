/**
 * The serializer `AgentstateSaver` uses by default: LangGraph.js's own (`JsonPlusSerializer`,
 * type `json`) for what it writes, which LangGraph Python reads too (its JSON reviver
 * knows LangChain.js's messages); and, for reading, LangGraph Python's `msgpack` values
 * as well, so a thread written by the Python saver reads back here.
 *
 * Lists go in Python's MessagePack form when every item has one ({@link
 * InteropSerializer.dumpsList}): JSON-like values, and LangChain.js messages as the
 * `langchain_core` messages Python would write. Only such a value can grow by deltas
 * (the sidecar extends MessagePack arrays), and it reads back here exactly as its JSON
 * would: the same message envelopes go through the same reviver.
 *
 * Python's MessagePack carries objects as extension types whose payload is a packed
 * `(module, class, arguments[, method])`. LangChain messages (pydantic models of
 * `langchain_core.messages`) become the LangChain.js messages of the same class; dates
 * their ISO text, UUIDs their text, sets and deques arrays, a `Send` LangGraph.js's
 * `Send`-shaped object; any other object its arguments (a model's or dataclass's fields).
 */

import * as messages from "@langchain/core/messages";
import { JsonPlusSerializer, type SerializerProtocol } from "@langchain/langgraph-checkpoint";
import { decode, ExtData, ExtensionCodec, encode } from "@msgpack/msgpack";

// Extension types of LangGraph Python's serializer (langgraph.checkpoint.serde.jsonplus).
const CONSTRUCTOR_SINGLE_ARG = 0;
const CONSTRUCTOR_POS_ARGS = 1;
const CONSTRUCTOR_KW_ARGS = 2;
const METHOD_SINGLE_ARG = 3;
const PYDANTIC_V1 = 4;
const PYDANTIC_V2 = 5;
const DELTA_SNAPSHOT = 7;

/**
 * A LangChain message read from MessagePack: LangChain.js's serialized form of the
 * message of the same class (what `JSON.stringify` writes of it), which its reviver
 * builds the message from.
 */
class Envelope {
  constructor(
    readonly name: string,
    readonly kwargs: Record<string, unknown>,
  ) {}

  toJSON() {
    return {
      lc: 1,
      type: "constructor",
      id: ["langchain_core", "messages", this.name],
      kwargs: this.kwargs,
    };
  }
}

/** A Python object as its class and arguments. */
function revive(module: string, name: string, args: unknown): unknown {
  if (module.startsWith("langchain_core.messages") && args !== null && typeof args === "object") {
    const { type: _type, ...kwargs } = args as Record<string, unknown>;
    return new Envelope(name, kwargs);
  }
  if (
    module === "langgraph.types" &&
    name === "Send" &&
    args !== null &&
    typeof args === "object"
  ) {
    const { node, arg } = args as { node?: unknown; arg?: unknown };
    return { lg_name: "Send", node, args: arg };
  }
  return args;
}

function unpackArgs(data: Uint8Array, codec: ExtensionCodec): unknown[] {
  const v = decode(data, { extensionCodec: codec });
  return Array.isArray(v) ? v : [v];
}

function pythonCodec(): ExtensionCodec {
  const codec = new ExtensionCodec();
  const object = (data: Uint8Array) => {
    const [module, name, args] = unpackArgs(data, codec) as [string, string, unknown];
    return revive(String(module), String(name), args);
  };
  for (const type of [CONSTRUCTOR_SINGLE_ARG, CONSTRUCTOR_KW_ARGS, PYDANTIC_V1, PYDANTIC_V2]) {
    codec.register({ type, encode: () => null, decode: object });
  }
  codec.register({
    type: CONSTRUCTOR_POS_ARGS,
    encode: () => null,
    decode: (data) => {
      const [module, name, args] = unpackArgs(data, codec) as [string, string, unknown[]];
      // A path's parts, a pattern's (pattern, flags)...: the first argument stands for it.
      return revive(String(module), String(name), Array.isArray(args) ? args[0] : args);
    },
  });
  codec.register({
    type: METHOD_SINGLE_ARG,
    encode: () => null,
    // datetime.fromisoformat and the like: the ISO text.
    decode: (data) => unpackArgs(data, codec)[2],
  });
  codec.register({
    type: DELTA_SNAPSHOT,
    encode: () => null,
    decode: (data) => decode(data, { extensionCodec: codec }),
  });
  return codec;
}

/** Python modules (under `langchain_core.messages`) of LangChain's message classes. */
const MESSAGE_MODULES: Record<string, string> = {
  HumanMessage: "human",
  HumanMessageChunk: "human",
  AIMessage: "ai",
  AIMessageChunk: "ai",
  SystemMessage: "system",
  SystemMessageChunk: "system",
  ToolMessage: "tool",
  ToolMessageChunk: "tool",
  FunctionMessage: "function",
  FunctionMessageChunk: "function",
  ChatMessage: "chat",
  ChatMessageChunk: "chat",
  RemoveMessage: "modifier",
};

/** Nesting followed before a value is taken as having no Python form. */
const DEPTH_MAX = 100;

/** Marks a value with no Python form that reads back as its JSON would. */
const NO_FORM = Symbol("no Python form");

/** Whether a string packs as it is (a lone surrogate would not survive UTF-8). */
const wellFormed = (s: string) => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/**
 * `value` as LangGraph Python's serializer would pack it, or {@link NO_FORM}: JSON-like
 * values as they are, a LangChain.js message as Python's pydantic extension type with
 * the message's JSON arguments. Only what reads back exactly as LangGraph.js's JSON would
 * has a form: not `undefined` (which that JSON keeps), a lone surrogate, a non-finite
 * number, dates, maps, sets, bytes, big integers or other class instances. In a
 * message's arguments (`inMessage`) a field left `undefined` is left out: the message
 * is built the same without it.
 */
function pythonForm(value: unknown, depth = 0, inMessage = false): unknown {
  if (value === null || typeof value === "boolean") return value;
  if (typeof value === "string") return wellFormed(value) ? value : NO_FORM;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) return NO_FORM;
    return Object.is(value, -0) ? 0 : value;
  }
  if (typeof value !== "object" || depth > DEPTH_MAX) return NO_FORM;
  if (Array.isArray(value)) {
    const out: unknown[] = [];
    for (const v of value) {
      const form = pythonForm(v, depth + 1, inMessage);
      if (form === NO_FORM) return NO_FORM;
      out.push(form);
    }
    return out;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) {
    if (typeof (value as { toJSON?: unknown }).toJSON === "function") return NO_FORM;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      // JSON leaves them out.
      if (typeof v === "function" || typeof v === "symbol") continue;
      if (v === undefined && inMessage) continue;
      const form = wellFormed(k) ? pythonForm(v, depth + 1, inMessage) : NO_FORM;
      if (form === NO_FORM) return NO_FORM;
      out[k] = form;
    }
    return out;
  }
  return messageForm(value, depth);
}

/** A LangChain.js message as the pydantic extension type Python packs it in. */
function messageForm(value: object, depth: number): unknown {
  const toJSON = (value as { toJSON?: () => unknown }).toJSON;
  if (typeof toJSON !== "function") return NO_FORM;
  const json = toJSON.call(value) as {
    lc?: unknown;
    type?: unknown;
    id?: unknown;
    kwargs?: unknown;
  };
  if (json === null || typeof json !== "object") return NO_FORM;
  const id = Array.isArray(json.id) ? json.id : [];
  const name = String(id.at(-1));
  const module = MESSAGE_MODULES[name];
  if (
    json.lc !== 1 ||
    json.type !== "constructor" ||
    id.length !== 3 ||
    id[0] !== "langchain_core" ||
    id[1] !== "messages" ||
    module === undefined
  ) {
    return NO_FORM;
  }
  const kwargs = pythonForm(json.kwargs, depth + 1, true);
  if (kwargs === NO_FORM) return NO_FORM;
  const args = [`langchain_core.messages.${module}`, name, kwargs, "model_validate_json"];
  return new ExtData(PYDANTIC_V2, encode(args));
}

/** Marks a value only LangChain.js's own reviver reads exactly. */
const UNSURE = Symbol("unsure");

/** The classes `load` builds LangChain messages with, by name. */
const MESSAGE_CLASSES = messages as unknown as Record<string, unknown>;

/** A class's `lc_aliases` along its prototype chain, inverted (as `load` maps keys). */
const aliasCache = new WeakMap<object, Record<string, string>>();
function aliasesOf(cls: { prototype?: object }): Record<string, string> {
  let inverted = aliasCache.get(cls);
  if (inverted === undefined) {
    const aliases: Record<string, string> = {};
    for (let c = cls; c?.prototype; c = Object.getPrototypeOf(c)) {
      Object.assign(aliases, Reflect.get(c.prototype, "lc_aliases"));
    }
    inverted = Object.fromEntries(Object.entries(aliases).map(([k, v]) => [v, k]));
    aliasCache.set(cls, inverted);
  }
  return inverted;
}

/** `load`'s key mapping: an alias, else camelCase. */
function keyFromJson(key: string, aliases: Record<string, string>): string {
  const alias = aliases[key];
  if (alias) return alias;
  const trimmed = key.trim();
  if (!/[-_\s]/.test(trimmed)) return trimmed;
  return trimmed
    .replace(/[-_\s]+/g, "_")
    .toLowerCase()
    .replace(/_+([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/**
 * The value with its messages built as LangChain.js's reviver builds them (`new` of the
 * class with the arguments' keys mapped), without the JSON round trip; {@link UNSURE}
 * if any object besides them is one the reviver would treat (an `lc` key).
 */
function buildMessages(value: unknown): unknown {
  if (value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const v = buildMessages(value[i]);
      if (v === UNSURE) return UNSURE;
      value[i] = v;
    }
    return value;
  }
  if (value instanceof Envelope) {
    const cls = MESSAGE_CLASSES[value.name];
    if (typeof cls !== "function") return UNSURE;
    const kwargs = buildMessages(value.kwargs) as Record<string, unknown> | typeof UNSURE;
    if (kwargs === UNSURE) return UNSURE;
    const aliases = aliasesOf(cls);
    const fields: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(kwargs)) fields[keyFromJson(k, aliases)] = v;
    return new (cls as new (fields: Record<string, unknown>) => unknown)(fields);
  }
  if (Object.hasOwn(value, "lc")) return UNSURE;
  const record = value as Record<string, unknown>;
  for (const k of Object.keys(record)) {
    const v = buildMessages(record[k]);
    if (v === UNSURE) return UNSURE;
    record[k] = v;
  }
  return record;
}

export class InteropSerializer implements SerializerProtocol {
  private readonly json = new JsonPlusSerializer();
  private readonly codec = pythonCodec();

  dumpsTyped(data: unknown): Promise<[string, Uint8Array]> {
    return this.json.dumpsTyped(data);
  }

  /**
   * A list in LangGraph Python's MessagePack (type `msgpack`), if every item has a form
   * there; else undefined (the list then goes as JSON, whole). Items pack one after the
   * other, so the packing of `items.slice(n)` is the tail of the packing of `items`.
   */
  dumpsList(items: readonly unknown[]): [string, Uint8Array] | undefined {
    const form = pythonForm(items);
    return form === NO_FORM ? undefined : ["msgpack", encode(form)];
  }

  async loadsTyped(type: string, data: Uint8Array | string): Promise<unknown> {
    if (type !== "msgpack") return this.json.loadsTyped(type, data);
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const plain = decode(bytes, { extensionCodec: this.codec, useBigInt64: false });
    const built = buildMessages(plain);
    if (built !== UNSURE) return built;
    // What LangChain.js's reviver does more than build messages: let it.
    return this.json.loadsTyped("json", JSON.stringify(plain));
  }
}
