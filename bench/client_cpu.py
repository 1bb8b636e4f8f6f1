"""The Python client's CPU per call, side by side with an older version of the client.

Measures `get_agent` of a 1 KiB state: `time.process_time()` (this process's CPU, user
and system) and `time.perf_counter()` over 3,000 calls after 300 of warm-up, for
- sync: `Client.get_agent` in a loop;
- async: `AsyncClient.get_agent` awaited in a loop;
- async x32: 32 tasks sharing one `AsyncClient`, 3,000 calls in all;
each over loopback TCP and over the sidecar's Unix socket.

Each version of the package runs in a process of its own (this script with `--worker`),
so the work tree's client and one from git (`--baseline REV`) are measured in one run
against one sidecar, alternating, `--rounds` times; the table shows the medians, and the
lowest and highest CPU figures of the rounds.

    .venv-py/bin/python bench/client_cpu.py                    # the work tree's client
    .venv-py/bin/python bench/client_cpu.py --baseline HEAD    # ... beside HEAD's
    .venv-py/bin/python bench/client_cpu.py --url http://127.0.0.1:7700 --socket /run/as.sock

Without `--url` a sidecar is started (`AGENTSTATE_BIN`, else target/release, else
target/debug) on a free port and a Unix socket, with its own data dir, and stopped at
the end. The CPU figures are the client process's only; the sidecar's speed enters the
wall times. A baseline from before the client's own transports imports httpx and
aiohttp, which must then be installed. Single rounds on a busy two-core machine vary by
a third: take several.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import uuid
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "clients/python/src"
CALLS = 3000
WARMUP = 300
TASKS = 32
STATE_BYTES = 1024
MODES = ("sync", "async", "async x32")


# ---------------------------------------------------------------- the measured process


def worker(src: str, url: str, sock: str, agent_id: str) -> dict[str, dict[str, float]]:
    sys.path.insert(0, src)
    # The package was imported as `agentstate` before it became `agentstate_client`; a
    # baseline revision may be either.
    name = "agentstate_client" if (Path(src) / "agentstate_client").is_dir() else "agentstate"
    package = importlib.import_module(name)
    AsyncClient, Client = package.AsyncClient, package.Client
    assert Path(package.__file__ or "").is_relative_to(src)
    results: dict[str, dict[str, float]] = {}

    def record(key: str, cpu_s: float, wall_s: float) -> None:
        results[key] = {"cpu_us": cpu_s / CALLS * 1e6, "wall_us": wall_s / CALLS * 1e6}

    for transport, options in (("tcp", {"url": url}), ("uds", {"uds": sock})):
        with Client(**options) as c:
            for _ in range(WARMUP):
                c.get_agent(agent_id)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(CALLS):
                c.get_agent(agent_id)
            record(f"sync/{transport}", time.process_time() - cpu, time.perf_counter() - wall)

        async def run_async(options: dict[str, str], transport: str) -> None:
            async with AsyncClient(**options) as c:
                for _ in range(WARMUP):
                    await c.get_agent(agent_id)
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(CALLS):
                    await c.get_agent(agent_id)
                record(f"async/{transport}", time.process_time() - cpu, time.perf_counter() - wall)

                async def task(n: int) -> None:
                    for _ in range(n):
                        await c.get_agent(agent_id)

                await asyncio.gather(*(task(WARMUP // TASKS + 1) for _ in range(TASKS)))
                shares = [CALLS // TASKS + (i < CALLS % TASKS) for i in range(TASKS)]
                cpu, wall = time.process_time(), time.perf_counter()
                await asyncio.gather(*(task(n) for n in shares))
                record(
                    f"async x32/{transport}", time.process_time() - cpu, time.perf_counter() - wall
                )

        asyncio.run(run_async(options, transport))
    return results


# ---------------------------------------------------------------- the sidecar


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sidecar_binary() -> Path:
    if os.environ.get("AGENTSTATE_BIN"):
        return Path(os.environ["AGENTSTATE_BIN"])
    for profile in ("release", "debug"):
        path = ROOT / "target" / profile / "agentstate"
        if path.is_file():
            return path
    raise SystemExit("no agentstate binary: cargo build -p agentstate, or set AGENTSTATE_BIN")


@contextlib.contextmanager
def sidecar(workdir: Path) -> Any:
    binary = sidecar_binary()
    port = free_port()
    sock = workdir / "agentstate.sock"
    log = (workdir / "sidecar.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTATE_")}
    proc = subprocess.Popen(
        [
            str(binary),
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(workdir / "data"),
            "--unix-socket",
            str(sock),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if urllib.request.urlopen(f"{url}/readyz", timeout=1).status == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"sidecar did not start: {(workdir / 'sidecar.log').read_text()}")
            time.sleep(0.05)
        yield url, str(sock), binary
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def save_state(url: str) -> str:
    agent_id = f"bench-{uuid.uuid4().hex[:8]}"
    body = json.dumps({"state_name": "idle", "state_data": {"blob": "x" * STATE_BYTES}})
    request = urllib.request.Request(
        f"{url}/v1/agents/{agent_id}",
        data=body.encode(),
        method="PUT",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200, r.status
    return agent_id


# ---------------------------------------------------------------- versions and the run


def package_at(rev: str, into: Path) -> str:
    """The client package as of git revision ``rev``, unpacked under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, PACKAGE],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return str(into / PACKAGE)


