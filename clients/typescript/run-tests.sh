#!/usr/bin/env bash
# The TypeScript package's checks, as the README's test command runs them: dependencies
# from the lockfile (npm ci), types, lint and format (biome), the build, then the tests
# against the real sidecar (target/debug/agentstate, built by `cargo test`). The threads
# interop tests drive the Python saver: ../python/setup-venv.sh makes (or reuses) .venv-py.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund
npx tsc --noEmit
npx biome check .
npm run build
bash ../python/setup-venv.sh >/dev/null
npx vitest run
