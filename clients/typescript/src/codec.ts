/**
 * Body codecs: MessagePack (the default) and JSON. They differ only in bytes: serialized
 * values travel as MessagePack `bin`, but as base64 strings in JSON.
 */
import { decode, encode } from "@msgpack/msgpack";

import type { Codec } from "./config.js";

export const MSGPACK = "application/msgpack";
export const JSON_MEDIA = "application/json";

export function contentType(codec: Codec): string {
  return codec === "msgpack" ? MSGPACK : JSON_MEDIA;
}

export function encodeBody(codec: Codec, body: unknown): Uint8Array {
  if (codec === "msgpack") {
    return encode(body, { ignoreUndefined: true });
  }
  return new TextEncoder().encode(
    JSON.stringify(body, (_key, value: unknown) =>
      value instanceof Uint8Array ? Buffer.from(value).toString("base64") : value,
    ),
  );
}

/** Decodes by the answer's `Content-Type`; other text comes back as a string. */
export function decodeBody(mediaType: string | undefined, raw: Uint8Array): unknown {
  if (raw.length === 0) return null;
  const essence = (mediaType ?? "").split(";")[0]?.trim().toLowerCase();
  if (essence === MSGPACK || essence === "application/x-msgpack") {
    return decode(raw, { useBigInt64: false });
  }
  const text = new TextDecoder().decode(raw);
  return essence === JSON_MEDIA ? JSON.parse(text) : text;
}

/** A wire `data` field: `bin` in MessagePack, base64 text in JSON. */
export function asBytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return new Uint8Array(Buffer.from(value, "base64"));
  if (value == null) return new Uint8Array();
  throw new TypeError(`expected bytes or base64 text, got ${typeof value}`);
}
