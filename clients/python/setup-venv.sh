#!/usr/bin/env bash
# Creates (or reuses) <repo>/.venv-py and installs ./clients/python into it with its
# langgraph, openai-agents and adk extras plus the pinned test dependencies. Used by
# run-tests.sh here and by the TypeScript tests (which read and write threads with the
# Python saver). Prints the venv's python.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$repo/.venv-py"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r "$here/requirements-test.txt" "$here[langgraph,openai-agents,adk]" >&2
echo "$venv/bin/python"
