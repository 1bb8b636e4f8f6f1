"""How fast the inspector's pages answer with 100,000 agents and a 10,000-entry timeline.

Seeds a sidecar (embedded store) with `--agents` agents through `POST /v1/batch` (a third
greeters, the rest untyped, alternately idle and busy; one in a hundred with a refused
transition) and one agent whose timeline holds `--timeline` entries (transitions and
messages, half each), waits until the backend holds everything, then times each route
the inspector reads, `--repeat` times over one keep-alive connection: the first page of
agents, a page from the middle, each filter, the first and the last timeline page,
threads, status, usage. With `--browser`, also the time Chromium takes from navigation
to the rendered table of the agents page and the agent page (Debian's chromium driven by
Playwright, as the tests do).

    .venv-py/bin/python bench/inspector.py                 # release binary if built
    .venv-py/bin/python bench/inspector.py --browser --agents 100000 --timeline 10000

`AGENTSTATE_BIN` names the binary; else target/release, else target/debug.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "protocol/examples/agent-types.toml"


def binary() -> Path:
    if os.environ.get("AGENTSTATE_BIN"):
        return Path(os.environ["AGENTSTATE_BIN"])
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / "agentstate"
        if p.exists():
            return p
    raise SystemExit("no agentstate binary: cargo build --release -p agentstate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Api:
    """One keep-alive connection to the sidecar, JSON both ways."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        resp = self.conn.getresponse()
        raw = resp.read()
        json_body = resp.getheader("content-type", "").startswith("application/json")
        return resp.status, (json.loads(raw) if raw and json_body else raw)

    def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, answer = self.call(method, path, body)
        if status >= 300:
            raise SystemExit(f"{method} {path}: {status} {answer}")
        return answer


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("the sidecar did not get ready in 30 s")


def seed(api: Api, agents: int, timeline: int) -> None:
    started = time.perf_counter()
    ops: list[dict[str, Any]] = []
    for i in range(agents):
        op: dict[str, Any] = {"op": "put", "agent_id": f"agent-{i:07d}"}
        if i % 3 == 0:
            op |= {"agent_type": "greeter", "state_name": "idle"}
        else:
            op["state_name"] = "busy" if i % 3 == 2 else "idle"
        op["state_data"] = {"n": i, "note": "x" * 64}
        ops.append(op)
        if len(ops) == 100:
            api.ok("POST", "/v1/batch", {"operations": ops})
            ops = []
    if ops:
        api.ok("POST", "/v1/batch", {"operations": ops})
    for i in range(0, agents, 300):  # greeters, one in a hundred agents
        status, _ = api.call(
            "POST",
            f"/v1/agents/agent-{i:07d}/transitions",
            {"to_state": "done", "trigger": "bogus", "state_data": {"why": "test"}},
        )
        assert status == 422, status
    long = "long-timeline"
    api.ok("PUT", f"/v1/agents/{long}", {"state_name": "s0"})
    half = timeline // 2
    for i in range(half):
        api.ok(
            "POST",
            f"/v1/agents/{long}/transitions",
            {"to_state": f"s{i % 7}", "trigger": "step"},
        )
    for i in range(0, half, 100):
        msgs = [{"role": "user", "content": f"message {j}"} for j in range(i, min(i + 100, half))]
        api.ok("POST", f"/v1/agents/{long}/messages", {"messages": msgs})
    took = time.perf_counter() - started
    print(f"seeded {agents} agents and a {timeline}-entry timeline in {took:.0f} s")


def drained(api: Api) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if api.ok("GET", "/v1/status")["backlog_agents"] == 0:
            return
        time.sleep(0.5)
    raise SystemExit("the backlog did not drain in 10 minutes")


