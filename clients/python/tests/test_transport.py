"""The clients' own HTTP/1.1 transports, sync and async, over TCP and the Unix socket:
keep-alive (counted by a proxy in front of the sidecar), concurrency through the pools,
reconnecting after the sidecar is killed, and the failures a real server can produce
(no answer, an answer cut short, a kept-alive connection closed by the server), played
by small scripted servers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from _procs import Sidecar
from agentstate_client import AsyncClient, Client, ConnectionFailed

TRANSPORTS = ["tcp", "uds"]


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --- helpers: a counting proxy and scripted servers -------------------------------------


def _listener(path: Path | None) -> socket.socket:
    if path is None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
    s.listen(128)
    return s


def _address(listener: socket.socket) -> dict[str, str]:
    """Client options reaching ``listener``."""
    if listener.family == socket.AF_UNIX:
        return {"uds": listener.getsockname()}
    return {"url": f"http://127.0.0.1:{listener.getsockname()[1]}"}


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class CountingProxy:
    """Forwards connections to the sidecar (TCP or its Unix socket) and counts them."""

    def __init__(self, sidecar: Sidecar, uds: Path | None) -> None:
        self.upstream: Any = str(uds) if uds else ("127.0.0.1", sidecar.port)
        self.listener = _listener(uds.with_suffix(".proxy") if uds else None)
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def options(self) -> dict[str, str]:
        return _address(self.listener)

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            family = socket.AF_UNIX if isinstance(self.upstream, str) else socket.AF_INET
            upstream = socket.socket(family)
            upstream.connect(self.upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self.listener.close()


def read_request(conn: socket.socket) -> bytes:
    """One request's head and body (by its content-length); b"" if the client left."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return head


