"""When to retry, and how long to wait.

Retried: failures to connect (nothing was sent, so any call is safe to repeat), broken
connections and timeouts of calls that are safe to repeat, and 503 ``unavailable`` (the
sidecar refused before logging anything) -- except a ``remote``-durability write that is
not idempotent, because its 503 can mean "in the local WAL, backend did not confirm in
time", and repeating it would apply it twice. Never retried: any other 4xx/5xx, 409 and
422 above all, since a repeat cannot change the answer.

Waits are capped, jittered exponential backoff ("full jitter"), and at least the server's
``Retry-After`` when it sent one (bounded by :data:`RETRY_WAIT_MAX_S`).
"""

from __future__ import annotations

import random

import httpx

from agentstate._api import Call
from agentstate._config import RETRY_WAIT_MAX_S, Settings
from agentstate.errors import AgentstateError, Unavailable

#: Transport errors raised before the request left: always safe to repeat.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def retriable_transport_error(error: httpx.TransportError, call: Call[object]) -> bool:
    if isinstance(error, _NOT_SENT):
        return True
    # The request may have been applied: only idempotent calls may go again.
    return call.idempotent and isinstance(
        error, (httpx.NetworkError, httpx.RemoteProtocolError, httpx.TimeoutException)
    )


def retriable_error(error: AgentstateError, call: Call[object], durability: str | None) -> bool:
    if not isinstance(error, Unavailable):
        return False
    return call.idempotent or not (call.mutating and durability == "remote")


def wait_s(settings: Settings, attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based)."""
    ceiling = min(settings.backoff_max_s, settings.backoff_base_s * (2**attempt))
    backoff = random.uniform(0.0, ceiling)
    if retry_after is not None:
        backoff = max(backoff, retry_after)
    return min(backoff, RETRY_WAIT_MAX_S)
