/**
 * Client settings, resolved once: arguments, then the environment (`AGENTSTATE_URL`,
 * `AGENTSTATE_TOKEN`, `AGENTSTATE_SOCKET`), then defaults.
 */

export type Durability = "local" | "remote" | "memory";
export type Codec = "msgpack" | "json";

export const ENV_URL = "AGENTSTATE_URL";
export const ENV_TOKEN = "AGENTSTATE_TOKEN";
export const ENV_SOCKET = "AGENTSTATE_SOCKET";
export const DEFAULT_URL = "http://127.0.0.1:7700";
/** Host used in URLs over a Unix socket (the socket, not the host, routes). */
export const SOCKET_URL = "http://agentstate";
export const DURABILITIES: readonly Durability[] = ["local", "remote", "memory"];
/** Bound on any single retry wait, `Retry-After` included. */
export const RETRY_WAIT_MAX_MS = 30_000;

export interface ClientOptions {
  /** `http://host:port` of the sidecar; default `AGENTSTATE_URL`, else 127.0.0.1:7700. */
  url?: string;
  /** Bearer token; default `AGENTSTATE_TOKEN`. */
  token?: string;
  /** Unix socket path; default `AGENTSTATE_SOCKET`. */
  socket?: string;
  /** Body encoding; MessagePack by default. */
  codec?: Codec;
  /** Durability of writes that do not name one; default: the sidecar's (`local`). */
  durability?: Durability;
  /** Retries after connection errors and 503s (never after 409 or 422). Default 3. */
  maxRetries?: number;
  /** Per-request timeout. Default 30 s. */
  timeoutMs?: number;
  /** First backoff ceiling; doubles per retry up to `backoffMaxMs`. Default 50 ms. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
}

export interface Settings {
  readonly url: string;
  readonly token: string | null;
  readonly socket: string | null;
  readonly codec: Codec;
  readonly durability: Durability | null;
  readonly maxRetries: number;
  readonly timeoutMs: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

export function checkDurability(d: string | null | undefined): void {
  if (d != null && !DURABILITIES.includes(d as Durability)) {
    throw new RangeError(`durability must be one of ${DURABILITIES.join(", ")}, got ${d}`);
  }
}

export function resolveSettings(
  opts: ClientOptions = {},
  env: Record<string, string | undefined> = process.env,
): Settings {
  const socket = opts.socket || env[ENV_SOCKET] || null;
  const url = (opts.url || env[ENV_URL] || (socket ? SOCKET_URL : DEFAULT_URL)).replace(/\/+$/, "");
  const codec = opts.codec ?? "msgpack";
  if (codec !== "msgpack" && codec !== "json") {
    throw new RangeError(`codec must be "msgpack" or "json", got ${String(codec)}`);
  }
  checkDurability(opts.durability);
  const maxRetries = opts.maxRetries ?? 3;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const backoffBaseMs = opts.backoffBaseMs ?? 50;
  const backoffMaxMs = opts.backoffMaxMs ?? 2_000;
  if (!Number.isInteger(maxRetries) || maxRetries < 0) {
    throw new RangeError("maxRetries must be an integer >= 0");
  }
  if (!(timeoutMs > 0) || backoffBaseMs < 0 || backoffMaxMs < backoffBaseMs) {
    throw new RangeError("timeoutMs must be > 0 and 0 <= backoffBaseMs <= backoffMaxMs");
  }
  new URL(url); // throws on a malformed URL, naming it
  return {
    url,
    token: opts.token || env[ENV_TOKEN] || null,
    socket,
    codec,
    durability: opts.durability ?? null,
    maxRetries,
    timeoutMs,
    backoffBaseMs,
    backoffMaxMs,
  };
}
