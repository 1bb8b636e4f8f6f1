#!/usr/bin/env bash
# Runs the Python client's tests against the real sidecar binary.
#
# Creates (or reuses) <repo>/.venv-py, installs ./clients/python with its langgraph,
# openai-agents and adk extras plus the pinned test dependencies (ruff among them, for
# CI's lint step), and runs pytest. Builds nothing: it expects target/debug/agentstate
# (cargo build -p agentstate), or AGENTSTATE_BIN. MongoDB-backed tests use MONGODB_URI,
# else install and start SecantusDB (.venv-test), as the Rust tests do. test_browser.py
# drives Debian's chromium (never Playwright's own download): run as root, this installs
# it with apt-get when it is missing; otherwise that test fails saying how to install it.
# Exits with pytest's code; "no tests collected" (5) counts as a failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/.venv-py"

bash "$here/setup-venv.sh" >/dev/null

if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    apt_log="$venv/apt-chromium.log"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            chromium; } >"$apt_log" 2>&1; then
        echo "run-tests.sh: installing chromium failed (see $apt_log)" >&2
    fi
fi

cd "$repo"
set +e
"$venv/bin/python" -m pytest "$here/tests" -q -ra -p no:cacheprovider --timeout 300 "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
    echo "run-tests.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$code"
