/** The client and its types cannot drift from the sidecar's OpenAPI description. */
import { readFileSync } from "node:fs";
import { join } from "node:path";

import { describe, expect, it } from "vitest";

import { generate } from "../scripts/openapi-types.mjs";
import { BROWSER_ONLY, OPERATIONS } from "../src/index.js";
import { ROOT } from "./procs.js";

const spec = JSON.parse(readFileSync(join(ROOT, "sidecar/openapi.json"), "utf8")) as {
  paths: Record<string, Record<string, { operationId?: string }>>;
};

describe("the OpenAPI description", () => {
  it("generates src/openapi.ts as committed", async () => {
    const committed = readFileSync(join(import.meta.dirname, "../src/openapi.ts"), "utf8");
    expect(await generate()).toBe(committed);
  });

  it("has exactly the client's operations, at the same methods and paths", () => {
    const described: Record<string, [string, string]> = {};
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (!["get", "put", "post", "delete", "patch"].includes(method)) continue;
        expect(op.operationId, `${method} ${path} has an operationId`).toBeTruthy();
        described[op.operationId as string] = [method.toUpperCase(), path];
      }
    }
    for (const id of BROWSER_ONLY) delete described[id];
    expect(Object.fromEntries(Object.entries(OPERATIONS).map(([k, v]) => [k, [...v]]))).toEqual(
      described,
    );
  });
});
