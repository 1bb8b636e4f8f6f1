#!/usr/bin/env bash
# The LangGraph checkpointer benchmark: builds the release sidecar, makes .venv-bench with
# the pinned savers and the agentstate package, runs bench/langgraph/savers.py.
# Needs PostgreSQL from Debian (apt-get install postgresql) and root (to run it as postgres).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p agentstate
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
[ -x .venv-bench/bin/python ] || python3 -m venv .venv-bench
.venv-bench/bin/pip install -q -r bench/langgraph/requirements.txt ./clients/python
exec .venv-bench/bin/python bench/langgraph/savers.py "$@"
