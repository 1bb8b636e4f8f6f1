"""What both clients do around the I/O: pick the transport, build the :class:`Request` of
a :class:`Call`, read the answer into a :class:`Reply`, and turn failures into typed
errors.

The default transports speak HTTP/1.1 themselves (``_socket_pool.py``,
``_asyncio_pool.py``); a caller's httpx transport is used through ``_httpx.py``, the only
module that imports httpx, and only when one is given.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

from agentstate_client import _codec
from agentstate_client._api import NO_BODY, Call, Reply
from agentstate_client._asyncio_pool import AsyncioPool
from agentstate_client._config import Settings
from agentstate_client._http1 import Origin, Request, Response, TransportError
from agentstate_client._socket_pool import SocketPool
from agentstate_client.errors import AgentstateError, ConnectionFailed, error_from_response

if TYPE_CHECKING:
    import httpx

#: Bound on connecting, whatever the request timeout (a local sidecar answers at once).
CONNECT_TIMEOUT_S_MAX = 5.0


class BlockingTransport(Protocol):
    def exchange(self, request: Request) -> Response: ...

    def close(self) -> None: ...


class AsyncTransport(Protocol):
    def exchange(self, request: Request) -> Awaitable[Response]: ...

    async def aclose(self) -> None: ...


def blocking_transport(
    settings: Settings, httpx_transport: httpx.BaseTransport | None
) -> BlockingTransport:
    if httpx_transport is not None:
        from agentstate_client._httpx import HttpxBlocking

        return HttpxBlocking(settings, httpx_transport, connect_timeout_s(settings))
    return SocketPool(
        Origin.of(settings.url, settings.uds),
        settings.headers(),
        connect_timeout_s=connect_timeout_s(settings),
        read_timeout_s=settings.timeout_s,
    )


def async_transport(
    settings: Settings, httpx_transport: httpx.AsyncBaseTransport | None
) -> AsyncTransport:
    if httpx_transport is not None:
        from agentstate_client._httpx import HttpxAsync

        return HttpxAsync(settings, httpx_transport, connect_timeout_s(settings))
    return AsyncioPool(
        Origin.of(settings.url, settings.uds),
        settings.headers(),
        connect_timeout_s=connect_timeout_s(settings),
        read_timeout_s=settings.timeout_s,
    )


def connect_timeout_s(settings: Settings) -> float:
    return min(CONNECT_TIMEOUT_S_MAX, settings.timeout_s)


def request_of(settings: Settings, call: Call[Any]) -> Request:
    target = call.path
    params = call.params
    durability = effective_durability(settings, call)
    if durability is not None:
        params = {**params, "durability": durability}
    if params:
        target += "?" + urlencode(params)
    if call.body is NO_BODY:
        return Request(call.method, target, call.headers, None, None)
    body = _codec.encode(settings.codec, call.body)
    return Request(call.method, target, call.headers, body, _codec.content_type(settings.codec))


def effective_durability(settings: Settings, call: Call[Any]) -> str | None:
    if not call.mutating:
        return None
    return call.durability or settings.durability


def reply_of(response: Response) -> Reply:
    body = _codec.decode(response.headers.get("content-type"), response.body)
    return Reply(response.status, response.headers, body)


def is_success(call: Call[Any], reply: Reply) -> bool:
    return 200 <= reply.status < 300 or reply.status in call.ok_statuses


def error_of(reply: Reply) -> AgentstateError:
    return error_from_response(reply.status, reply.body, reply.headers.get("retry-after"))


def connection_failed(settings: Settings, error: TransportError) -> ConnectionFailed:
    where = f"unix socket {settings.uds}" if settings.uds else settings.url
    return ConnectionFailed(f"cannot reach the agentstate sidecar at {where}: {error}")


def retry_after(error: AgentstateError) -> float | None:
    return getattr(error, "retry_after", None)
