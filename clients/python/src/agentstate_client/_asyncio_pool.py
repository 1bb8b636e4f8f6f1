"""The asyncio client's transport: HTTP/1.1 on the event loop, kept alive and pooled.

Each connection is a non-blocking socket the loop's selector watches (``add_reader``):
the request is written with ``send``, the answer read with ``recv`` and fed to the
:class:`~agentstate_client._http1.ResponseParser`, and the waiting coroutine woken with the
result. That skips asyncio's transport and stream layers, which cost more CPU per call
than the rest of the client together (bench/client_cpu.py). On loops without
``add_reader`` (Windows' proactor loop) the same connection runs as an
:class:`asyncio.Protocol` under the loop's own transport.

Bounds: at most :data:`CONNECTIONS_MAX` connections; callers beyond wait for one to be
handed back, for at most the read timeout. Every answer is awaited under a deadline, which
each byte received pushes back; one timer per pool enforces them (a timer per call would
cost as much as the exchange). Hazards: a pool belongs to the loop that opened its
connections; used from another loop it drops them and starts again. A connection is
reused only after a completely framed answer, and is checked for the server's close
before reuse (the loop may not have run since it arrived); connections idle past
:data:`~agentstate_client._http1.IDLE_S_MAX` are dropped rather than reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any

from agentstate_client._http1 import (
    IDLE_S_MAX,
    RECV_BYTES,
    Origin,
    ProtocolError,
    Request,
    Response,
    ResponseParser,
    TransportError,
    encode_request,
    fixed_head,
    read_whole,
)
from agentstate_client._socket_pool import readable_probe

#: Most connections open at once (LangGraph runs 32 graph threads at once in
#: bench/langgraph; the sidecar accepts 1,024).
CONNECTIONS_MAX = 100


class _Connection(asyncio.Protocol):
    """One connection and the exchange in progress on it. The I/O is a subclass's."""

    def __init__(self, pool: AsyncioPool, loop: asyncio.AbstractEventLoop, generation: int) -> None:
        self._pool = pool
        self._loop = loop
        self.generation = generation
        self.closed = False
        #: ``time.monotonic()`` of the last byte read, or of the request's start: the
        #: answer's deadline runs from it, and an idle connection's age.
        self.active_at = 0.0
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[Response] | None = None
        #: The whole request was handed to the kernel: the server may act on it.
        self._written = False

    @property
    def busy(self) -> bool:
        return self._waiter is not None

    def start(self, data: bytes, waiter: asyncio.Future[Response], now: float) -> None:
        self._parser = None  # made only if the answer does not come whole in one read
        self._waiter = waiter
        self._written = False
        self.active_at = now
        self._write(data)

    def reusable(self) -> bool:
        return not self.closed and not self._writing()

    def sound(self) -> bool:
        """Still fit for a request after sitting idle."""
        return not self.closed

    def time_out(self, timeout_s: float) -> None:
        self._fail(TransportError(f"no answer within {timeout_s} s", sent=self._written))
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._fail(TransportError("connection closed", sent=self._written))
        self._close_io()
        self._pool._forget(self)

    # --- fed by the I/O (asyncio.Protocol's callbacks) -------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self.close()  # bytes on an idle connection: its framing is lost
            return
        self.active_at = time.monotonic()
        try:
            if self._parser is None:
                response = read_whole(data)
                if response is not None:
                    self._answer(response)
                    return
                self._parser = ResponseParser()
            response = self._parser.feed(data)
        except ProtocolError as e:
            self._fail(e)
            self.close()
            return
        if response is not None:
            self._answer(response)

    def eof_received(self) -> bool:
        if self._waiter is not None:
            try:
                response = (self._parser or ResponseParser()).feed_eof()
            except ProtocolError as e:
                self._fail(e if self._written else TransportError(str(e), sent=False))
            else:
                self._answer(response)
        self.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(TransportError(f"connection lost: {exc!r}", sent=self._written))
        self.close()

    def _answer(self, response: Response) -> None:
        waiter = self._waiter
        self._parser = self._waiter = None
        # Back to the pool first: framed to its end, the connection is fit for another
        # request even if its caller was cancelled meanwhile.
        self._pool._checkin(self, response.keep_alive)
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def _fail(self, error: TransportError) -> None:
        waiter = self._waiter
        self._parser = self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    # --- the I/O -----------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def _writing(self) -> bool:
        raise NotImplementedError

    def _close_io(self) -> None:
        raise NotImplementedError


