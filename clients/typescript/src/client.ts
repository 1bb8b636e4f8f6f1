/**
 * The agentstate client: one method per operation of the sidecar's HTTP API
 * (`sidecar/openapi.json`; request and answer types are generated from it, in
 * `openapi.ts`). Bodies are MessagePack by default, JSON on request.
 *
 * Retried: failures to connect (the server cannot have acted), broken connections of
 * calls safe to repeat, and 503 `unavailable`, except a `remote` write that is not
 * idempotent (its 503 can mean "in the WAL, the backend did not confirm in time").
 * Never retried: any other 4xx, 409 and 422 above all. Waits are jittered exponential
 * backoff, at least the server's `Retry-After`.
 */
import {
  type ClientOptions,
  checkDurability,
  type Durability,
  RETRY_WAIT_MAX_MS,
  resolveSettings,
  type Settings,
} from "./config.js";
import { type AgentstateError, errorFromResponse, NotFound, Unavailable } from "./errors.js";
import type { components } from "./openapi.js";
import { type Reply, Transport, TransportError } from "./transport.js";

export type Schemas = components["schemas"];
export type PersistedState = Schemas["PersistedState"];
export type ThreadCheckpointTuple = Schemas["ThreadCheckpointTuple"];
export type Typed = Schemas["Typed"];

/** Largest page the sidecar serves. */
export const PAGE_LIMIT_MAX = 1000;

/**
 * Every operation of the API, as `[method, path]` (the OpenAPI description's, checked by
 * a test in both directions), by its `operationId`.
 */
export const OPERATIONS = {
  healthz: ["GET", "/healthz"],
  readyz: ["GET", "/readyz"],
  metrics: ["GET", "/metrics"],
  status: ["GET", "/v1/status"],
  usage: ["GET", "/v1/usage"],
  openapi: ["GET", "/v1/openapi.json"],
  getAgent: ["GET", "/v1/agents/{id}"],
  putAgent: ["PUT", "/v1/agents/{id}"],
  deleteAgent: ["DELETE", "/v1/agents/{id}"],
  postTransition: ["POST", "/v1/agents/{id}/transitions"],
  listTransitions: ["GET", "/v1/agents/{id}/transitions"],
  beginTransition: ["POST", "/v1/agents/{id}/transitions/begin"],
  completeTransition: ["POST", "/v1/agents/{id}/transitions/{tid}/complete"],
  abortTransition: ["POST", "/v1/agents/{id}/transitions/{tid}/abort"],
  appendMessages: ["POST", "/v1/agents/{id}/messages"],
  listMessages: ["GET", "/v1/agents/{id}/messages"],
  clearMessages: ["DELETE", "/v1/agents/{id}/messages"],
  popMessage: ["DELETE", "/v1/agents/{id}/messages/last"],
  takeCheckpoint: ["POST", "/v1/agents/{id}/checkpoints"],
  listCheckpoints: ["GET", "/v1/agents/{id}/checkpoints"],
  rollback: ["POST", "/v1/agents/{id}/rollback"],
  replay: ["POST", "/v1/agents/{id}/replay"],
  transfer: ["POST", "/v1/transfers"],
  listTransfers: ["GET", "/v1/transfers"],
  getTransfer: ["GET", "/v1/transfers/{id}"],
  batch: ["POST", "/v1/batch"],
  deleteThread: ["DELETE", "/v1/threads/{id}"],
  putThreadCheckpoint: ["POST", "/v1/threads/{id}/checkpoints"],
  putThreadWrites: ["POST", "/v1/threads/{id}/writes"],
  getThreadCheckpoint: ["GET", "/v1/threads/{id}/checkpoint"],
  copyThread: ["POST", "/v1/threads/{id}/copy"],
  deltaHistory: ["POST", "/v1/threads/{id}/delta_history"],
  searchCheckpoints: ["POST", "/v1/checkpoints/search"],
  pruneCheckpoints: ["POST", "/v1/checkpoints/prune"],
  deleteForRuns: ["POST", "/v1/checkpoints/delete_for_runs"],
  listAgents: ["GET", "/v1/agents"],
  listThreads: ["GET", "/v1/threads"],
  timeline: ["GET", "/v1/agents/{id}/timeline"],
  threadHistory: ["GET", "/v1/threads/{id}/history"],
  threadView: ["GET", "/v1/threads/{id}/view"],
  inspectorInfo: ["GET", "/v1/inspector"],
  inspectorRollback: ["POST", "/v1/inspector/agents/{id}/rollback"],
  inspectorAbort: ["POST", "/v1/inspector/agents/{id}/transitions/{tid}/abort"],
  inspectorFork: ["POST", "/v1/inspector/threads/{id}/fork"],
} as const;

