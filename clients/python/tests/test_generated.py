"""The blocking modules are what tools/gen_sync.py makes of their asyncio sources.

``client.py`` and ``langgraph/_core.py`` are generated (from ``async_client.py`` and
``langgraph/_async_core.py``); an edit to one side only fails here, with the diff.
"""

import subprocess
import sys
from pathlib import Path

GEN_SYNC = Path(__file__).resolve().parent.parent / "tools" / "gen_sync.py"


def test_generated_modules_match_their_asyncio_sources() -> None:
    done = subprocess.run(
        [sys.executable, str(GEN_SYNC), "--check"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
