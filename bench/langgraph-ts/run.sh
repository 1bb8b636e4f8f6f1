#!/usr/bin/env bash
# The LangGraph.js checkpointer benchmark: builds the release sidecar and the TypeScript
# package, installs the pinned savers (better-sqlite3 compiles from source where no
# prebuilt binary can be fetched), runs savers.mjs. Results: bench/results/langgraph-ts.{md,json}.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p agentstate
(cd clients/typescript && npm ci --no-audit --no-fund && npm run build)
cd bench/langgraph-ts
npm install --no-audit --no-fund
exec node savers.mjs "$@"