class ScriptedServer:
    """Accepts connections and hands each, with its number, to ``script``."""

    def __init__(self, script: Callable[[socket.socket, int], None]) -> None:
        self.listener = _listener(None)
        self.connections = 0
        self.script = script
        threading.Thread(target=self._serve, daemon=True).start()

    def options(self) -> dict[str, str]:
        return _address(self.listener)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            number, self.connections = self.connections, self.connections + 1
            threading.Thread(target=self._run, args=(conn, number), daemon=True).start()

    def _run(self, conn: socket.socket, number: int) -> None:
        with conn, contextlib.suppress(OSError):
            self.script(conn, number)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[Callable[[Callable[[socket.socket, int], None]], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Callable[[socket.socket, int], None]) -> ScriptedServer:
        servers.append(ScriptedServer(script))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def answer(body: bytes, *extra: bytes, media: bytes = b"text/plain") -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: " + media + b"\r\n" + b"".join(extra)
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


def state_wire(agent_id: str) -> bytes:
    return msgpack.packb(
        {
            "agent_id": agent_id,
            "state_name": "idle",
            "version": 1,
            "created_at": "2026-01-02T03:04:05.123456789Z",
            "updated_at": "2026-01-02T03:04:05Z",
            "state_data": {"n": 1},
        }
    )


@pytest.fixture
def sockets() -> Iterator[Path]:
    """A directory for Unix sockets, with a short path (they are limited to ~100 bytes,
    which pytest's tmp_path with a long test name can exceed)."""
    path = Path(tempfile.mkdtemp(prefix="as-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=TRANSPORTS)
def proxied(
    request: pytest.FixtureRequest, make_sidecar: Any, sockets: Path
) -> Iterator[CountingProxy]:
    """The sidecar behind a counting proxy, on TCP or on its Unix socket."""
    uds = sockets / "agentstate.sock" if request.param == "uds" else None
    sidecar = make_sidecar("sqlite", *(["--unix-socket", str(uds)] if uds else []))
    proxy = CountingProxy(sidecar, uds)
    yield proxy
    proxy.close()


# --- keep-alive and concurrency -----------------------------------------------------------


def test_sync_calls_share_one_kept_alive_connection(proxied: CountingProxy) -> None:
    a = uid("k")
    with Client(**proxied.options()) as c:
        c.save_agent(a, "idle", state_data={"x": "y" * 1024})
        for _ in range(50):
            assert c.get_agent(a).state_data["x"][0] == "y"
        c.append_messages(a, [{"role": "user", "content": "hi"}])
    assert proxied.connections == 1


async def test_async_calls_share_one_kept_alive_connection(proxied: CountingProxy) -> None:
    a = uid("k")
    async with AsyncClient(**proxied.options()) as c:
        await c.save_agent(a, "idle", state_data={"x": "y" * 1024})
        for _ in range(50):
            assert (await c.get_agent(a)).version == 1
    assert proxied.connections == 1


async def test_concurrent_async_calls_through_the_pool(proxied: CountingProxy) -> None:
    a = uid("c")
    async with AsyncClient(**proxied.options()) as c:
        await c.save_agent(a, "idle")
        states = await asyncio.gather(*(c.get_agent(a) for _ in range(200)))
        assert {s.agent_id for s in states} == {a}
        opened = proxied.connections
        assert opened <= 100, "the pool holds at most CONNECTIONS_MAX connections"
        # The next burst reuses them.
        await asyncio.gather(*(c.get_agent(a) for _ in range(min(opened, 50))))
        assert proxied.connections == opened
        # A smaller bound holds too: callers past it wait for a connection.
        c._transport._connections_max = 4  # type: ignore[attr-defined]
        await c.aclose()
        before = proxied.connections
        writes = await asyncio.gather(
            *(c.append_messages(a, [{"role": "user", "content": str(i)}]) for i in range(60))
        )
        assert len({w.version for w in writes}) == 60
        assert proxied.connections - before <= 4


def test_threads_share_the_sync_pool(proxied: CountingProxy) -> None:
    a = uid("t")
    errors: list[BaseException] = []
    with Client(**proxied.options()) as c:
        c.save_agent(a, "idle")

        def work() -> None:
            try:
                for _ in range(40):
                    assert c.get_agent(a).agent_id == a
            except BaseException as e:  # reported by the test thread
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert proxied.connections <= 8


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_opens_its_own_connections(proxied: CountingProxy) -> None:
    """Sharing the parent's kept-alive connection would interleave their answers."""
    with Client(**proxied.options()) as c:
        assert c.health()
        pid = os.fork()
        if pid == 0:  # the child: report through the exit code, skip pytest's teardown
            code = 1
            try:
                code = 0 if c.health() else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert c.health()
    assert proxied.connections == 2


def test_an_async_client_moves_between_event_loops(proxied: CountingProxy) -> None:
    a = uid("l")
    c = AsyncClient(**proxied.options())
    assert asyncio.run(c.save_agent(a, "idle")) == 1
    assert asyncio.run(c.get_agent(a)).version == 1  # a new loop: new connections
    asyncio.run(c.aclose())


def test_loops_without_add_reader_use_asyncio_transports(proxied: CountingProxy) -> None:
    """Windows' proactor loop has no add_reader: the pool falls back to the loop's own
    transport, with the same framing and keep-alive."""

    class NoReaderLoop(asyncio.SelectorEventLoop):
        def add_reader(self, *args: Any) -> None:
            raise NotImplementedError

    async def calls() -> None:
        a = uid("p")
        async with AsyncClient(**proxied.options()) as c:
            await c.save_agent(a, "idle", state_data={"x": 1})
            for _ in range(20):
                assert (await c.get_agent(a)).state_data == {"x": 1}

    loop = NoReaderLoop()
    try:
        loop.run_until_complete(calls())
    finally:
        loop.close()
    assert proxied.connections == 1


# --- the sidecar killed and restarted ---------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_calls_reconnect_after_kill_9(
    make_sidecar: Any, sockets: Path, transport: str
) -> None:
    uds = sockets / "agentstate.sock"
    sidecar: Sidecar = make_sidecar(
        "sqlite", *(["--unix-socket", str(uds)] if transport == "uds" else [])
    )
    options: dict[str, Any] = {"uds": str(uds)} if transport == "uds" else {"url": sidecar.url}
    a = uid("r")
    # No retries: the pooled connections, dead after the kill, must be noticed before use
    # (a non-idempotent call written to one could not be repeated).
    with Client(**options, max_retries=0) as c:
        async with AsyncClient(**options, max_retries=0) as ac:
            c.save_agent(a, "idle")
            await ac.append_messages(a, [{"role": "user", "content": "before"}])
            sidecar.restart()
            c.append_messages(a, [{"role": "user", "content": "sync after"}])
            await ac.append_messages(a, [{"role": "user", "content": "async after"}])
            sidecar.kill9()
            with pytest.raises(ConnectionFailed):
                c.get_agent(a)
            with pytest.raises(ConnectionFailed):
                await ac.get_agent(a)
            sidecar.start()
            contents = [m.content for m in c.list_messages(a)]
            assert contents == ["before", "sync after", "async after"]
            assert [m.content for m in await ac.list_messages(a)] == contents


# --- what a server can do wrong -----------------------------------------------------------


def test_no_answer_times_out() -> None:
    silent = _listener(None)  # the kernel accepts; nobody ever answers
    try:
        with Client(**_address(silent), timeout=0.3, max_retries=0) as c:
            started = time.monotonic()
            with pytest.raises(ConnectionFailed, match=r"no answer within 0\.3 s"):
                c.health()
            assert 0.25 < time.monotonic() - started < 3

        async def call() -> None:
            async with AsyncClient(**_address(silent), timeout=0.3, max_retries=0) as ac:
                started = time.monotonic()
                with pytest.raises(ConnectionFailed, match=r"no answer within 0\.3 s"):
                    await ac.health()
                assert 0.25 < time.monotonic() - started < 3

        asyncio.run(call())
    finally:
        silent.close()


def test_nothing_listening_on_the_unix_socket(sockets: Path) -> None:
    missing = str(sockets / "nobody.sock")
    with Client(uds=missing, max_retries=1) as c, pytest.raises(ConnectionFailed, match="nobody"):
        c.health()

    async def call() -> None:
        async with AsyncClient(uds=missing, max_retries=1) as ac:
            with pytest.raises(ConnectionFailed, match="cannot connect"):
                await ac.health()

    asyncio.run(call())


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_an_answer_cut_short(scripted: Any, flavor: str) -> None:
    """The connection closes mid-answer: an idempotent call is repeated, a
    non-idempotent one is not (the server may have applied it)."""

    def cut(conn: socket.socket, _number: int) -> None:
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part")

    server = scripted(cut)
    options = {**server.options(), "max_retries": 2}
    if flavor == "sync":
        with Client(**options) as c:
            with pytest.raises(ConnectionFailed, match="middle of the answer"):
                c.get_agent("a")
            assert server.connections == 3
            with pytest.raises(ConnectionFailed):
                c.transition("a", "b", "go")
            assert server.connections == 4
    else:

        async def calls() -> None:
            async with AsyncClient(**options) as ac:
                with pytest.raises(ConnectionFailed, match="middle of the answer"):
                    await ac.get_agent("a")
                assert server.connections == 3
                with pytest.raises(ConnectionFailed):
                    await ac.transition("a", "b", "go")
                assert server.connections == 4

        asyncio.run(calls())


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_kept_alive_connection_the_server_closed_is_not_reused(
    scripted: Any, flavor: str
) -> None:
    """The server answers, keeps the connection a moment, then closes it (as the sidecar
    does after 10 s idle): the next call goes on a new connection, with no retry."""

    def answer_then_close(conn: socket.socket, _number: int) -> None:
        read_request(conn)
        conn.sendall(answer(b"ok"))
        time.sleep(0.1)

    server = scripted(answer_then_close)
    options = {**server.options(), "max_retries": 0}
    if flavor == "sync":
        with Client(**options) as c:
            assert c.health()
            time.sleep(0.3)
            assert c.health()
    else:

        async def calls() -> None:
            async with AsyncClient(**options) as ac:
                assert await ac.health()
                await asyncio.sleep(0.3)
                assert await ac.health()

        asyncio.run(calls())
    assert server.connections == 2


def test_a_cancelled_call_leaves_its_connection_to_finish(scripted: Any) -> None:
    """A caller that stops waiting does not cost the connection: its answer is read to
    the end and the connection serves the next call."""

    def slow(conn: socket.socket, _number: int) -> None:
        while read_request(conn):
            time.sleep(0.2)
            conn.sendall(answer(b"ok"))

    server = scripted(slow)

    async def calls() -> None:
        async with AsyncClient(**server.options(), max_retries=0) as ac:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(ac.health(), 0.05)
            await asyncio.sleep(0.4)
            assert await ac.health()

    asyncio.run(calls())
    assert server.connections == 1


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_chunked_and_close_delimited_answers(scripted: Any, flavor: str) -> None:
    """The sidecar frames by Content-Length; a proxy may chunk, or end the body by
    closing. Chunked answers keep the connection; close-delimited ones cannot."""
    body = state_wire("a")

    def chunked_twice_then_close_delimited(conn: socket.socket, number: int) -> None:
        if number == 0:
            for _ in range(2):
                read_request(conn)
                head = b"HTTP/1.1 200 OK\r\ncontent-type: application/msgpack\r\n"
                conn.sendall(head + b"transfer-encoding: chunked\r\n\r\n")
                for i in range(0, len(body), 7):
                    piece = body[i : i + 7]
                    conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                conn.sendall(b"0\r\n\r\n")
        read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/msgpack\r\n\r\n" + body)

    server = scripted(chunked_twice_then_close_delimited)
    if flavor == "sync":
        with Client(**server.options()) as c:
            states = [c.get_agent("a") for _ in range(4)]
    else:

        async def calls() -> list[Any]:
            async with AsyncClient(**server.options()) as ac:
                return [await ac.get_agent("a") for _ in range(4)]

        states = asyncio.run(calls())
    assert [s.state_data for s in states] == [{"n": 1}] * 4
    assert states[0].created_at.microsecond == 123456
    # Two chunked answers and a close-delimited one on the first connection, the last
    # answer on a second.
    assert server.connections == 2


def test_the_default_transports_need_neither_httpx_nor_aiohttp(proxied: CountingProxy) -> None:
    script = f"""
import asyncio, sys
from agentstate_client import AsyncClient, Client
options = {proxied.options()!r}
with Client(**options) as c:
    assert c.health()
async def main():
    async with AsyncClient(**options) as c:
        assert await c.health()
asyncio.run(main())
loaded = sorted(m for m in ("httpx", "aiohttp") if m in sys.modules)
assert not loaded, loaded
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
