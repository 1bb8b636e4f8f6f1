"""A caller's httpx transport under the clients (``transport=``: tests that count
requests, proxies, TLS). The only module that imports httpx; loaded only when a caller
passes a transport, so httpx is not needed otherwise.

httpx's errors are mapped by what they say about the request: a failure to connect or to
get a pooled connection means it was never sent; anything later means the server may
have acted on it.
"""

from __future__ import annotations

import httpx

from agentstate_client._config import Settings
from agentstate_client._http1 import Request, Response, TransportError

_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _client_options(settings: Settings, connect_timeout_s: float) -> dict[str, object]:
    return {
        "base_url": settings.url,
        "headers": settings.headers(),
        "timeout": httpx.Timeout(settings.timeout_s, connect=connect_timeout_s),
    }


def _headers(request: Request) -> dict[str, str]:
    headers = dict(request.headers)
    if request.content_type is not None:
        headers["content-type"] = request.content_type
    return headers


def _error(e: httpx.TransportError) -> TransportError:
    return TransportError(repr(e), sent=not isinstance(e, _NOT_SENT))


class HttpxBlocking:
    def __init__(
        self, settings: Settings, transport: httpx.BaseTransport, connect_timeout_s: float
    ) -> None:
        self._client = httpx.Client(
            transport=transport,
            **_client_options(settings, connect_timeout_s),  # type: ignore[arg-type]
        )

    def exchange(self, request: Request) -> Response:
        try:
            r = self._client.request(
                request.method, request.target, headers=_headers(request), content=request.body
            )
        except httpx.TransportError as e:
            raise _error(e) from e
        return Response(r.status_code, r.headers, r.content, True)

    def close(self) -> None:
        self._client.close()


class HttpxAsync:
    def __init__(
        self, settings: Settings, transport: httpx.AsyncBaseTransport, connect_timeout_s: float
    ) -> None:
        self._client = httpx.AsyncClient(
            transport=transport,
            **_client_options(settings, connect_timeout_s),  # type: ignore[arg-type]
        )

    async def exchange(self, request: Request) -> Response:
        try:
            r = await self._client.request(
                request.method, request.target, headers=_headers(request), content=request.body
            )
        except httpx.TransportError as e:
            raise _error(e) from e
        return Response(r.status_code, r.headers, r.content, True)

    async def aclose(self) -> None:
        await self._client.aclose()
