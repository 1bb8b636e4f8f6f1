/**
 * LangGraph.js's own checkpointer validation suite (`@langchain/langgraph-checkpoint-validation`)
 * against `AgentstateSaver` on the real sidecar, on both backends. The suite reuses
 * thread ids across checkpointers, so each checkpointer gets a sidecar of its own (a
 * fresh data dir; on MongoDB a fresh database).
 */
import {
  type CheckpointSaverTestInitializer,
  validate,
} from "@langchain/langgraph-checkpoint-validation";

import { AgentstateSaver } from "../src/langgraph.js";
import { Mongo, Sidecar } from "./procs.js";

const sidecars = new Map<AgentstateSaver, Sidecar>();

function initializer(backend: "sqlite" | "mongo"): CheckpointSaverTestInitializer<AgentstateSaver> {
  let mongo: Mongo | null = null;
  return {
    checkpointerName: `AgentstateSaver[${backend}]`,
    beforeAllTimeout: 120_000,
    async beforeAll() {
      if (backend === "mongo") mongo = await Mongo.start();
    },
    async afterAll() {
      await mongo?.stop();
    },
    async createCheckpointer() {
      const sidecar = await Sidecar.start(mongo ? mongo.sidecarArgs() : []);
      const saver = new AgentstateSaver({ url: sidecar.url });
      sidecars.set(saver, sidecar);
      return saver;
    },
    async destroyCheckpointer(saver) {
      await saver.close();
      await sidecars.get(saver)?.kill9();
      sidecars.delete(saver);
    },
  };
}

validate(initializer("sqlite"));
validate(initializer("mongo"));
