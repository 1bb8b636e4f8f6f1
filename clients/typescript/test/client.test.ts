/** The client against the real sidecar (embedded store): calls, typed errors, retries, settings. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorFromResponse } from "../src/errors.js";
import {
  Client,
  ConnectionFailed,
  Malformed,
  NotFound,
  resolveSettings,
  Unauthorized,
  Unavailable,
  ValidationFailed,
  VersionConflict,
} from "../src/index.js";
import { freePort, ROOT, Sidecar } from "./procs.js";

let sidecar: Sidecar;
let socketPath: string;
const clients: Client[] = [];

function client(opts: ConstructorParameters<typeof Client>[0] = {}): Client {
  const c = new Client({ url: sidecar.url, ...opts });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  socketPath = join(mkdtempSync(join(tmpdir(), "agentstate-ts-sock-")), "agentstate.sock");
  sidecar = await Sidecar.start([
    "--config",
    join(ROOT, "protocol/examples/agent-types.toml"),
    "--unix-socket",
    socketPath,
  ]);
});

afterAll(async () => {
  for (const c of clients) await c.close();
  await sidecar?.kill9();
});

describe.each(["msgpack", "json"] as const)("the client over %s", (codec) => {
  it("saves, reads, transitions and appends", async () => {
    const c = client({ codec });
    const id = `ts-${codec}-a`;
    expect(await c.getAgent(id)).toBeNull();
    const v1 = await c.saveAgent(id, {
      agent_type: "greeter",
      state_name: "idle",
      state_data: { n: 1 },
    });
    expect(v1).toBe(1);
    const got = await c.getAgent(id);
    expect(got?.state_name).toBe("idle");
    expect(got?.state_data).toEqual({ n: 1 });
    const t = await c.transition(
      id,
      { to_state: "greeting", trigger: "user_message", state_data: { user_name: "Ada" } },
      { ifMatch: 1 },
    );
    expect(t.version).toBe(2);
    const appended = await c.appendMessages(id, [{ role: "user", content: "hello" }]);
    expect(appended.seqs).toEqual([1]);
    expect((await c.listMessages(id)).map((m) => m.content)).toEqual(["hello"]);
    expect((await c.listTransitions(id)).map((x) => x.trigger)).toContain("user_message");
  });

  it("raises typed errors: version conflict with the current version, validation with the rule", async () => {
    const c = client({ codec });
    const id = `ts-${codec}-b`;
    await c.saveAgent(id, { agent_type: "greeter", state_name: "idle" });
    const conflict = await c.saveAgent(id, { state_name: "idle" }, { ifMatch: 7 }).catch((e) => e);
    expect(conflict).toBeInstanceOf(VersionConflict);
    expect(conflict.currentVersion).toBe(1);
    const refused = await c
      .transition(id, { to_state: "no_such_state", trigger: "x" })
      .catch((e) => e);
    expect(refused).toBeInstanceOf(ValidationFailed);
    expect(refused.rule).toBe("unknown_state");
    const bad = await c.saveAgent("bad id/with slash", { state_name: "idle" }).catch((e) => e);
    expect(bad).toBeInstanceOf(Malformed);
    await expect(c.getTransfer("no-such-transfer")).rejects.toBeInstanceOf(NotFound);
  });

  it("writes and reads thread checkpoints with their bytes", async () => {
    const c = client({ codec });
    const bytes = new Uint8Array([0, 1, 2, 250, 255]);
    await c.putThreadCheckpoint(`ts-${codec}-thread`, {
      checkpoint_id: "c1",
      checkpoint: { type: "bytes", data: bytes as unknown as string },
      channel_versions: { ch: "1" },
      blobs: [
        { channel: "ch", version: "1", value: { type: "bytes", data: bytes as unknown as string } },
      ],
    });
    const t = await c.getThreadCheckpoint(`ts-${codec}-thread`);
    expect(t?.checkpoint_id).toBe("c1");
    const data = t?.blobs[0]?.value.data as unknown;
    expect(
      data instanceof Uint8Array ? [...data] : [...Buffer.from(String(data), "base64")],
    ).toEqual([...bytes]);
  });
});

describe("connections", () => {
  it("reaches the sidecar over its Unix socket", async () => {
    const c = new Client({ socket: socketPath });
    clients.push(c);
    expect(c.settings.url).toBe("http://agentstate");
    expect(await c.health()).toBe(true);
    expect(await c.saveAgent("ts-socket", { state_name: "idle" })).toBe(1);
  });

  it("fails with ConnectionFailed once its retries are spent", async () => {
    const c = client({
      url: `http://127.0.0.1:${await freePort()}`,
      maxRetries: 2,
      backoffBaseMs: 40,
      backoffMaxMs: 40,
    });
    await expect(c.getAgent("x")).rejects.toBeInstanceOf(ConnectionFailed);
  });

  it("retries a connection refused until the sidecar listens", async () => {
    const port = await freePort();
    const c = client({
      url: `http://127.0.0.1:${port}`,
      maxRetries: 40,
      backoffBaseMs: 100,
      backoffMaxMs: 200,
    });
    // Nothing listens on `port` at first; a sidecar is started on it while the client waits.
    const dataDir = mkdtempSync(join(tmpdir(), "agentstate-ts-late-"));
    const starting = new Promise<Sidecar>((ok) =>
      setTimeout(() => ok(Sidecar.startOn(port, [], dataDir)), 300),
    );
    const version = await c.saveAgent("ts-late", { state_name: "idle" });
    expect(version).toBe(1);
    await (await starting).kill9();
  });

  it("sends the bearer token, from the environment too", async () => {
    const dir = mkdtempSync(join(tmpdir(), "agentstate-ts-token-"));
    writeFileSync(join(dir, "token"), "ts-client-token-0123456789\n");
    const guarded = await Sidecar.start(["--auth-token-file", join(dir, "token")]);
    try {
      const anonymous = new Client({ url: guarded.url, maxRetries: 0 });
      clients.push(anonymous);
      await expect(anonymous.status()).rejects.toBeInstanceOf(Unauthorized);
      const settings = resolveSettings(
        {},
        { AGENTSTATE_URL: guarded.url, AGENTSTATE_TOKEN: "ts-client-token-0123456789" },
      );
      const fromEnv = new Client({ url: settings.url, token: settings.token ?? undefined });
      clients.push(fromEnv);
      expect((await fromEnv.status()).ready).toBe(true);
    } finally {
      await guarded.kill9();
    }
  });
});

describe("settings and errors", () => {
  it("reads AGENTSTATE_URL, AGENTSTATE_TOKEN and AGENTSTATE_SOCKET; arguments win", () => {
    const env = {
      AGENTSTATE_URL: "http://10.0.0.1:7700/",
      AGENTSTATE_TOKEN: "t",
      AGENTSTATE_SOCKET: "/run/a.sock",
    };
    const s = resolveSettings({}, env);
    expect([s.url, s.token, s.socket]).toEqual(["http://10.0.0.1:7700", "t", "/run/a.sock"]);
    expect(resolveSettings({ url: "http://127.0.0.1:1", token: "u" }, env).token).toBe("u");
    expect(resolveSettings({}, { AGENTSTATE_SOCKET: "/s" }).url).toBe("http://agentstate");
    expect(() => resolveSettings({ durability: "sometimes" as "local" }, {})).toThrow(/durability/);
  });

  it("maps the wire's error bodies to typed errors", () => {
    const e = errorFromResponse(
      503,
      { error: { code: "unavailable", message: "backlog full" } },
      "2",
    );
    expect(e).toBeInstanceOf(Unavailable);
    expect((e as Unavailable).retryAfter).toBe(2);
    expect(
      errorFromResponse(409, {
        error: { code: "version_conflict", message: "m", current_version: 4 },
      }),
    ).toMatchObject({ currentVersion: 4 });
    expect(
      errorFromResponse(422, {
        error: { code: "validation_failed", message: "schema_mismatch: /n" },
      }),
    ).toMatchObject({ rule: "schema_mismatch" });
    expect(errorFromResponse(502, "<html>bad gateway</html>").code).toBe("internal");
  });
});
