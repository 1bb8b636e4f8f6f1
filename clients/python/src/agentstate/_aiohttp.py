"""aiohttp's connection pool for :class:`agentstate.AsyncClient`.

httpx's own asyncio transport costs several times the sidecar's answer time per request
on localhost, and its pool serialises under many concurrent requests (measured in
bench/README.md); aiohttp's does neither. The client sends through :meth:`AiohttpPool.send`
directly (httpx's URL and request objects cost a further 0.1 ms a call); the same pool is
also an httpx transport, for code that wants one.

Errors are mapped by what they say about the request: a failure to connect means it was
never sent (:class:`httpx.ConnectError`, safe to repeat); a timeout or a broken
connection afterwards means it may have been applied (:class:`httpx.ReadTimeout`,
:class:`httpx.RemoteProtocolError`), which only idempotent calls repeat.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
import httpx

#: Hop-by-hop and framing headers aiohttp sets itself.
_SKIP = frozenset({"host", "content-length", "transfer-encoding", "connection"})


class AiohttpPool(httpx.AsyncBaseTransport):
    """One aiohttp session (TCP, or a Unix socket), sending raw requests or httpx ones."""

    def __init__(self, *, uds: str | None = None, connections_max: int = 100) -> None:
        self._uds = uds
        self._connections_max = connections_max
        # Created on first use, inside the event loop it then belongs to.
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector: aiohttp.BaseConnector
            if self._uds:
                connector = aiohttp.UnixConnector(path=self._uds, limit=self._connections_max)
            else:
                connector = aiohttp.TCPConnector(limit=self._connections_max)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return self._session

    async def send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        content: bytes | None,
        *,
        connect_timeout_s: float | None,
        read_timeout_s: float | None,
        request: httpx.Request | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """Status, headers and body of one exchange; failures as httpx's errors."""
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        try:
            async with session.request(
                method,
                url,
                headers=headers,
                data=content or None,
                allow_redirects=False,
                timeout=timeout,
            ) as resp:
                return resp.status, resp.headers, await resp.read()
        except aiohttp.ClientConnectorError as e:
            raise httpx.ConnectError(str(e), request=request) from e
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as e:
            raise httpx.ReadTimeout(str(e) or "timed out", request=request) from e
        except aiohttp.ClientError as e:
            raise httpx.RemoteProtocolError(str(e), request=request) from e

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        headers = [(k, v) for k, v in request.headers.multi_items() if k.lower() not in _SKIP]
        status, resp_headers, body = await self.send(
            request.method,
            str(request.url),
            headers,
            request.content,
            connect_timeout_s=timeouts.get("connect"),
            read_timeout_s=timeouts.get("read"),
            request=request,
        )
        return httpx.Response(
            status, headers=list(resp_headers.items()), content=body, request=request
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
