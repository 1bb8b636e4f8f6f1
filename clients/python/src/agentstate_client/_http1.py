"""HTTP/1.1 on the wire, without I/O: request bytes, the response parser, transport errors.

Both default transports (``_socket_pool.py``, blocking; ``_asyncio_pool.py``, asyncio)
write what :func:`encode_request` makes and read answers with :func:`read_whole` (a
whole answer in one read) or a :class:`ResponseParser` (fed as bytes arrive); both frame
through one head reader, so framing is decided in one place.

The sidecar answers with ``Content-Length`` bodies and keeps connections open; the parser
also reads chunked bodies and bodies ended by the connection closing (a proxy may send
either), skips ``1xx`` interim answers, and refuses anything else it cannot frame. Hazards:
a connection is reused only when its answer was framed exactly (no stray bytes after it,
no ``Connection: close``); header and body sizes are bounded, so a misbehaving peer cannot
make the client buffer without limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import urlsplit

#: Largest status line plus headers accepted.
HEAD_BYTES_MAX = 64 * 1024
#: Largest response body accepted: a bound against a runaway peer, far above the
#: sidecar's answers in practice.
BODY_BYTES_MAX = 1 << 30
#: Bytes asked of the socket per read.
RECV_BYTES = 64 * 1024
#: Seconds an idle connection is kept. The sidecar closes connections idle for 10 s
#: (hyper's header read timeout); dropping ours well before avoids sending a request on a
#: connection the server is closing at that moment, which would leave it unanswered.
IDLE_S_MAX = 5.0

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class TransportError(Exception):
    """No answer was read. ``sent`` is False when the whole request cannot have reached
    the server (refused or failed connect, a write that failed part way): repeating it is
    safe for any call. True when the server may have acted on it."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class ProtocolError(TransportError):
    """The answer could not be framed (malformed, too large, cut short)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, sent=True)


class Request(NamedTuple):
    """What one call sends; ``target`` is the path with its query string."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes | None
    content_type: str | None


class Response(NamedTuple):
    status: int
    #: Lower-case names; repeated headers joined with ", ".
    headers: Mapping[str, str]
    body: bytes
    #: The connection may carry another request.
    keep_alive: bool


class Origin(NamedTuple):
    """Where requests go: a TCP host and port, or a Unix socket, plus what every request
    says about it (``Host``, the base URL's path)."""

    host: str
    port: int
    uds: str | None
    host_header: str
    path_prefix: str

    @classmethod
    def of(cls, url: str, uds: str | None) -> Origin:
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError(
                f"the built-in transport speaks plain http to the sidecar, not {url!r}; for "
                "anything else pass an httpx transport (transport=...)"
            )
        host = parts.hostname or ""
        if not host and not uds:
            raise ValueError(f"no host in {url!r}")
        port = parts.port or 80
        netloc = parts.netloc.rpartition("@")[2]
        host_header = netloc[:-3] if netloc.endswith(":80") else netloc
        return cls(host, port, uds, host_header, parts.path.rstrip("/"))


def fixed_head(origin: Origin, headers: Mapping[str, str]) -> bytes:
    """The header lines every request of a client carries, encoded once."""
    lines = [("host", origin.host_header), *headers.items()]
    for name, value in lines:
        _check_header(name, value)
    try:
        return "".join(f"{n}: {v}\r\n" for n, v in lines).encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("header values (the token among them) must be ASCII") from None


def encode_request(origin: Origin, fixed: bytes, request: Request) -> bytes:
    head = f"{request.method} {origin.path_prefix}{request.target} HTTP/1.1\r\n"
    for name, value in request.headers.items():
        _check_header(name, value)
        head += f"{name}: {value}\r\n"
    body = request.body
    if body is not None:
        head += f"content-type: {request.content_type}\r\ncontent-length: {len(body)}\r\n"
    elif request.method in _BODY_METHODS:
        head += "content-length: 0\r\n"
    data = head.encode("ascii") + fixed + b"\r\n"
    return data + body if body else data


def _check_header(name: str, value: str) -> None:
    if "\r" in value or "\n" in value or not name or ":" in name or " " in name:
        raise ValueError(f"refusing to send header {name!r}: {value!r}")


# How a body is framed, besides a Content-Length (>= 0).
_BY_CHUNKS, _BY_CLOSE = -1, -2