export type OperationId = keyof typeof OPERATIONS;

/** Served to browsers, not to programs: the inspector's page and its files. */
export const BROWSER_ONLY = ["inspectorPage", "inspectorScript", "inspectorStyle"] as const;

/** Options of a write. */
export interface WriteOptions {
  /** Durability of this write; default the client's, then the sidecar's (`local`). */
  durability?: Durability;
}

/** Options of a write to an agent that may carry a version precondition. */
export interface VersionedWriteOptions extends WriteOptions {
  /** Apply only if the agent is at this version (else `VersionConflict`). */
  ifMatch?: number;
}

interface Call {
  op: OperationId;
  ids?: Record<string, string>;
  query?: Record<string, string | undefined | null>;
  body?: unknown;
  headers?: Record<string, string>;
  /** Changes state: takes `?durability=`. */
  mutating?: boolean;
  /** Safe to repeat after it may have reached the server. */
  idempotent?: boolean;
  durability?: Durability;
  /** Statuses besides 2xx handed back rather than raised. */
  okStatuses?: number[];
}

const ID = /^[A-Za-z0-9\-_.:]+$/;

/** One path segment: id characters as they are (the server does not percent-decode). */
function segment(value: string): string {
  return ID.test(value) ? value : encodeURIComponent(value).replace(/%3A/gi, ":");
}

function preconditions(ifMatch?: number, ifNoneMatch?: boolean): Record<string, string> {
  if (ifMatch !== undefined && ifNoneMatch) {
    throw new RangeError("ifMatch and ifNoneMatch exclude each other");
  }
  if (ifMatch !== undefined) return { "if-match": `"${Math.trunc(ifMatch)}"` };
  if (ifNoneMatch) return { "if-none-match": "*" };
  return {};
}

function checkLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1 || limit > PAGE_LIMIT_MAX) {
    throw new RangeError(`limit must be within 1..${PAGE_LIMIT_MAX}`);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Client {
  readonly settings: Settings;
  private readonly transport: Transport;

  constructor(options: ClientOptions = {}) {
    this.settings = resolveSettings(options);
    this.transport = new Transport(this.settings);
  }

  /** Closes the client's connections. */
  async close(): Promise<void> {
    await this.transport.close();
  }

  // --- the machinery ---------------------------------------------------------------

  private target(call: Call): string {
    const [, template] = OPERATIONS[call.op];
    let path: string = template;
    for (const [k, v] of Object.entries(call.ids ?? {})) {
      path = path.replace(`{${k}}`, segment(v));
    }
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(call.query ?? {})) {
      if (v !== undefined && v !== null) query.set(k, v);
    }
    if (call.mutating) {
      checkDurability(call.durability);
      const d = call.durability ?? this.settings.durability;
      if (d) query.set("durability", d);
    }
    const q = query.toString();
    return q ? `${path}?${q}` : path;
  }

  private async send(call: Call): Promise<Reply> {
    const [method] = OPERATIONS[call.op];
    const target = this.target(call);
    const durability = call.durability ?? this.settings.durability;
    const idempotent = call.idempotent ?? !call.mutating;
    for (let attempt = 0; ; attempt++) {
      let error: AgentstateError;
      try {
        const reply = await this.transport.exchange(method, target, call.headers ?? {}, call.body);
        if (
          (reply.status >= 200 && reply.status < 300) ||
          call.okStatuses?.includes(reply.status)
        ) {
          return reply;
        }
        error = errorFromResponse(reply.status, reply.body, reply.headers["retry-after"]);
        const retriable =
          error instanceof Unavailable &&
          (idempotent || !(call.mutating && durability === "remote"));
        if (!retriable || attempt >= this.settings.maxRetries) throw error;
      } catch (e) {
        if (!(e instanceof TransportError)) throw e;
        if (e.sent && !idempotent) throw e;
        if (attempt >= this.settings.maxRetries) throw e;
        error = e;
      }
      await sleep(this.wait(attempt, error instanceof Unavailable ? error.retryAfter : null));
    }
  }

  private wait(attempt: number, retryAfterS: number | null): number {
    const s = this.settings;
    const ceiling = Math.min(s.backoffMaxMs, s.backoffBaseMs * 2 ** attempt);
    let ms = Math.random() * ceiling;
    if (retryAfterS !== null) ms = Math.max(ms, retryAfterS * 1000);
    return Math.min(ms, RETRY_WAIT_MAX_MS);
  }

  private async json<T>(call: Call): Promise<T> {
    return (await this.send(call)).body as T;
  }

  private write(
    op: OperationId,
    ids: Record<string, string>,
    body: unknown,
    opts: VersionedWriteOptions & { idempotent?: boolean; ifNoneMatch?: boolean } = {},
  ): Call {
    return {
      op,
      ids,
      body,
      headers: preconditions(opts.ifMatch, opts.ifNoneMatch),
      mutating: true,
      idempotent: opts.idempotent ?? false,
      durability: opts.durability,
    };
  }

  // --- operations ------------------------------------------------------------------

  /** Whether the sidecar is up. */
  async health(): Promise<boolean> {
    return (await this.send({ op: "healthz" })).status === 200;
  }

  /** Whether the sidecar is ready (WAL replayed); false while it is not. */
  async ready(): Promise<boolean> {
    try {
      return (await this.send({ op: "readyz", okStatuses: [503] })).status === 200;
    } catch (e) {
      if (e instanceof TransportError) return false;
      throw e;
    }
  }

  async status(): Promise<Schemas["StatusResponse"]> {
    return this.json({ op: "status" });
  }

  async usage(top = 10): Promise<Schemas["UsageResponse"]> {
    return this.json({ op: "usage", query: { top: String(top) } });
  }

  /** Prometheus text. */
  async metrics(): Promise<string> {
    return String((await this.send({ op: "metrics" })).body ?? "");
  }

  /** The sidecar's OpenAPI description. */
  async openapi(): Promise<Record<string, unknown>> {
    return this.json({ op: "openapi" });
  }

  // --- agents ----------------------------------------------------------------------

  /** The agent's state, or `null` if there is none. */
  async getAgent(agentId: string): Promise<PersistedState | null> {
    try {
      return await this.json({ op: "getAgent", ids: { id: agentId } });
    } catch (e) {
      if (e instanceof NotFound) return null;
      throw e;
    }
  }

  /** Saves the agent's state; returns its new version. */
  async saveAgent(
    agentId: string,
    state: Schemas["SaveStateRequest"],
    opts: VersionedWriteOptions & { ifNoneMatch?: boolean } = {},
  ): Promise<number> {
    // Without a precondition a repeat saves the same state again: safe to retry.
    const idempotent = opts.ifMatch === undefined && !opts.ifNoneMatch;
    const r = await this.json<Schemas["VersionResponse"]>(
      this.write("putAgent", { id: agentId }, state, { ...opts, idempotent }),
    );
    return r.version;
  }

  async deleteAgent(agentId: string, opts: VersionedWriteOptions = {}): Promise<void> {
    await this.send(
      this.write("deleteAgent", { id: agentId }, undefined, {
        ...opts,
        idempotent: opts.ifMatch === undefined,
      }),
    );
  }

  async transition(
    agentId: string,
    request: Schemas["TransitionRequest"],
    opts: VersionedWriteOptions = {},
  ): Promise<Schemas["TransitionResponse"]> {
    return this.json(this.write("postTransition", { id: agentId }, request, opts));
  }

  async beginTransition(
    agentId: string,
    request: Schemas["TransitionRequest"],
    opts: VersionedWriteOptions = {},
  ): Promise<Schemas["BeginTransitionResponse"]> {
    return this.json(this.write("beginTransition", { id: agentId }, request, opts));
  }

  async completeTransition(
    agentId: string,
    transitionId: string,
    request: Schemas["CompleteTransitionRequest"] = {},
    opts: VersionedWriteOptions = {},
  ): Promise<Schemas["TransitionResponse"]> {
    return this.json(
      this.write("completeTransition", { id: agentId, tid: transitionId }, request, opts),
    );
  }

  async abortTransition(
    agentId: string,
    transitionId: string,
    request: Schemas["AbortTransitionRequest"] = {},
    opts: VersionedWriteOptions = {},
  ): Promise<Schemas["TransitionResponse"]> {
    return this.json(
      this.write("abortTransition", { id: agentId, tid: transitionId }, request, opts),
    );
  }

  async listTransitions(
    agentId: string,
    after = 0,
    limit = 100,
  ): Promise<Schemas["StateTransition"][]> {
    checkLimit(limit);
    const page = await this.json<Schemas["TransitionsPage"]>({
      op: "listTransitions",
      ids: { id: agentId },
      query: { after: String(after), limit: String(limit) },
    });
    return page.transitions;
  }

  // --- messages --------------------------------------------------------------------

  async appendMessages(
    agentId: string,
    messages: Schemas["NewMessage"][],
    opts: VersionedWriteOptions = {},
  ): Promise<Schemas["AppendMessagesResponse"]> {
    return this.json(this.write("appendMessages", { id: agentId }, { messages }, opts));
  }

  /** Messages with `seq > after`, oldest first. */
  async listMessages(agentId: string, after = 0, limit = 100): Promise<Schemas["Message"][]> {
    checkLimit(limit);
    const page = await this.json<Schemas["MessagesPage"]>({
      op: "listMessages",
      ids: { id: agentId },
      query: { after: String(after), limit: String(limit) },
    });
    return page.messages;
  }

  /** The last `n` messages, oldest first. */
  async lastMessages(agentId: string, n: number): Promise<Schemas["Message"][]> {
    checkLimit(n);
    const page = await this.json<Schemas["MessagesPage"]>({
      op: "listMessages",
      ids: { id: agentId },
      query: { last: String(n) },
    });
    return page.messages;
  }

  async popMessage(
    agentId: string,
    opts: VersionedWriteOptions = {},
  ): Promise<Schemas["PopMessageResponse"]> {
    return this.json(this.write("popMessage", { id: agentId }, undefined, opts));
  }

  /** Removes the whole conversation; returns the agent's new version. */
  async clearMessages(agentId: string, opts: VersionedWriteOptions = {}): Promise<number> {
    const r = await this.json<Schemas["VersionResponse"]>(
      this.write("clearMessages", { id: agentId }, undefined, {
        ...opts,
        idempotent: opts.ifMatch === undefined,
      }),
    );
    return r.version;
  }

  // --- checkpoints, rollback, replay -------------------------------------------------

  async takeCheckpoint(
    agentId: string,
    request: Schemas["CheckpointRequest"] = {},
    opts: WriteOptions = {},
  ): Promise<Schemas["CheckpointResponse"]> {
    return this.json(this.write("takeCheckpoint", { id: agentId }, request, opts));
  }

  async listCheckpoints(agentId: string): Promise<Schemas["Checkpoint"][]> {
    const page = await this.json<Schemas["CheckpointsPage"]>({
      op: "listCheckpoints",
      ids: { id: agentId },
    });
    return page.checkpoints;
  }

  async rollback(
    agentId: string,
    checkpointId: string,
    opts: VersionedWriteOptions = {},
  ): Promise<Schemas["TransitionResponse"]> {
    return this.json(
      this.write("rollback", { id: agentId }, { checkpoint_id: checkpointId }, opts),
    );
  }

  async replay(
    agentId: string,
    request: Schemas["ReplayRequest"],
    opts: VersionedWriteOptions = {},
  ): Promise<Schemas["ReplayResponse"]> {
    return this.json(
      this.write("replay", { id: agentId }, request, { ...opts, idempotent: !request.apply }),
    );
  }

  // --- transfers and batches ---------------------------------------------------------

  /** Hands a conversation over; the same `transfer_id` again returns the first result. */
  async transfer(
    request: Schemas["TransferRequest"],
    opts: WriteOptions = {},
  ): Promise<Schemas["Transfer"]> {
    return this.json(this.write("transfer", {}, request, { ...opts, idempotent: true }));
  }

  async getTransfer(transferId: string): Promise<Schemas["Transfer"]> {
    return this.json({ op: "getTransfer", ids: { id: transferId } });
  }

  async listTransfers(
    query: { agent?: string; cursor?: string; limit?: number } = {},
  ): Promise<Schemas["TransfersPage"]> {
    checkLimit(query.limit ?? 100);
    return this.json({
      op: "listTransfers",
      query: {
        agent: query.agent || undefined,
        cursor: query.cursor || undefined,
        limit: String(query.limit ?? 100),
      },
    });
  }

  /** Several operations on several agents, all or nothing. */
  async batch(
    operations: Schemas["BatchOperation"][],
    opts: WriteOptions = {},
  ): Promise<Schemas["BatchResponse"]> {
    return this.json(this.write("batch", {}, { operations }, opts));
  }

  // --- threads (framework checkpoints) -----------------------------------------------

  async putThreadCheckpoint(
    threadId: string,
    request: Schemas["PutThreadCheckpointRequest"],
    opts: WriteOptions = {},
  ): Promise<Schemas["PutThreadCheckpointResponse"]> {
    return this.json(
      this.write("putThreadCheckpoint", { id: threadId }, request, { ...opts, idempotent: true }),
    );
  }

  /** Pending writes of a task; returns the thread's version. */
  async putThreadWrites(
    threadId: string,
    request: Schemas["PutThreadWritesRequest"],
    opts: WriteOptions = {},
  ): Promise<number> {
    const r = await this.json<Schemas["VersionResponse"]>(
      this.write("putThreadWrites", { id: threadId }, request, { ...opts, idempotent: true }),
    );
    return r.version;
  }

  /** A checkpoint (the latest of the namespace without `checkpointId`), or `null`. */
  async getThreadCheckpoint(
    threadId: string,
    checkpointNs = "",
    checkpointId?: string,
  ): Promise<ThreadCheckpointTuple | null> {
    try {
      return await this.json({
        op: "getThreadCheckpoint",
        ids: { id: threadId },
        query: { checkpoint_ns: checkpointNs, checkpoint_id: checkpointId || undefined },
      });
    } catch (e) {
      if (e instanceof NotFound) return null;
      throw e;
    }
  }

  async searchCheckpoints(
    request: Schemas["SearchCheckpointsRequest"],
  ): Promise<ThreadCheckpointTuple[]> {
    if (request.limit != null) checkLimit(request.limit);
    const page = await this.json<Schemas["ThreadCheckpointsPage"]>({
      op: "searchCheckpoints",
      body: request,
    });
    return page.checkpoints;
  }

  async deleteThread(threadId: string, opts: WriteOptions = {}): Promise<void> {
    await this.send(
      this.write("deleteThread", { id: threadId }, undefined, { ...opts, idempotent: true }),
    );
  }

  async copyThread(
    sourceThreadId: string,
    targetThreadId: string,
    opts: WriteOptions = {},
  ): Promise<number> {
    const r = await this.json<Schemas["CopyThreadResponse"]>(
      this.write(
        "copyThread",
        { id: sourceThreadId },
        { target_thread_id: targetThreadId },
        { ...opts, idempotent: true },
      ),
    );
    return r.checkpoints_copied;
  }

  async pruneCheckpoints(
    threadIds: string[],
    strategy: "keep_latest" | "delete" = "keep_latest",
    opts: WriteOptions = {},
  ): Promise<number> {
    const r = await this.json<Schemas["CheckpointsDeletedResponse"]>(
      this.write(
        "pruneCheckpoints",
        {},
        { thread_ids: threadIds, strategy },
        { ...opts, idempotent: true },
      ),
    );
    return r.checkpoints_deleted;
  }

  async deleteForRuns(runIds: string[], opts: WriteOptions = {}): Promise<number> {
    const r = await this.json<Schemas["CheckpointsDeletedResponse"]>(
      this.write("deleteForRuns", {}, { run_ids: runIds }, { ...opts, idempotent: true }),
    );
    return r.checkpoints_deleted;
  }

  async deltaHistory(
    threadId: string,
    request: Schemas["DeltaHistoryRequest"],
  ): Promise<Schemas["DeltaHistoryResponse"]> {
    return this.json({ op: "deltaHistory", ids: { id: threadId }, body: request });
  }

  // --- listings and the inspector ----------------------------------------------------

  async listAgents(
    query: {
      prefix?: string;
      state?: string;
      type?: string;
      updatedAfter?: Date;
      failed?: boolean;
      cursor?: string;
      limit?: number;
    } = {},
  ): Promise<Schemas["AgentsPage"]> {
    checkLimit(query.limit ?? 100);
    return this.json({
      op: "listAgents",
      query: {
        prefix: query.prefix || undefined,
        state: query.state || undefined,
        type: query.type || undefined,
        updated_after: query.updatedAfter?.toISOString(),
        failed: query.failed ? "true" : undefined,
        cursor: query.cursor || undefined,
        limit: String(query.limit ?? 100),
      },
    });
  }

  async listThreads(
    query: { prefix?: string; cursor?: string; limit?: number } = {},
  ): Promise<Schemas["ThreadsPage"]> {
    checkLimit(query.limit ?? 100);
    return this.json({
      op: "listThreads",
      query: {
        prefix: query.prefix || undefined,
        cursor: query.cursor || undefined,
        limit: String(query.limit ?? 100),
      },
    });
  }

  async timeline(
    agentId: string,
    query: { cursor?: string; limit?: number } = {},
  ): Promise<Schemas["TimelinePage"]> {
    checkLimit(query.limit ?? 100);
    return this.json({
      op: "timeline",
      ids: { id: agentId },
      query: { cursor: query.cursor || undefined, limit: String(query.limit ?? 100) },
    });
  }

  async threadHistory(
    threadId: string,
    query: { checkpointNs?: string; cursor?: string; limit?: number } = {},
  ): Promise<Schemas["ThreadHistoryPage"]> {
    checkLimit(query.limit ?? 100);
    return this.json({
      op: "threadHistory",
      ids: { id: threadId },
      query: {
        checkpoint_ns: query.checkpointNs ?? "",
        cursor: query.cursor || undefined,
        limit: String(query.limit ?? 100),
      },
    });
  }

  async threadView(
    threadId: string,
    checkpointNs = "",
    checkpointId?: string,
  ): Promise<Schemas["ThreadView"]> {
    return this.json({
      op: "threadView",
      ids: { id: threadId },
      query: { checkpoint_ns: checkpointNs, checkpoint_id: checkpointId || undefined },
    });
  }

  async inspectorInfo(): Promise<Schemas["InspectorInfo"]> {
    return this.json({ op: "inspectorInfo" });
  }

  async inspectorRollback(
    agentId: string,
    request: Schemas["InspectorRollbackRequest"],
  ): Promise<Schemas["TransitionResponse"]> {
    return this.json(this.write("inspectorRollback", { id: agentId }, request));
  }

  async inspectorAbort(
    agentId: string,
    transitionId: string,
    request: Schemas["InspectorAbortRequest"],
  ): Promise<Schemas["TransitionResponse"]> {
    return this.json(this.write("inspectorAbort", { id: agentId, tid: transitionId }, request));
  }

  async inspectorFork(
    threadId: string,
    request: Schemas["InspectorForkRequest"],
  ): Promise<Schemas["PutThreadCheckpointResponse"]> {
    return this.json(this.write("inspectorFork", { id: threadId }, request));
  }
}