def commit() -> str:
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", PACKAGE],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{rev} + work tree" if dirty else rev


def run_worker(src: str, url: str, sock: str, agent_id: str) -> dict[str, dict[str, float]]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            src,
            "--url",
            url,
            "--socket",
            sock,
            "--agent",
            agent_id,
        ],
        check=True,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    ).stdout
    result: dict[str, dict[str, float]] = json.loads(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running sidecar (then --socket too)")
    parser.add_argument("--socket", help="the running sidecar's Unix socket")
    parser.add_argument("--baseline", help="also measure the client of this git revision")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", metavar="SRC", help=argparse.SUPPRESS)
    parser.add_argument("--agent", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.url, args.socket, args.agent)))
        return

    with tempfile.TemporaryDirectory(prefix="agentstate-client-cpu-") as tmp:
        workdir = Path(tmp)
        versions = {"work tree": str(ROOT / PACKAGE)}
        if args.baseline:
            versions = {args.baseline: package_at(args.baseline, workdir / "baseline")} | versions
        with contextlib.ExitStack() as stack:
            if args.url:
                if not args.socket:
                    raise SystemExit("--url needs --socket (the same sidecar's Unix socket)")
                url, sock, binary = args.url, args.socket, None
            else:
                url, sock, binary = stack.enter_context(sidecar(workdir))
            agent_id = save_state(url)
            runs: dict[str, list[dict[str, dict[str, float]]]] = {v: [] for v in versions}
            for _ in range(args.rounds):
                for name, src in versions.items():
                    runs[name].append(run_worker(src, url, sock, agent_id))

    print(
        f"commit {commit()}, {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, sidecar {binary or url}, {args.rounds} rounds, "
        f"{CALLS} calls of get_agent ({STATE_BYTES} B state) after {WARMUP} of warm-up\n"
    )
    names = list(versions)
    header = ["mode", "transport"]
    header += [f"CPU µs/call, median (range): {n}" for n in names]
    header += [f"wall µs/call, median: {n}" for n in names]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for mode in MODES:
        for transport in ("tcp", "uds"):
            key = f"{mode}/{transport}"
            cells = [mode, "loopback TCP" if transport == "tcp" else "Unix socket"]
            for name in names:
                cpu = [run[key]["cpu_us"] for run in runs[name]]
                cells.append(f"{statistics.median(cpu):.0f} ({min(cpu):.0f}-{max(cpu):.0f})")
            for name in names:
                wall = [run[key]["wall_us"] for run in runs[name]]
                cells.append(f"{statistics.median(wall):.0f}")
            print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
