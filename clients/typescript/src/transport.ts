/** HTTP/1.1 to the sidecar over TCP or a Unix socket, on undici's pooled connections. */
import { Agent, type Dispatcher, request, errors as undiciErrors } from "undici";

import { contentType, decodeBody, encodeBody } from "./codec.js";
import type { Settings } from "./config.js";
import { ConnectionFailed } from "./errors.js";

/** Bound on connecting, whatever the request timeout (a local sidecar answers at once). */
const CONNECT_TIMEOUT_MS_MAX = 5_000;

export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

/** A failure before any answer; `sent` when the whole request may have reached the server. */
export class TransportError extends ConnectionFailed {
  readonly sent: boolean;

  constructor(message: string, sent: boolean, cause: unknown) {
    super(message, { cause });
    this.sent = sent;
  }
}

export class Transport {
  private readonly agent: Agent;

  constructor(private readonly settings: Settings) {
    const connectTimeout = Math.min(CONNECT_TIMEOUT_MS_MAX, settings.timeoutMs);
    this.agent = new Agent({
      connect: settings.socket
        ? { socketPath: settings.socket, timeout: connectTimeout }
        : { timeout: connectTimeout },
      keepAliveTimeout: 30_000,
      headersTimeout: settings.timeoutMs,
      bodyTimeout: settings.timeoutMs,
    });
  }

  async exchange(
    method: string,
    target: string,
    headers: Record<string, string>,
    body: unknown,
  ): Promise<Reply> {
    const s = this.settings;
    const all: Record<string, string> = {
      accept: contentType(s.codec),
      "user-agent": "agentstate-typescript",
      ...headers,
    };
    if (s.token) all.authorization = `Bearer ${s.token}`;
    let payload: Uint8Array | undefined;
    if (body !== undefined) {
      payload = encodeBody(s.codec, body);
      all["content-type"] = contentType(s.codec);
    }
    let res: Dispatcher.ResponseData;
    try {
      res = await request(s.url + target, {
        method: method as "GET",
        headers: all,
        body: payload,
        dispatcher: this.agent,
      });
    } catch (e) {
      throw this.failed(e);
    }
    let raw: ArrayBuffer;
    try {
      raw = await res.body.arrayBuffer();
    } catch (e) {
      throw this.failed(e, true);
    }
    const flat: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) {
      if (v != null) flat[k] = Array.isArray(v) ? v.join(", ") : String(v);
    }
    return {
      status: res.statusCode,
      headers: flat,
      body: decodeBody(flat["content-type"], new Uint8Array(raw)),
    };
  }

  private failed(e: unknown, sent?: boolean): TransportError {
    const where = this.settings.socket ? `unix socket ${this.settings.socket}` : this.settings.url;
    const code = (e as { code?: string }).code ?? "";
    // Refused or unresolved connections never carried the request.
    const notSent =
      !sent &&
      (e instanceof undiciErrors.ConnectTimeoutError ||
        ["ECONNREFUSED", "ENOENT", "ENOTFOUND", "EACCES", "EAI_AGAIN"].includes(code));
    return new TransportError(
      `cannot reach the agentstate sidecar at ${where}: ${(e as Error).message ?? String(e)}`,
      !notSent,
      e,
    );
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
