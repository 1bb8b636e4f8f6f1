/**
 * The serializer `AgentstateSaver` uses by default: LangGraph.js's own (`JsonPlusSerializer`,
 * type `json`) for what it writes, which LangGraph Python reads too (its JSON reviver
 * knows LangChain.js's messages); and, for reading, LangGraph Python's `msgpack` values
 * as well, so a thread written by the Python saver reads back here.
 *
 * Python's MessagePack carries objects as extension types whose payload is a packed
 * `(module, class, arguments[, method])`. LangChain messages (pydantic models of
 * `langchain_core.messages`) become the LangChain.js messages of the same class; dates
 * their ISO text, UUIDs their text, sets and deques arrays, a `Send` LangGraph.js's
 * `Send`-shaped object; any other object its arguments (a model's or dataclass's fields).
 */

import { JsonPlusSerializer, type SerializerProtocol } from "@langchain/langgraph-checkpoint";
import { decode, ExtensionCodec } from "@msgpack/msgpack";

// Extension types of LangGraph Python's serializer (langgraph.checkpoint.serde.jsonplus).
const CONSTRUCTOR_SINGLE_ARG = 0;
const CONSTRUCTOR_POS_ARGS = 1;
const CONSTRUCTOR_KW_ARGS = 2;
const METHOD_SINGLE_ARG = 3;
const PYDANTIC_V1 = 4;
const PYDANTIC_V2 = 5;
const DELTA_SNAPSHOT = 7;

/** A Python object as its class and arguments. */
function revive(module: string, name: string, args: unknown): unknown {
  if (module.startsWith("langchain_core.messages") && args !== null && typeof args === "object") {
    // LangChain.js revives this envelope as its own message class.
    const { type: _type, ...kwargs } = args as Record<string, unknown>;
    return { lc: 1, type: "constructor", id: ["langchain_core", "messages", name], kwargs };
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

export class InteropSerializer implements SerializerProtocol {
  private readonly json = new JsonPlusSerializer();
  private readonly codec = pythonCodec();

  dumpsTyped(data: unknown): Promise<[string, Uint8Array]> {
    return this.json.dumpsTyped(data);
  }

  async loadsTyped(type: string, data: Uint8Array | string): Promise<unknown> {
    if (type !== "msgpack") return this.json.loadsTyped(type, data);
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    const plain = decode(bytes, { extensionCodec: this.codec, useBigInt64: false });
    // LangChain.js revives the message envelopes (and the rest passes as it is).
    return this.json.loadsTyped("json", JSON.stringify(plain));
  }
}
