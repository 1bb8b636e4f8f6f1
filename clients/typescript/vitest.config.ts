import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // LangGraph.js's checkpointer validation suite uses the globals (describe, it...).
    globals: true,
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // One file at a time: each starts real sidecars, and the machine may have 2 cores.
    fileParallelism: false,
  },
});
