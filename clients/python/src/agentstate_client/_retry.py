"""When to retry, and how long to wait.

Retried: failures to connect or to write the whole request (the server cannot have
acted on it, so any call is safe to repeat), broken connections and timeouts of calls
that are safe to repeat, and 503 ``unavailable`` (the
sidecar refused before logging anything) -- except a ``remote``-durability write that is
not idempotent, because its 503 can mean "in the local WAL, backend did not confirm in
time", and repeating it would apply it twice. Never retried: any other 4xx/5xx, 409 and
422 above all, since a repeat cannot change the answer.

Waits are capped, jittered exponential backoff ("full jitter"), and at least the server's
``Retry-After`` when it sent one (bounded by :data:`RETRY_WAIT_MAX_S`).
"""

from __future__ import annotations

import random

from agentstate_client._api import Call
from agentstate_client._config import RETRY_WAIT_MAX_S, Settings
from agentstate_client._http1 import TransportError
from agentstate_client.errors import AgentstateError, Unavailable


def retriable_transport_error(error: TransportError, call: Call[object]) -> bool:
    # Once the whole request may have reached the server, only idempotent calls go again.
    return not error.sent or call.idempotent


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
