// The API's TypeScript types, generated from the sidecar's OpenAPI description:
// `node scripts/openapi-types.mjs` writes src/openapi.ts; `--check` fails if it differs
// (run by the tests, so the two cannot drift).
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

import openapiTS, { astToString } from "openapi-typescript";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));

export async function generate() {
  const spec = JSON.parse(readFileSync(here("../../../sidecar/openapi.json"), "utf8"));
  const ast = await openapiTS(spec, { alphabetize: false });
  const header =
    "// Generated from sidecar/openapi.json by scripts/openapi-types.mjs: do not edit.\n";
  // `Document` (any storable value) refers to itself through `Metadata`, which TypeScript
  // cannot express as an indexed access type: it is `unknown` here.
  return (
    header +
    astToString(ast).replace(
      /^(\s*)Document: .*;$/m,
      (_line, indent) => `${indent}Document: unknown;`,
    )
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const text = await generate();
  const target = here("../src/openapi.ts");
  if (process.argv.includes("--check")) {
    if (readFileSync(target, "utf8") !== text) {
      console.error("src/openapi.ts is out of date: run node scripts/openapi-types.mjs");
      process.exit(1);
    }
  } else {
    writeFileSync(target, text);
  }
}
