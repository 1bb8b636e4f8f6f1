import { afterAll, beforeAll } from "vitest";

import { AgentstateSaver } from "../src/langgraph.js";
import { Backend, type Sidecar } from "./procs.js";

/** What {@link sidecarAndSaver} holds for a block's tests. */
export interface SidecarAndSaver {
  sidecar: Sidecar;
  saver: AgentstateSaver;
}

/**
 * A sidecar on `backend` and a saver on it, started before the enclosing block's tests
 * and stopped after them.
 */
export function sidecarAndSaver(backend: "sqlite" | "mongo"): SidecarAndSaver {
  const held = {} as SidecarAndSaver;
  let running: Backend | undefined;
  beforeAll(async () => {
    running = await Backend.start(backend);
    held.sidecar = running.sidecar;
    held.saver = new AgentstateSaver({ url: running.sidecar.url });
  });
  afterAll(async () => {
    await held.saver?.close();
    await running?.stop();
  });
  return held;
}