class _SocketConnection(_Connection):
    """Reads and writes its socket from the loop's selector callbacks."""

    def __init__(
        self,
        pool: AsyncioPool,
        loop: asyncio.AbstractEventLoop,
        generation: int,
        sock: socket.socket,
    ) -> None:
        super().__init__(pool, loop, generation)
        self._sock = sock
        self._fd = sock.fileno()
        self._pending: memoryview | None = None
        self._readable = readable_probe(sock)
        loop.add_reader(self._fd, self._on_readable)  # NotImplementedError: no selector

    def sound(self) -> bool:
        # The loop sees a server's close only when it next runs, which may be after this
        # caller's request went out on the dead connection: check now.
        return not self.closed and not self._readable()

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.connection_lost(e)
            return
        if data:
            self.data_received(data)
        else:
            self.eof_received()

    def _write(self, data: bytes) -> None:
        try:
            n = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as e:
            self._fail(TransportError(f"connection broken while sending: {e!r}", sent=False))
            self.close()
            return
        if n == len(data):
            self._written = True
            return
        self._pending = memoryview(data)[n:]
        self._loop.add_writer(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        pending = self._pending
        if pending is None:
            return
        try:
            n = self._sock.send(pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._fail(TransportError(f"connection broken while sending: {e!r}", sent=False))
            self.close()
            return
        if n < len(pending):
            self._pending = pending[n:]
            return
        self._pending = None
        self._loop.remove_writer(self._fd)
        self._written = True

    def _writing(self) -> bool:
        return self._pending is not None

    def _close_io(self) -> None:
        # A closed loop has let go of its callbacks already.
        with contextlib.suppress(RuntimeError, ValueError):
            self._loop.remove_reader(self._fd)
            if self._pending is not None:
                self._loop.remove_writer(self._fd)
        self._pending = None
        self._sock.close()


class _TransportConnection(_Connection):
    """The same connection under an asyncio transport, for loops without ``add_reader``."""

    _transport: asyncio.Transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def _write(self, data: bytes) -> None:
        self._transport.write(data)
        # Buffered by the transport: from here on it may reach the server.
        self._written = True

    def _writing(self) -> bool:
        return self._transport.get_write_buffer_size() > 0

    def _close_io(self) -> None:
        self._transport.abort()


class AsyncioPool:
    """Sends :class:`Request`\\ s to one origin over pooled keep-alive connections."""

    def __init__(
        self,
        origin: Origin,
        headers: dict[str, str],
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
        connections_max: int = CONNECTIONS_MAX,
    ) -> None:
        self._origin = origin
        self._fixed = fixed_head(origin, headers)
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._connections_max = connections_max
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Bumped when the pool is closed or changes loops: older connections are not kept.
        self._generation = 0
        self._idle: deque[_Connection] = deque()
        #: Every open connection on the loop, whatever its generation (for deadlines).
        self._conns: set[_Connection] = set()
        #: Connections of this generation open or opening, against ``connections_max``.
        self._open = 0
        #: Callers waiting for a connection: handed one, or None to try again.
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def exchange(self, request: Request) -> Awaitable[Response]:
        """The answer to ``request``, to await; :class:`TransportError` if none was read.

        Not a coroutine: with an idle connection at hand the caller awaits the answer's
        future itself (a coroutine in between costs a microsecond per call). A caller that
        stops waiting (cancelled) leaves the connection to read the answer to its end and
        go back to the pool, or to be closed at its deadline.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._start_on(loop)
        data = encode_request(self._origin, self._fixed, request)
        now = time.monotonic()
        conn = self._idle_connection(now)
        if conn is None:
            return self._exchange_on_new(loop, data)
        waiter: asyncio.Future[Response] = loop.create_future()
        conn.start(data, waiter, now)
        if self._timer is None:
            self._timer = loop.call_later(self._read_timeout_s, self._sweep)
        return waiter

    async def _exchange_on_new(self, loop: asyncio.AbstractEventLoop, data: bytes) -> Response:
        conn = await self._new_or_freed_connection(loop)
        waiter: asyncio.Future[Response] = loop.create_future()
        conn.start(data, waiter, time.monotonic())
        if self._timer is None:
            self._timer = loop.call_later(self._read_timeout_s, self._sweep)
        return await waiter

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their call ends. The pool
        stays usable (it opens new connections)."""
        self._retire()

    # --- connections ---------------------------------------------------------------------

    def _idle_connection(self, now: float) -> _Connection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if now - conn.active_at < IDLE_S_MAX and conn.sound():
                return conn
            conn.close()
        return None

    async def _new_or_freed_connection(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        deadline = time.monotonic() + self._read_timeout_s
        while True:
            conn = self._idle_connection(time.monotonic())
            if conn is not None:
                return conn
            if self._open < self._connections_max:
                self._open += 1
                try:
                    return await self._connect(loop, self._generation)
                except BaseException:
                    self._open -= 1
                    self._wake(None)
                    raise
            handed = await self._wait(deadline)
            if handed is not None:
                return handed

    async def _wait(self, deadline: float) -> _Connection | None:
        assert self._loop is not None
        waiter: asyncio.Future[_Connection | None] = self._loop.create_future()
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter, max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise TransportError(
                f"all {self._connections_max} connections stayed busy for {self._read_timeout_s} s",
                sent=False,
            ) from None
        except BaseException:
            # Handed a connection (or a free slot) just as it was cancelled: pass it on.
            if waiter.done() and not waiter.cancelled():
                handed = waiter.result()
                if handed is not None:
                    self._checkin(handed, True)
                else:
                    self._wake(None)
            raise

    def _checkin(self, conn: _Connection, keep_alive: bool) -> None:
        if not keep_alive or not conn.reusable() or conn.generation != self._generation:
            conn.close()
            return
        if self._waiters and self._wake(conn):
            return
        self._idle.append(conn)

    def _wake(self, conn: _Connection | None) -> bool:
        """Hand ``conn`` (or a free slot, None) to the first caller still waiting."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _forget(self, conn: _Connection) -> None:
        """A connection closed: free its slot."""
        self._conns.discard(conn)
        if conn.generation != self._generation:
            return
        self._open -= 1
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        self._wake(None)

    async def _connect(self, loop: asyncio.AbstractEventLoop, generation: int) -> _Connection:
        origin = self._origin
        timeout_s = self._connect_timeout_s
        try:
            if origin.uds:
                candidates: list[tuple[int, Any]] = [(socket.AF_UNIX, origin.uds)]
            else:
                candidates = [(info[0], info[4]) for info in await self._resolve(loop)]
            opening = self._open_one(loop, generation, candidates)
            conn = await asyncio.wait_for(opening, timeout_s)
        except asyncio.TimeoutError:
            raise TransportError(f"connect timed out after {timeout_s} s", sent=False) from None
        except OSError as e:
            raise TransportError(f"cannot connect: {e}", sent=False) from e
        self._conns.add(conn)
        return conn

    async def _resolve(self, loop: asyncio.AbstractEventLoop) -> list[Any]:
        host, port = self._origin.host, self._origin.port
        try:  # an address needs no lookup (and no thread for one)
            return socket.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST
            )
        except socket.gaierror:
            return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)

    async def _open_one(
        self,
        loop: asyncio.AbstractEventLoop,
        generation: int,
        candidates: list[tuple[int, Any]],
    ) -> _Connection:
        """A connection to the first of ``candidates`` (family, address) that accepts."""
        for i, (family, address) in enumerate(candidates):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
                if family != socket.AF_UNIX:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    return _SocketConnection(self, loop, generation, sock)
                except NotImplementedError:
                    _, conn = await loop.create_connection(
                        lambda: _TransportConnection(self, loop, generation), sock=sock
                    )
                    return conn
            except BaseException as e:
                sock.close()
                if not isinstance(e, OSError) or i == len(candidates) - 1:
                    raise
        raise OSError(f"no address for {self._origin.host}")

    # --- deadlines and lifecycle -----------------------------------------------------

    def _sweep(self) -> None:
        """Fail the exchanges past their deadline; come back at the nearest other one."""
        self._timer = None
        now = time.monotonic()
        timeout_s = self._read_timeout_s
        nearest: float | None = None
        for conn in list(self._conns):
            if not conn.busy:
                continue
            deadline = conn.active_at + timeout_s
            if deadline <= now:
                conn.time_out(timeout_s)
            elif nearest is None or deadline < nearest:
                nearest = deadline
        if nearest is not None and self._loop is not None:
            self._timer = self._loop.call_later(nearest - now, self._sweep)

    def _start_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Leave the previous loop's connections, timer and waiters behind."""
        self._retire()
        self._conns = set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._loop = loop

    def _retire(self) -> None:
        """Let go of every connection: idle ones close now, busy ones when their call
        ends; callers waiting for one try again."""
        self._generation += 1
        self._open = 0
        idle, self._idle = self._idle, deque()
        for conn in idle:
            conn.close()
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            # A waiter of a closed loop cannot be woken, nor needs to be.
            with contextlib.suppress(RuntimeError):
                if not waiter.done():
                    waiter.set_result(None)
