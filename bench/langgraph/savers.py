"""LangGraph checkpointers side by side, in one run on one machine.

Compares `AsyncAgentstateSaver` (sidecar on its embedded store, and on MongoDB) with
LangGraph's `InMemorySaver`, `AsyncSqliteSaver`, `AsyncPostgresSaver` (PostgreSQL from
Debian, default durable settings) and the MongoDB saver (on the same MongoDB-wire server
the sidecar uses). Every server is started here, on loopback, and stopped at the end.

Workloads:
- one thread, 200 steps of a growing conversation: per step `aput` (the whole message
  list as the `messages` channel), `aput_writes` (one message), `aget_tuple` (latest);
  p50 and p99 of each; bytes stored at steps 50 and 200;
- 32 threads at once, `aput` + `aput_writes` per step: steps per second;
- a two-node `StateGraph` (`MessagesState`), `ainvoke` repeatedly on one thread: mean ms;
- the same conversation with the messages in a `DeltaChannel` (LangGraph stores each
  step's new messages and a snapshot every 100 updates, and rebuilds the list through
  `get_delta_channel_history`): bytes stored after 50 and 200 runs.

Run with `bash bench/langgraph/run.sh` (it builds the sidecar and a virtualenv);
results go to bench/results/langgraph.{md,json}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, MessagesState, StateGraph, add_messages

ROOT = Path(__file__).resolve().parents[2]
STEPS = 200
THREADS = 32
STEPS_PER_THREAD = 50
INVOKES = 100
TEXT = "lorem ipsum dolor sit amet " * 8  # ~220 bytes per message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


# ---------------------------------------------------------------- servers


@dataclass
class Servers:
    """The processes every saver needs; all on loopback, all stopped on exit."""

    tmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    mongo_uri: str = ""
    pg_dsn: str = ""
    pg_dir: Path | None = None

    def start_mongo(self) -> None:
        port = free_port()
        binary = ROOT / ".venv-bench" / "bin" / "secantusd-py"
        store = self.tmp / "secantus"
        store.mkdir()
        log = open(self.tmp / "secantus.log", "wb")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                [
                    str(binary),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--storage-path",
                    str(store),
                    "--log-level",
                    "WARNING",
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        )
        wait_port(port)
        self.mongo_uri = f"mongodb://127.0.0.1:{port}"

    def start_postgres(self) -> None:
        """A throwaway cluster with Debian's PostgreSQL, as the `postgres` user."""
        bindir = max(Path("/usr/lib/postgresql").glob("*/bin"))
        self.pg_dir = self.tmp / "pg"
        self.pg_dir.mkdir()
        shutil.chown(self.pg_dir, "postgres")
        shutil.chown(self.tmp, "postgres")
        port = free_port()
        run_as = ["runuser", "-u", "postgres", "--"]
        subprocess.run(
            [
                *run_as,
                str(bindir / "initdb"),
                "-D",
                str(self.pg_dir / "data"),
                "-U",
                "postgres",
                "--auth=trust",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(
            [
                *run_as,
                str(bindir / "pg_ctl"),
                "-D",
                str(self.pg_dir / "data"),
                "-l",
                str(self.pg_dir / "log"),
                "-w",
                "-o",
                f"-p {port} -k {self.pg_dir} -c listen_addresses=127.0.0.1",
                "start",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.pg_dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._pg_ctl = [
            *run_as,
            str(bindir / "pg_ctl"),
            "-D",
            str(self.pg_dir / "data"),
            "-m",
            "immediate",
            "stop",
        ]

    def start_sidecar(self, name: str, args: list[str]) -> str:
        port = free_port()
        data = self.tmp / f"sidecar-{name}"
        binary = Path(os.environ.get("AGENTSTATE_BIN", ROOT / "target" / "release" / "agentstate"))
        log = open(self.tmp / f"sidecar-{name}.log", "wb")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                [
                    str(binary),
                    "serve",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--data-dir",
                    str(data),
                    *args,
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/readyz", timeout=1).status == 200:
                    return url
            time.sleep(0.05)
        raise RuntimeError(f"sidecar {name} not ready; see {self.tmp}/sidecar-{name}.log")

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGKILL)
            p.wait()
        if self.pg_dir is not None:
            subprocess.run(
                self._pg_ctl, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )


def sidecar_drained(url: str, timeout: float = 30.0) -> None:
    """Waits until the sidecar's backlog is in its store, so bytes are counted there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/v1/status", timeout=2) as r:
            if json.load(r)["backlog_agents"] == 0:
                return
        time.sleep(0.05)


# ---------------------------------------------------------------- bytes stored


def mongo_bytes(uri: str, db: str, collections: list[str]) -> int:
    import bson
    from pymongo import MongoClient

    with MongoClient(uri) as c:
        return sum(len(bson.encode(d)) for coll in collections for d in c[db][coll].find({}))


def sqlite_bytes(path: Path, queries: list[str]) -> int:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return sum(int(con.execute(q).fetchone()[0] or 0) for q in queries)
    finally:
        con.close()


# ---------------------------------------------------------------- savers


@dataclass
class Saver:
    name: str
    open: Callable[[], contextlib.AbstractAsyncContextManager[BaseCheckpointSaver]]
    stored_bytes: Callable[[BaseCheckpointSaver], int]
    settle: Callable[[], None] = lambda: None


def savers(servers: Servers, only: set[str] | None) -> list[Saver]:
    from agentstate_client.langgraph import AsyncAgentstateSaver
    from langgraph.checkpoint.mongodb import MongoDBSaver
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from pymongo import MongoClient

    out: list[Saver] = []

    def want(name: str) -> bool:
        return only is None or name in only

    if want("memory"):

        @contextlib.asynccontextmanager
        async def memory() -> AsyncIterator[BaseCheckpointSaver]:
            yield InMemorySaver()

        def memory_bytes(s: BaseCheckpointSaver) -> int:
            assert isinstance(s, InMemorySaver)
            n = sum(
                len(c[0][1]) + len(c[1][1])
                for t in s.storage.values()
                for ns in t.values()
                for c in ns.values()
            )
            n += sum(len(v[1]) for v in s.blobs.values())
            n += sum(len(w[2][1]) for ws in s.writes.values() for w in ws.values())
            return n

        out.append(Saver("InMemorySaver", memory, memory_bytes))

    for name, args in [
        ("embedded", []),
        ("mongodb", ["--mongodb-uri", servers.mongo_uri, "--database", "bench_sidecar"]),
    ]:
        if not want(f"agentstate-{name}"):
            continue
        url = servers.start_sidecar(name, args)
        data = servers.tmp / f"sidecar-{name}"

        def opener(url: str = url) -> contextlib.AbstractAsyncContextManager[BaseCheckpointSaver]:
            return AsyncAgentstateSaver(url=url)

        if name == "embedded":

            def stored(_: BaseCheckpointSaver, url: str = url, data: Path = data) -> int:
                sidecar_drained(url)
                return sqlite_bytes(
                    data / "agentstate.db",
                    [
                        "SELECT SUM(LENGTH(data) + LENGTH(metadata) + LENGTH(channel_versions)"
                        " + LENGTH(delta_roots)) FROM thread_checkpoints",
                        "SELECT SUM(LENGTH(data) + IFNULL(LENGTH(extends), 0)"
                        " + IFNULL(LENGTH(root), 0)) FROM thread_blobs",
                        "SELECT SUM(LENGTH(data)) FROM thread_writes",
                    ],
                )
        else:

            def stored(_: BaseCheckpointSaver, url: str = url) -> int:
                sidecar_drained(url)
                return mongo_bytes(
                    servers.mongo_uri,
                    "bench_sidecar",
                    ["thread_checkpoints", "thread_blobs", "thread_writes"],
                )

        out.append(Saver(f"AsyncAgentstateSaver ({name})", opener, stored))

    if want("sqlite"):
        path = servers.tmp / "langgraph.sqlite"

        @contextlib.asynccontextmanager
        async def sqlite_saver() -> AsyncIterator[BaseCheckpointSaver]:
            async with AsyncSqliteSaver.from_conn_string(str(path)) as s:
                yield s

        def sqlite_stored(_: BaseCheckpointSaver) -> int:
            return sqlite_bytes(
                path,
                [
                    "SELECT SUM(LENGTH(checkpoint) + LENGTH(metadata)) FROM checkpoints",
                    "SELECT SUM(LENGTH(value)) FROM writes",
                ],
            )

        out.append(Saver("AsyncSqliteSaver", sqlite_saver, sqlite_stored))

    if want("postgres"):

        @contextlib.asynccontextmanager
        async def pg_saver() -> AsyncIterator[BaseCheckpointSaver]:
            async with AsyncPostgresSaver.from_conn_string(servers.pg_dsn) as s:
                await s.setup()
                yield s

        def pg_stored(_: BaseCheckpointSaver) -> int:
            import psycopg

            with psycopg.connect(servers.pg_dsn) as c:
                row = c.execute(
                    "SELECT SUM(pg_total_relation_size(t)) FROM unnest("
                    "ARRAY['checkpoints','checkpoint_blobs','checkpoint_writes']) t"
                ).fetchone()
                return int(row[0] if row else 0)

        out.append(Saver("AsyncPostgresSaver", pg_saver, pg_stored))

    if want("mongodb"):

        @contextlib.asynccontextmanager
        async def mongo_saver() -> AsyncIterator[BaseCheckpointSaver]:
            client: MongoClient[Any] = MongoClient(servers.mongo_uri)
            try:
                yield MongoDBSaver(client, db_name="bench_mongodb_saver")
            finally:
                client.close()

        def mongo_stored(_: BaseCheckpointSaver) -> int:
            return mongo_bytes(
                servers.mongo_uri, "bench_mongodb_saver", ["checkpoints", "checkpoint_writes"]
            )

        out.append(Saver("MongoDBSaver", mongo_saver, mongo_stored))
    return out


# ---------------------------------------------------------------- workloads


def step_checkpoint(
    prev: dict[str, Any], saver: BaseCheckpointSaver, messages: list[Any], step: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    version = saver.get_next_version(prev["channel_versions"].get("messages"), None)
    ckpt = empty_checkpoint()
    ckpt["id"] = str(uuid6(clock_seq=step))
    ckpt["channel_values"] = {"messages": list(messages)}
    ckpt["channel_versions"] = {"messages": version}
    ckpt["versions_seen"] = {"chat": {"messages": version}}
    return ckpt, {"messages": version}


async def conversation(
    saver: BaseCheckpointSaver, s: Saver, thread: str, steps: int, measure: bool
) -> dict[str, Any]:
    """One thread, `steps` steps; per-call latencies and bytes at steps 50 and `steps`."""
    times: dict[str, list[float]] = {"aput": [], "aput_writes": [], "aget_tuple": []}
    stored: dict[int, int] = {}
    messages: list[Any] = []
    prev: dict[str, Any] = empty_checkpoint()
    config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
    for step in range(steps):
        messages.append(HumanMessage(f"{step}: {TEXT}"))
        messages.append(AIMessage(f"{step}: {TEXT}"))
        ckpt, new_versions = step_checkpoint(prev, saver, messages, step)
        t0 = time.perf_counter()
        config = await saver.aput(
            config, ckpt, {"source": "loop", "step": step, "parents": {}}, new_versions
        )
        t1 = time.perf_counter()
        await saver.aput_writes(
            config, [("messages", [AIMessage(f"w{step}: {TEXT}")])], str(uuid.uuid4())
        )
        t2 = time.perf_counter()
        got = await saver.aget_tuple({"configurable": {"thread_id": thread, "checkpoint_ns": ""}})
        t3 = time.perf_counter()
        assert got is not None and got.checkpoint["id"] == ckpt["id"]
        times["aput"].append(t1 - t0)
        times["aput_writes"].append(t2 - t1)
        times["aget_tuple"].append(t3 - t2)
        prev = ckpt
        if measure and step + 1 in (50, steps):
            stored[step + 1] = s.stored_bytes(saver)
    out: dict[str, Any] = {
        k: {"p50_ms": pct(v, 50) * 1e3, "p99_ms": pct(v, 99) * 1e3} for k, v in times.items()
    }
    # Flat or growing: the first 20 steps against the last 20.
    out["aput_first20_p50_ms"] = pct(times["aput"][:20], 50) * 1e3
    out["aput_last20_p50_ms"] = pct(times["aput"][-20:], 50) * 1e3
    out["bytes"] = stored
    # What the stored bytes are measured against: the final list, serialized once.
    out["final_list_bytes"] = len(JsonPlusSerializer().dumps_typed(messages)[1])
    return out


async def concurrent(saver: BaseCheckpointSaver) -> float:
    """THREADS threads at once, each STEPS_PER_THREAD steps of aput + aput_writes."""

    async def one(i: int) -> None:
        thread = f"c-{uuid.uuid4().hex[:8]}-{i}"
        messages: list[Any] = []
        prev: dict[str, Any] = empty_checkpoint()
        config: dict[str, Any] = {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}
        for step in range(STEPS_PER_THREAD):
            messages.append(HumanMessage(f"{step}: {TEXT}"))
            ckpt, nv = step_checkpoint(prev, saver, messages, step)
            config = await saver.aput(
                config, ckpt, {"source": "loop", "step": step, "parents": {}}, nv
            )
            await saver.aput_writes(config, [("messages", [AIMessage(TEXT)])], str(uuid.uuid4()))
            prev = ckpt

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(THREADS)))
    return THREADS * STEPS_PER_THREAD / (time.perf_counter() - t0)


async def invokes(saver: BaseCheckpointSaver) -> float:
    """Mean ms per `ainvoke` of a two-node graph on one thread."""

    def a(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage("from a")]}

    def b(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage("from b")]}

    builder = StateGraph(MessagesState)
    builder.add_node("a", a)
    builder.add_node("b", b)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", END)
    graph = builder.compile(checkpointer=saver)
    config: dict[str, Any] = {"configurable": {"thread_id": f"g-{uuid.uuid4().hex[:8]}"}}
    await graph.ainvoke({"messages": [HumanMessage("warm up")]}, config)
    t0 = time.perf_counter()
    for i in range(INVOKES):
        await graph.ainvoke({"messages": [HumanMessage(f"hi {i}")]}, config)
    return (time.perf_counter() - t0) / INVOKES * 1e3


def fold_messages(state: list[Any], writes: list[Any]) -> list[Any]:
    """`add_messages` over a batch of writes, as `DeltaChannel` wants its reducer."""
    for w in writes:
        state = add_messages(state, w)
    return state


class DeltaState(TypedDict):
    messages: Annotated[list[Any], DeltaChannel(fold_messages)]


async def delta_bytes(saver: BaseCheckpointSaver, s: Saver) -> dict[int, int]:
    """Bytes stored after 50 and STEPS runs of a chat graph whose messages are a delta."""

    def chat(state: DeltaState) -> dict[str, Any]:
        return {"messages": [AIMessage(f"{len(state['messages'])}: {TEXT}")]}

    builder = StateGraph(DeltaState)
    builder.add_node("chat", chat)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", END)
    graph = builder.compile(checkpointer=saver)
    config: dict[str, Any] = {"configurable": {"thread_id": f"d-{uuid.uuid4().hex[:8]}"}}
    base = s.stored_bytes(saver)
    out: dict[int, int] = {}
    for i in range(STEPS):
        result = await graph.ainvoke({"messages": [HumanMessage(f"{i}: {TEXT}")]}, config)
        assert len(result["messages"]) == 2 * (i + 1), "the history is rebuilt whole"
        if i + 1 in (50, STEPS):
            out[i + 1] = s.stored_bytes(saver) - base
    return out


async def run(only: set[str] | None) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="lg-bench-"))
    servers = Servers(tmp)
    results: dict[str, Any] = {}
    try:
        servers.start_mongo()
        if only is None or "postgres" in only:
            servers.start_postgres()
        for s in savers(servers, only):
            print(f"== {s.name}", file=sys.stderr, flush=True)
            async with s.open() as saver:
                r = await conversation(
                    saver, s, f"conv-{uuid.uuid4().hex[:8]}", STEPS, measure=True
                )
                r["steps_per_s_32"] = await concurrent(saver)
                r["invoke_ms"] = await invokes(saver)
                # The default delta walk reads one checkpoint per ancestor: minutes on
                # the MongoDB saver, so it is left out there.
                if s.name != "MongoDBSaver":
                    r["delta_bytes"] = await delta_bytes(saver, s)
            results[s.name] = r
            print(json.dumps(r), file=sys.stderr, flush=True)
    finally:
        servers.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def delta(r: dict[str, Any]) -> str:
    d = r.get("delta_bytes")
    return f"{d[50]:,} / {d[STEPS]:,}" if d else "not run"


def table(results: dict[str, Any]) -> str:
    mem = results.get("InMemorySaver")
    rows = [
        "| saver | aput p50 / p99 ms | aput p50 ms, steps 0-19 / 180-199"
        " | aput_writes p50 / p99 ms | aget_tuple p50 / p99 ms"
        " | steps/s, 32 threads | StateGraph invoke, mean ms | bytes at step 50"
        " | bytes at step 200 (x final list) | DeltaChannel: bytes at run 50 / 200 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        final = r.get("final_list_bytes") or 0
        at_end = r["bytes"].get(STEPS, 0)
        times_final = f" ({at_end / final:.1f}x)" if final else ""
        rows.append(
            f"| {name} | {r['aput']['p50_ms']:.2f} / {r['aput']['p99_ms']:.2f} | "
            f"{r['aput_first20_p50_ms']:.2f} / {r['aput_last20_p50_ms']:.2f} | "
            f"{r['aput_writes']['p50_ms']:.2f} / {r['aput_writes']['p99_ms']:.2f} | "
            f"{r['aget_tuple']['p50_ms']:.2f} / {r['aget_tuple']['p99_ms']:.2f} | "
            f"{r['steps_per_s_32']:,.0f} | {r['invoke_ms']:.2f} | "
            f"{r['bytes'].get(50, 0):,} | {at_end:,}{times_final} | {delta(r)} |"
        )
    if mem:
        rows.append("")
        rows.append(
            "Ratios against InMemorySaver (aput p50, steps/s at 32 threads, invoke), and"
            " aput's growth (p50 of steps 180-199 over steps 0-19):"
        )
        rows.append("")
        for name, r in results.items():
            rows.append(
                f"- {name}: aput p50 {r['aput']['p50_ms'] / mem['aput']['p50_ms']:.2f}x, "
                f"steps/s {r['steps_per_s_32'] / mem['steps_per_s_32']:.2f}x, "
                f"invoke {r['invoke_ms'] / mem['invoke_ms']:.2f}x, "
                f"growth {r['aput_last20_p50_ms'] / r['aput_first20_p50_ms']:.2f}x"
            )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--only",
        help="comma-separated: memory, agentstate-embedded, agentstate-mongodb, sqlite, "
        "postgres, mongodb",
    )
    p.add_argument(
        "--out",
        default=str(ROOT / "bench" / "results"),
        help="where langgraph.md and langgraph.json go",
    )
    args = p.parse_args()
    only = set(args.only.split(",")) if args.only else None
    results = asyncio.run(run(only))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    header = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit}, "
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}; "
        f"{STEPS} steps on one thread, {THREADS} threads x {STEPS_PER_THREAD} steps, "
        f"{INVOKES} invokes.\n\n"
    )
    md = header + table(results) + "\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "langgraph.md").write_text(md)
    (out / "langgraph.json").write_text(
        json.dumps({"commit": commit, "results": results}, indent=2) + "\n"
    )
    print(md)


if __name__ == "__main__":
    main()
