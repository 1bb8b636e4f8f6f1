"""The HTTP/1.1 framing of the default transports, without I/O: request bytes, and the
response parser fed whole answers, byte by byte, and answers it must refuse."""

from __future__ import annotations

import pytest

from agentstate_client._http1 import (
    HEAD_BYTES_MAX,
    Origin,
    ProtocolError,
    Request,
    Response,
    ResponseParser,
    encode_request,
    fixed_head,
    read_whole,
)

ORIGIN = Origin.of("http://127.0.0.1:7700", None)


def parse(data: bytes, *, step: int = 0, eof: bool = False) -> Response:
    """Feed ``data`` whole, or ``step`` bytes at a time; None is never the last word."""
    parser = ResponseParser()
    pieces = [data[i : i + step] for i in range(0, len(data), step)] if step else [data]
    for i, piece in enumerate(pieces):
        response = parser.feed(piece)
        if response is not None:
            assert i == len(pieces) - 1, "complete before its last byte"
            return response
    assert eof, "incomplete without an end-of-file"
    return parser.feed_eof()


SIDECAR_ANSWER = (
    b'HTTP/1.1 200 OK\r\ncontent-type: application/msgpack\r\netag: "1"\r\n'
    b"content-length: 5\r\ndate: Mon, 07 Dec 2026 02:03:16 GMT\r\n\r\nhello"
)


@pytest.mark.parametrize("step", [0, 1, 7])
def test_a_content_length_answer_whole_or_in_pieces(step: int) -> None:
    r = parse(SIDECAR_ANSWER, step=step)
    assert (r.status, r.body, r.keep_alive) == (200, b"hello", True)
    assert r.headers["content-type"] == "application/msgpack"
    assert r.headers["etag"] == '"1"'


def test_a_whole_answer_in_one_read_needs_no_parser() -> None:
    r = read_whole(SIDECAR_ANSWER)
    assert r is not None
    assert (r.status, r.body, r.keep_alive) == (200, b"hello", True)
    assert r == parse(SIDECAR_ANSWER)
    no_content = b"HTTP/1.1 204 No Content\r\n\r\n"
    assert read_whole(no_content) == parse(no_content)
    # Anything else is left to a parser: cut short, more than one answer, other framings.
    for data in (
        SIDECAR_ANSWER[:-1],
        SIDECAR_ANSWER[:20],
        SIDECAR_ANSWER + b"HTTP/1.1",
        b"HTTP/1.1 100 Continue\r\n\r\n" + SIDECAR_ANSWER,
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nuntil the close",
    ):
        assert read_whole(data) is None, data
    with pytest.raises(ProtocolError, match="status line"):
        read_whole(b"SSH-2.0\r\n\r\n")


@pytest.mark.parametrize("step", [0, 1, 3])
def test_a_chunked_answer_with_extensions_and_trailers(step: int) -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\nb\r\nfrom chunks\r\n0\r\nx-trailer: t\r\n\r\n"
    )
    r = parse(data, step=step)
    assert (r.body, r.keep_alive) == (b"hello from chunks", True)


@pytest.mark.parametrize("step", [0, 2])
def test_an_answer_ended_by_the_close_is_not_kept(step: int) -> None:
    r = parse(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nall of it", step=step, eof=True)
    assert (r.body, r.keep_alive) == (b"all of it", False)


def test_interim_answers_are_skipped_and_empty_statuses_have_no_body() -> None:
    r = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\ndate: x\r\n\r\n")
    assert (r.status, r.body, r.keep_alive) == (204, b"", True)


def test_connection_close_and_http_1_0_are_not_kept() -> None:
    close = b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n"
    assert not parse(close).keep_alive
    assert not parse(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keep_alive
    kept = b"HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n"
    assert parse(kept).keep_alive


def test_bytes_after_the_answer_make_the_connection_unusable() -> None:
    r = parse(SIDECAR_ANSWER + b"HTTP/1.1 200 OK\r\n")
    assert (r.body, r.keep_alive) == (b"hello", False)


def test_repeated_headers_are_joined_and_equal_lengths_accepted() -> None:
    r = parse(b"HTTP/1.1 200 OK\r\nvia: a\r\nVia: b\r\ncontent-length: 2, 2\r\n\r\nok")
    assert (r.headers["via"], r.body) == ("a, b", b"ok")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "status line"),
        (b"HTTP/1.1 2OO OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nbad name : x\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n", "content-length"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "content-length"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: \xb2\r\n\r\n", "content-length"),
        (b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n", "over"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nab\r\n", "CRLF"),
    ],
)
def test_answers_that_cannot_be_framed_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as e:
        parse(data)
    assert e.value.sent, "the request went out: only idempotent calls may be repeated"


def test_headers_are_bounded() -> None:
    parser = ResponseParser()
    parser.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(ProtocolError, match="headers over"):
        parser.feed(b"x-pad: " + b"a" * HEAD_BYTES_MAX)


def test_an_answer_cut_short_is_an_error() -> None:
    for cut in (b"", b"HTTP/1.1 200", SIDECAR_ANSWER[:-1]):
        parser = ResponseParser()
        if cut:
            assert parser.feed(cut) is None
        with pytest.raises(ProtocolError, match="closed"):
            parser.feed_eof()


def test_request_bytes() -> None:
    fixed = fixed_head(ORIGIN, {"accept": "application/msgpack"})
    get = encode_request(ORIGIN, fixed, Request("GET", "/v1/agents/a?x=1", {}, None, None))
    assert get == (
        b"GET /v1/agents/a?x=1 HTTP/1.1\r\nhost: 127.0.0.1:7700\r\n"
        b"accept: application/msgpack\r\n\r\n"
    )
    put = encode_request(
        ORIGIN, fixed, Request("PUT", "/v1/agents/a", {"if-match": '"3"'}, b"{}", "x/y")
    )
    assert put.startswith(b'PUT /v1/agents/a HTTP/1.1\r\nif-match: "3"\r\n')
    assert b"content-type: x/y\r\ncontent-length: 2\r\n" in put
    assert put.endswith(b"\r\n\r\n{}")
    post = encode_request(ORIGIN, fixed, Request("POST", "/x", {}, None, None))
    assert b"content-length: 0\r\n" in post


def test_origins() -> None:
    assert Origin.of("http://localhost", None).host_header == "localhost"
    assert Origin.of("http://[::1]:7700/", None)[:2] == ("::1", 7700)
    prefixed = Origin.of("http://h:1/proxy/agentstate/", None)
    assert prefixed.path_prefix == "/proxy/agentstate"
    uds = Origin.of("http://agentstate", "/run/agentstate.sock")
    assert (uds.uds, uds.host_header) == ("/run/agentstate.sock", "agentstate")
    with pytest.raises(ValueError, match="httpx"):
        Origin.of("https://sidecar:7700", None)


def test_header_injection_is_refused() -> None:
    with pytest.raises(ValueError, match="refusing"):
        fixed_head(ORIGIN, {"authorization": "Bearer x\r\nx-evil: 1"})
    with pytest.raises(ValueError, match="ASCII"):
        fixed_head(ORIGIN, {"authorization": "Bearer caf\u00e9"})
    fixed = fixed_head(ORIGIN, {})
    with pytest.raises(ValueError, match="refusing"):
        encode_request(ORIGIN, fixed, Request("GET", "/", {"if-match": "1\n2"}, None, None))
