"""What both clients do around the I/O: build the request of a :class:`Call`, read the
answer into a :class:`Reply`, and turn failures into typed errors.
"""

from __future__ import annotations

from typing import Any

import httpx

from agentstate import _codec
from agentstate._api import NO_BODY, Call, Reply
from agentstate._config import Settings
from agentstate.errors import AgentstateError, ConnectionFailed, error_from_response


def request_parts(settings: Settings, call: Call[Any]) -> dict[str, Any]:
    """Keyword arguments for ``httpx.Client.request`` / ``AsyncClient.request``."""
    params = dict(call.params)
    durability = effective_durability(settings, call)
    if durability is not None:
        params["durability"] = durability
    headers = dict(call.headers)
    parts: dict[str, Any] = {"params": params or None, "headers": headers}
    if call.body is not NO_BODY:
        headers["content-type"] = _codec.content_type(settings.codec)
        parts["content"] = _codec.encode(settings.codec, call.body)
    return parts


def effective_durability(settings: Settings, call: Call[Any]) -> str | None:
    if not call.mutating:
        return None
    return call.durability or settings.durability


def read_reply(response: httpx.Response) -> Reply:
    body = _codec.decode(response.headers.get("content-type"), response.content)
    return Reply(response.status_code, response.headers, body)


def is_success(call: Call[Any], reply: Reply) -> bool:
    return 200 <= reply.status < 300 or reply.status in call.ok_statuses


def error_of(reply: Reply) -> AgentstateError:
    return error_from_response(reply.status, reply.body, reply.headers.get("retry-after"))


def connection_failed(settings: Settings, error: httpx.TransportError) -> ConnectionFailed:
    where = f"unix socket {settings.uds}" if settings.uds else settings.url
    return ConnectionFailed(f"cannot reach the agentstate sidecar at {where}: {error!r}")


def retry_after(error: AgentstateError) -> float | None:
    return getattr(error, "retry_after", None)