def timed(api: Api, path: str, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        api.ok("GET", path)
        out.append((time.perf_counter() - t) * 1000)
    return out


def routes(api: Api, agents: int) -> list[tuple[str, str]]:
    middle = f"agent-{agents // 2:07d}"
    # The cursor of the last page of 100: follow the pages to the end.
    before = ""
    cursor = api.ok("GET", "/v1/agents/long-timeline/timeline?limit=100").get("next_cursor")
    while cursor:
        before = cursor
        cursor = api.ok("GET", f"/v1/agents/long-timeline/timeline?limit=100&cursor={cursor}").get(
            "next_cursor"
        )
    q = urllib.parse.quote
    return [
        ("agents, first page of 100", "/v1/agents?limit=100"),
        ("agents, a page from the middle", f"/v1/agents?limit=100&cursor={middle}"),
        ("agents, prefix", "/v1/agents?limit=100&prefix=agent-005"),
        ("agents, state=busy", "/v1/agents?limit=100&state=busy"),
        ("agents, type=greeter", "/v1/agents?limit=100&type=greeter"),
        ("agents, refused transitions (1%)", "/v1/agents?limit=100&failed=true"),
        (
            "agents, updated in the future (none)",
            "/v1/agents?limit=100&updated_after=" + q("2100-01-01T00:00:00Z"),
        ),
        ("timeline, first page of 100", "/v1/agents/long-timeline/timeline?limit=100"),
        (
            "timeline, last page of 100",
            f"/v1/agents/long-timeline/timeline?limit=100&cursor={before}",
        ),
        ("agent", "/v1/agents/long-timeline"),
        ("checkpoints", "/v1/agents/long-timeline/checkpoints"),
        ("threads", "/v1/threads?limit=100"),
        ("transfers", "/v1/transfers?limit=100"),
        ("status", "/v1/status"),
        ("usage, top 20", "/v1/usage?top=20"),
        ("the page", "/ui"),
    ]


def browser_times(port: int, repeat: int, agents: int) -> list[tuple[str, list[float]]]:
    """Chromium: a first load of each view (navigation, script, API calls, rendering), and
    moves inside the loaded page (a hash change, as a click on a link or a filter does)."""
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=shutil.which("chromium"), args=["--no-sandbox"], chromium_sandbox=False
        )
        page = b.new_page()
        for name, hash_, selector in [
            ("browser, first load: agents list", "#/agents", "[data-testid=agent-row]"),
            (
                "browser, first load: agent page",
                "#/agent/long-timeline",
                "[data-testid=timeline-entry]",
            ),
        ]:
            times = []
            for _ in range(repeat):
                page.goto("about:blank")
                t = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/ui{hash_}")
                page.wait_for_selector(selector)
                times.append((time.perf_counter() - t) * 1000)
            out.append((name, times))
        to_list, to_agent = [], []
        for i in range(repeat):
            digit = i % 10 if agents >= 100_000 else 0
            first = f"agent-00{digit}0000"
            t = time.perf_counter()
            page.evaluate("h => { location.hash = h; }", f"#/agents?prefix=agent-00{digit}")
            page.wait_for_selector(f"[data-testid=agent-row][data-agent-id='{first}']")
            to_list.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            page.evaluate("h => { location.hash = h; }", "#/agent/long-timeline")
            page.wait_for_selector("[data-testid=timeline-entry]")
            to_agent.append((time.perf_counter() - t) * 1000)
        out.append(("browser, in the page: to a filtered agents list", to_list))
        out.append(("browser, in the page: to the agent page", to_agent))
        b.close()
    return out


def row(name: str, ms: list[float]) -> str:
    ms = sorted(ms)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    return f"| {name} | {statistics.median(ms):.1f} | {p95:.1f} | {ms[-1]:.1f} |"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--agents", type=int, default=100_000)
    ap.add_argument("--timeline", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--browser", action="store_true")
    args = ap.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [
                str(binary()),
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--data-dir",
                data,
                "--config",
                str(CONFIG),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(Path(data) / "sidecar.log", "w"),  # noqa: SIM115
        )
        try:
            wait_ready(port)
            api = Api(port)
            seed(api, args.agents, args.timeline)
            drained(api)
            print(f"binary {binary()}, {args.repeat} calls each, milliseconds")
            print("| route | p50 | p95 | max |\n|---|---|---|---|")
            for name, path in routes(api, args.agents):
                print(row(name, timed(api, path, args.repeat)))
            if args.browser:
                for name, ms in browser_times(port, max(5, args.repeat // 3), args.agents):
                    print(row(name, ms))
        finally:
            proc.terminate()
            proc.wait(timeout=30)


if __name__ == "__main__":
    main()