def read_whole(data: bytes) -> Response | None:
    """``data`` as a response if it is exactly one whole answer framed by Content-Length:
    the sidecar's answers, read in one go, parsed without a :class:`ResponseParser`
    (the usual case, and a third of the parsing cost). None for anything else, which a
    parser then reads."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    status, headers, keep_alive, length = _read_head(data[:end])
    if status < 200 or length != len(data) - end - 4:
        return None
    return Response(status, headers, data[end + 4 :], keep_alive)


def _read_head(head: bytes) -> tuple[int, dict[str, str], bool, int]:
    """Status, headers, keep-alive and framing (a length, or ``_BY_CHUNKS`` or
    ``_BY_CLOSE``) of a response head, without its final blank line."""
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0]
    code = status_line[9:12]
    if (
        status_line[:7] != "HTTP/1."
        or status_line[8:9] != " "
        or not code.isdecimal()
        or status_line[12:13] not in ("", " ")
    ):
        raise ProtocolError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    status = int(code)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name.strip() != name:
            raise ProtocolError(f"malformed header line: {line[:80]!r}")
        name = name.lower()
        value = value.strip()
        if name in headers:
            value = f"{headers[name]}, {value}"
        headers[name] = value
    if status == 101:
        raise ProtocolError("the server switched protocols")
    connection = headers.get("connection")
    if connection is None:
        keep_alive = status_line[7] != "0"
    elif status_line[7] == "0":
        keep_alive = "keep-alive" in connection.lower()
    else:
        keep_alive = "close" not in connection.lower()
    if status < 200 or status in (204, 304):
        return status, headers, keep_alive, 0
    coding = headers.get("transfer-encoding")
    if coding is not None:
        if coding.lower().rsplit(",", 1)[-1].strip() == "chunked":
            return status, headers, keep_alive, _BY_CHUNKS
        return status, headers, False, _BY_CLOSE
    length = headers.get("content-length")
    if length is None:
        return status, headers, False, _BY_CLOSE
    if not length.isdecimal():
        # Repeated headers were joined: equal values are one length, others an error.
        values = {v.strip() for v in length.split(",")}
        length = values.pop() if len(values) == 1 else ""
        if not length.isdecimal():
            raise ProtocolError(f"bad content-length: {headers['content-length']!r}")
    n = int(length)
    if n > BODY_BYTES_MAX:
        raise ProtocolError(f"response body of {n} bytes, over {BODY_BYTES_MAX}")
    return status, headers, keep_alive, n


# Parser states: the head; a Content-Length body; a chunked body (a size line, the
# chunk's bytes, the CRLF after them, the trailer lines); a body ended by the close.
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)
_CHUNKED = (_CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS)


class ResponseParser:
    """Reads one response from the bytes of a connection, fed as they arrive.

    :meth:`feed` returns the :class:`Response` once complete, else None; :meth:`feed_eof`
    is called when the peer closed, and returns the response if closing ends it. Both
    raise :class:`ProtocolError` for an answer that cannot be framed.
    """

    __slots__ = (
        "_buf",
        "_chunk_left",
        "_chunks",
        "_headers",
        "_keep_alive",
        "_received",
        "_state",
        "_status",
    )

    def __init__(self) -> None:
        self._state = _HEAD
        self._buf = b""
        self._status = 0
        self._headers: dict[str, str] = {}
        self._keep_alive = True
        #: Body bytes still expected (``_LENGTH``), or held so far (others).
        self._received = 0
        self._chunks: list[bytes] = []
        self._chunk_left = 0

    def feed(self, data: bytes) -> Response | None:
        buf = self._buf + data if self._buf else data
        self._buf = b""
        while self._state == _HEAD:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > HEAD_BYTES_MAX:
                    raise ProtocolError(f"response headers over {HEAD_BYTES_MAX} bytes")
                self._buf = buf
                return None
            self._read_head(buf[:end])
            buf = buf[end + 4 :]
        state = self._state
        if state == _LENGTH:
            need = self._received
            if len(buf) >= need and not self._chunks:
                # One read held the whole body: the usual case.
                return self._finish(buf[:need], buf[need:])
            self._chunks.append(buf[:need])
            self._received = need - min(need, len(buf))
            if self._received:
                return None
            return self._finish(b"".join(self._chunks), buf[need:])
        if state in _CHUNKED:
            return self._read_chunks(buf)
        if state == _UNTIL_CLOSE:
            self._received += len(buf)
            if self._received > BODY_BYTES_MAX:
                raise ProtocolError(f"response body over {BODY_BYTES_MAX} bytes")
            self._chunks.append(buf)
            return None
        raise ProtocolError("bytes after a complete response")

    def feed_eof(self) -> Response:
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
            body = b"".join(self._chunks)
            return Response(self._status, self._headers, body, False)
        if self._state == _HEAD and not self._buf:
            raise ProtocolError("connection closed before any answer")
        raise ProtocolError("connection closed in the middle of the answer")

    def _read_head(self, head: bytes) -> None:
        status, headers, keep_alive, length = _read_head(head)
        if status < 200:
            return  # an interim answer: the real one follows
        self._status, self._headers, self._keep_alive = status, headers, keep_alive
        if length >= 0:
            self._state, self._received = _LENGTH, length
        elif length == _BY_CHUNKS:
            self._state = _CHUNK_SIZE
        else:
            self._state, self._keep_alive = _UNTIL_CLOSE, False

    def _read_chunks(self, buf: bytes) -> Response | None:
        at, end = 0, len(buf)
        while True:
            if self._state == _CHUNK_DATA:
                take = min(self._chunk_left, end - at)
                self._chunks.append(buf[at : at + take])
                at += take
                self._chunk_left -= take
                if self._chunk_left:
                    break
                self._state = _CHUNK_END
            line_end = buf.find(b"\r\n", at)
            if line_end < 0:
                if end - at > HEAD_BYTES_MAX:
                    raise ProtocolError(f"a chunk line over {HEAD_BYTES_MAX} bytes")
                break
            line, at = buf[at:line_end], line_end + 2
            if self._state == _CHUNK_END:
                if line:
                    raise ProtocolError("chunk not followed by CRLF")
                self._state = _CHUNK_SIZE
            elif self._state == _CHUNK_SIZE:
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size: {size_text[:20]!r}") from None
                self._received += size
                if self._received > BODY_BYTES_MAX:
                    raise ProtocolError(f"response body over {BODY_BYTES_MAX} bytes")
                self._state = _CHUNK_DATA if size else _TRAILERS
                self._chunk_left = size
            elif not line:  # the empty line that ends the trailers
                return self._finish(b"".join(self._chunks), buf[at:])
        self._buf = buf[at:]
        return None

    def _finish(self, body: bytes, rest: bytes) -> Response:
        self._state = _DONE
        # Bytes nobody asked for: the connection's framing cannot be trusted any more.
        keep_alive = self._keep_alive and not rest
        return Response(self._status, self._headers, body, keep_alive)
