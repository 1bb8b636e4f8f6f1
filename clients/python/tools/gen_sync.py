"""Derive the blocking client and saver methods from their asyncio sources.

Each endpoint and each LangGraph checkpointer method is written once, as a coroutine.
This script rewrites those sources into the blocking modules beside them:

- ``async_client.py`` (``AsyncClient``) -> ``client.py`` (``Client``);
- ``langgraph/_async_core.py`` (``AsyncSaverCore``) -> ``langgraph/_core.py``
  (``SaverCore``), which ``AgentstateSaver`` subclasses.

The rewrite works on tokens, so strings and comments are left alone except for the
phrases listed per module: ``async`` and ``await`` are dropped, and the names in
``NAMES`` are swapped for their blocking counterparts (the asyncio pool's transport for
the socket pool's, ``aclose`` for ``close``, ``aget_tuple`` for ``get_tuple``...). The
output gets a header naming its source, then goes through ``ruff`` (import order, format)
with the package's settings. What cannot be derived (the transports, the async saver's
blocking bridge, the sync saver's worker-thread coroutines) is written by hand in the
modules that import or subclass the generated ones.

Run from anywhere: ``python clients/python/tools/gen_sync.py`` rewrites the generated
modules; ``--check`` only compares and exits 1 if one is stale (tests/test_generated.py
runs that).
"""

from __future__ import annotations

import argparse
import difflib
import io
import subprocess
import sys
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

#: clients/python, where pyproject.toml holds the ruff settings the output must meet.
PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SOURCES = PACKAGE_ROOT / "src" / "agentstate_client"

#: Identifier (NAME token) of the asyncio sources -> its blocking counterpart.
NAMES = {
    "AsyncClient": "Client",
    "async_client": "client",
    "AsyncSaverCore": "SaverCore",
    "AsyncIterator": "Iterator",
    "AsyncBaseTransport": "BaseTransport",
    "async_transport": "blocking_transport",
    # asyncio is used for asyncio.sleep only; a sleep that blocks is time.sleep.
    "asyncio": "time",
    "aclose": "close",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "aget_tuple": "get_tuple",
    "alist": "list",
    "aput": "put",
    "aput_writes": "put_writes",
    "adelete_thread": "delete_thread",
    "adelete_for_runs": "delete_for_runs",
    "acopy_thread": "copy_thread",
    "aprune": "prune",
    "aget_delta_channel_history": "get_delta_channel_history",
}

#: Keywords that have no blocking form: dropped with the space after them.
DROPPED = {"async", "await"}


@dataclass(frozen=True)
class Face:
    """One generated module: where it comes from, and what its prose says instead."""

    source: str  # relative to SOURCES
    target: str
    docstring: str  # the generated module's docstring text (the source's is about asyncio)
    phrases: dict[str, str] = field(default_factory=dict)  # in strings and comments


FACES = (
    Face(
        source="async_client.py",
        target="client.py",
        docstring=(
            "The blocking client: one method per endpoint, on one long-lived connection pool.\n"
            "\n"
            "Safe to share between threads (the pool, ``_socket_pool.py``, gives each call its\n"
            "own connection), and so usable from any thread, including one that runs an event\n"
            "loop (it then blocks that loop for the call's duration).\n"
        ),
        phrases={"Asyncio client": "Blocking client"},
    ),
    Face(
        source="langgraph/_async_core.py",
        target="langgraph/_core.py",
        docstring=(
            "The client, its lifetime and the checkpointer methods of ``AgentstateSaver``.\n"
            "\n"
            "Blocking: LangGraph calls these from whatever thread runs the graph, and the\n"
            "blocking client works from any thread. ``saver.py`` adds the asyncio interface,\n"
            "on worker threads.\n"
        ),
        phrases={
            "AsyncAgentstateSaver": "AgentstateSaver",
            "AsyncClient": "Client",
            "asyncio checkpointer methods": "blocking checkpointer methods",
        },
    ),
)


def header(face: Face) -> str:
    return (
        f"# Generated from src/agentstate_client/{face.source} by tools/gen_sync.py: edit\n"
        "# that file and run `python clients/python/tools/gen_sync.py`, not this one.\n"
    )


def unasync(face: Face, text: str) -> str:
    """The source's tokens rewritten, its module docstring replaced (unformatted)."""
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(pos: tuple[int, int]) -> int:
        return starts[pos[0] - 1] + pos[1]

    out: list[str] = []
    copied_to = 0  # source offset up to which the output accounts for the text
    skip_gap = False
    docstring_seen = False
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        start, end = offset(tok.start), offset(tok.end)
        gap = text[copied_to:start]
        out.append(gap.lstrip(" ") if skip_gap else gap)
        skip_gap = False
        piece = text[start:end]
        if tok.type == tokenize.NAME:
            if piece in DROPPED:
                piece, skip_gap = "", True
            else:
                piece = NAMES.get(piece, piece)
        elif tok.type == tokenize.STRING and not docstring_seen:
            piece, docstring_seen = f'"""{face.docstring}"""', True
        elif tok.type in (tokenize.STRING, tokenize.COMMENT):
            for old, new in face.phrases.items():
                piece = piece.replace(old, new)
        out.append(piece)
        copied_to = end
    out.append(text[copied_to:])
    result = header(face) + "".join(out)
    assert_blocking(face, result)
    return result


def assert_blocking(face: Face, text: str) -> None:
    """Nothing asyncio may survive the rewrite: a new asyncio name needs an entry in NAMES."""
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.NAME and "async" in tok.string.lower():
            raise SystemExit(
                f"gen_sync: {face.source}:{tok.start[0]}: {tok.string!r} has no blocking "
                "form; add it to NAMES in tools/gen_sync.py"
            )
        if tok.type == tokenize.NAME and tok.string == "await":
            raise SystemExit(f"gen_sync: {face.source}: an await survived the rewrite")


def ruff(args: list[str], text: str, path: Path) -> str:
    """``text`` through ``ruff <args>`` as if it were ``path`` (so pyproject.toml applies)."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(path), "-"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
        cwd=PACKAGE_ROOT,
    )
    if done.returncode != 0:
        raise SystemExit(f"gen_sync: ruff {' '.join(args)} failed on {path}:\n{done.stderr}")
    return done.stdout


def render(face: Face) -> str:
    """The generated module's text, formatted as CI's ruff checks want it."""
    text = unasync(face, (SOURCES / face.source).read_text())
    target = SOURCES / face.target
    text = ruff(["check", "--fix", "--select", "I", "--quiet"], text, target)
    return ruff(["format", "--quiet"], text, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="compare only; exit 1 if a module is stale"
    )
    args = parser.parse_args(argv)
    stale = 0
    for face in FACES:
        target = SOURCES / face.target
        want = render(face)
        have = target.read_text() if target.exists() else ""
        if want == have:
            continue
        if args.check:
            stale += 1
            diff = difflib.unified_diff(
                have.splitlines(keepends=True),
                want.splitlines(keepends=True),
                f"{face.target} (committed)",
                f"{face.target} (generated from {face.source})",
            )
            sys.stdout.writelines(diff)
        else:
            target.write_text(want)
            print(f"gen_sync: wrote {face.target} from {face.source}")
    if stale:
        print(
            f"gen_sync: {stale} generated module(s) differ from their asyncio source: edit "
            "the source, not the generated file, and run python clients/python/tools/gen_sync.py"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
