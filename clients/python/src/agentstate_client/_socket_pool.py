"""The blocking client's transport: HTTP/1.1 over plain sockets, kept alive and pooled.

Each call takes an idle connection (or opens one), writes the request, reads the answer
and puts the connection back. The idle connections sit in a ``deque``, whose ``pop`` and
``append`` are atomic, so threads share one pool without a lock; a thread never holds
more than one connection, so the threads calling bound the connections in use, and at
most :data:`IDLE_CONNECTIONS_MAX` are kept between calls.

Hazards: a pooled connection may have been closed by the sidecar (idle timeout, restart,
``kill -9``). Before reuse each one is checked for an end-of-file or stray bytes with a
zero-timeout ``poll``, and connections idle past :data:`~agentstate_client._http1.IDLE_S_MAX`
are dropped; otherwise a request written to a dead connection would be left unanswered,
and only idempotent calls may be repeated after that. A forked child process must not
share its parent's connections (their answers would interleave): it drops the idle ones
it inherited.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
import weakref
from collections import deque
from collections.abc import Callable

from agentstate_client._http1 import (
    IDLE_S_MAX,
    RECV_BYTES,
    Origin,
    Request,
    Response,
    ResponseParser,
    TransportError,
    encode_request,
    fixed_head,
    read_whole,
)

#: Connections kept open between calls; more are closed when handed back.
IDLE_CONNECTIONS_MAX = 64

#: Every pool of this process, for the fork hook.
_POOLS: weakref.WeakSet[SocketPool] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pool in list(_POOLS):
        pool.close()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def readable_probe(sock: socket.socket) -> Callable[[], bool]:
    """A check, without waiting, that ``sock`` has something to read. On an idle
    connection that means an end-of-file, a reset, or bytes nobody asked for."""
    if not hasattr(select, "poll"):  # Windows
        return lambda: bool(select.select([sock], [], [], 0)[0])
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return lambda: bool(poller.poll(0))


class _Connection:
    __slots__ = ("generation", "idle_since", "readable", "sock")

    def __init__(self, sock: socket.socket, generation: int) -> None:
        self.sock = sock
        self.generation = generation
        self.idle_since = 0.0
        self.readable = readable_probe(sock)

    def usable(self, now: float) -> bool:
        return now - self.idle_since < IDLE_S_MAX and not self.readable()

    def close(self) -> None:
        self.sock.close()


class SocketPool:
    """Sends :class:`Request`\\ s to one origin over pooled keep-alive connections."""

    def __init__(
        self,
        origin: Origin,
        headers: dict[str, str],
        *,
        connect_timeout_s: float,
        read_timeout_s: float,
    ) -> None:
        self._origin = origin
        self._fixed = fixed_head(origin, headers)
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._idle: deque[_Connection] = deque()
        #: Bumped by :meth:`close`: connections of an older generation are not kept.
        self._generation = 0
        _POOLS.add(self)

    def exchange(self, request: Request) -> Response:
        """The answer to ``request``; :class:`TransportError` if none was read."""
        data = encode_request(self._origin, self._fixed, request)
        conn = self._checkout()
        try:
            response = self._roundtrip(conn.sock, data)
        except BaseException:
            conn.close()
            raise
        if response.keep_alive and conn.generation == self._generation:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
            if len(self._idle) > IDLE_CONNECTIONS_MAX:
                self._discard_oldest()
        else:
            conn.close()
        return response

    def close(self) -> None:
        """Close the idle connections; those in use close when their call ends. The pool
        stays usable (it opens new connections)."""
        self._generation += 1
        while True:
            try:
                self._idle.pop().close()
            except IndexError:
                return

    def _checkout(self) -> _Connection:
        now = time.monotonic()
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                return self._connect()
            if conn.usable(now):
                return conn
            conn.close()

    def _discard_oldest(self) -> None:
        with contextlib.suppress(IndexError):  # another thread emptied it meanwhile
            self._idle.popleft().close()

    def _connect(self) -> _Connection:
        origin = self._origin
        timeout_s = self._connect_timeout_s
        try:
            if origin.uds:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(timeout_s)
                    sock.connect(origin.uds)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((origin.host, origin.port), timeout_s)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except TimeoutError:
            raise TransportError(f"connect timed out after {timeout_s} s", sent=False) from None
        except OSError as e:
            raise TransportError(f"cannot connect: {e}", sent=False) from e
        sock.settimeout(self._read_timeout_s)
        return _Connection(sock, self._generation)

    def _roundtrip(self, sock: socket.socket, data: bytes) -> Response:
        try:
            sock.sendall(data)
        except OSError as e:
            # Part of the request at most reached the server: it cannot have acted on it.
            raise TransportError(f"connection broken while sending: {e!r}", sent=False) from e
        parser: ResponseParser | None = None
        while True:
            try:
                chunk = sock.recv(RECV_BYTES)
            except TimeoutError:
                raise TransportError(
                    f"no answer within {self._read_timeout_s} s", sent=True
                ) from None
            except OSError as e:
                raise TransportError(f"connection broken: {e!r}", sent=True) from e
            if parser is None:
                response = read_whole(chunk)
                if response is not None:
                    return response
                parser = ResponseParser()
            response = parser.feed(chunk) if chunk else parser.feed_eof()
            if response is not None:
                return response
