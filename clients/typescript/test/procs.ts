/**
 * The real `agentstate` binary (built by `cargo build`, `target/debug`) and a real
 * MongoDB-wire server (`MONGODB_URI`, else SecantusDB from `.venv-test`, installed at the
 * pin in tests/secantusdb.txt) as child processes, killed when the tests end.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { Client } from "../src/index.js";

export const ROOT = resolve(import.meta.dirname, "../../..");

export function binary(): string {
  const target = process.env.CARGO_TARGET_DIR ?? join(ROOT, "target");
  for (const profile of ["debug", "release"]) {
    const bin = join(target, profile, "agentstate");
    if (existsSync(bin)) return bin;
  }
  throw new Error("no agentstate binary: run `cargo build -p agentstate` first");
}

export async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Sidecar {
  readonly dataDir: string;
  readonly url: string;
  private child: ChildProcess | null = null;

  private constructor(
    readonly port: number,
    readonly args: string[],
    dataDir?: string,
  ) {
    this.dataDir = dataDir ?? mkdtempSync(join(tmpdir(), "agentstate-ts-"));
    this.url = `http://127.0.0.1:${port}`;
  }

  static async start(args: string[] = [], dataDir?: string): Promise<Sidecar> {
    return Sidecar.startOn(await freePort(), args, dataDir);
  }

  static async startOn(port: number, args: string[] = [], dataDir?: string): Promise<Sidecar> {
    const s = new Sidecar(port, args, dataDir);
    await s.spawn();
    return s;
  }

  get logPath(): string {
    return `${this.dataDir}.log`;
  }

  async spawn(): Promise<void> {
    const log = openSync(this.logPath, "a");
    this.child = spawn(
      binary(),
      ["serve", "--listen", `127.0.0.1:${this.port}`, "--data-dir", this.dataDir, ...this.args],
      { stdio: ["ignore", log, log], env: { ...process.env, RUST_LOG: "info" } },
    );
    const client = new Client({ url: this.url, maxRetries: 0 });
    const deadline = Date.now() + 30_000;
    try {
      while (!(await client.ready())) {
        if (this.child.exitCode !== null) {
          throw new Error(`sidecar exited with ${this.child.exitCode}; log:\n${this.log()}`);
        }
        if (Date.now() > deadline)
          throw new Error(`sidecar not ready after 30 s; log:\n${this.log()}`);
        await sleep(20);
      }
    } finally {
      await client.close();
    }
  }

  log(): string {
    return existsSync(this.logPath) ? readFileSync(this.logPath, "utf8") : "";
  }

  /** `kill -9`: nothing flushed or synced on the way out. */
  async kill9(): Promise<void> {
    const c = this.child;
    this.child = null;
    if (c === null || c.exitCode !== null) return;
    const gone = new Promise((r) => c.once("exit", r));
    c.kill("SIGKILL");
    await gone;
  }

  async restart(): Promise<void> {
    await this.kill9();
    await this.spawn();
  }
}

/** The SecantusDB requirement every harness pins. */
function secantusRequirement(): string {
  const line = readFileSync(join(ROOT, "tests/secantusdb.txt"), "utf8")
    .split("\n")
    .map((l) => l.trim())
    .find((l) => l && !l.startsWith("#"));
  if (!line) throw new Error("no requirement in tests/secantusdb.txt");
  return line;
}

function secantusd(): string {
  const venv = join(ROOT, ".venv-test");
  const bin = join(venv, "bin", "secantusd-py");
  if (!existsSync(bin)) {
    mkdirSync(venv, { recursive: true });
    const ok =
      spawnSync("python3", ["-m", "venv", venv], { stdio: "inherit" }).status === 0 &&
      spawnSync(
        join(venv, "bin", "pip"),
        ["install", "--quiet", "--disable-pip-version-check", secantusRequirement()],
        { stdio: "inherit" },
      ).status === 0;
    if (!ok || !existsSync(bin)) {
      throw new Error(
        `Mongo-backed tests need a MongoDB-wire server: set MONGODB_URI, or install SecantusDB: python3 -m venv .venv-test && .venv-test/bin/pip install '${secantusRequirement()}'`,
      );
    }
  }
  return bin;
}

/** `MONGODB_URI`, else a SecantusDB started here. */
export class Mongo {
  private child: ChildProcess | null = null;
  private constructor(readonly uri: string) {}

  static async start(): Promise<Mongo> {
    const uri = process.env.MONGODB_URI;
    if (uri) return new Mongo(uri);
    const port = await freePort();
    const storage = mkdtempSync(join(tmpdir(), "agentstate-ts-secantus-"));
    const m = new Mongo(`mongodb://127.0.0.1:${port}/?directConnection=true`);
    m.child = spawn(
      secantusd(),
      [
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--storage-path",
        storage,
        "--log-level",
        "WARNING",
      ],
      { stdio: ["ignore", "ignore", openSync(`${storage}.log`, "a")] },
    );
    const deadline = Date.now() + 60_000;
    while (!(await connects(port))) {
      if (m.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(
          `SecantusDB did not listen on ${port}: ${readFileSync(`${storage}.log`, "utf8").slice(-2000)}`,
        );
      }
      await sleep(50);
    }
    return m;
  }

  /** Flags pointing a sidecar at this server, with a database of its own. */
  sidecarArgs(): string[] {
    return [
      "--mongodb-uri",
      this.uri,
      "--database",
      `agentstate_ts_${crypto.randomUUID().slice(0, 12).replace(/-/g, "")}`,
    ];
  }

  async stop(): Promise<void> {
    const c = this.child;
    this.child = null;
    if (c !== null && c.exitCode === null) {
      const gone = new Promise((r) => c.once("exit", r));
      c.kill("SIGKILL");
      await gone;
    }
  }
}

async function connects(port: number): Promise<boolean> {
  const { connect } = await import("node:net");
  return new Promise((ok) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      ok(true);
    });
    s.once("error", () => ok(false));
  });
}

/** A sidecar on `backend` (MongoDB: `MONGODB_URI`, else a SecantusDB of its own). */
export class Backend {
  private constructor(
    readonly sidecar: Sidecar,
    private readonly mongo: Mongo | null,
  ) {}

  static async start(backend: "sqlite" | "mongo"): Promise<Backend> {
    const mongo = backend === "mongo" ? await Mongo.start() : null;
    return new Backend(await Sidecar.start(mongo?.sidecarArgs() ?? []), mongo);
  }

  async stop(): Promise<void> {
    await this.sidecar.kill9();
    await this.mongo?.stop();
  }
}
