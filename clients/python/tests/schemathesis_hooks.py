"""Schemathesis hooks for the run in test_openapi.py (loaded through SCHEMATHESIS_HOOKS).

- MessagePack: the description gives every body in JSON and MessagePack; Schemathesis
  speaks JSON only, so these encode requests and decode responses. In MessagePack, fields
  the description types as base64 strings are ``bin``: decoded responses carry them as
  base64 again, so that one schema checks both media types.
- Refusals no JSON Schema can state, kept out of valid requests: see ``before_call``.
"""

from __future__ import annotations

import base64
import math
from typing import Any
from urllib.parse import unquote

import msgpack
import schemathesis

I64_MIN = -(2**63)
U64_MAX = 2**64 - 1


def _wire(value: Any) -> Any:
    """The value as MessagePack can carry it: it has no integers beyond 64 bits, so such
    a number goes as the nearest float that is still out of the 64-bit range."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and not I64_MIN <= value <= U64_MAX:
        f = float(value)
        if value < I64_MIN and f >= I64_MIN:
            f = math.nextafter(float(I64_MIN), -math.inf)
        return f
    if isinstance(value, dict):
        return {k: _wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire(v) for v in value]
    return value


@schemathesis.serializer("application/msgpack")
def to_msgpack(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    return msgpack.packb(_wire(value), use_bin_type=True)


def _bin_as_base64(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _bin_as_base64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_bin_as_base64(v) for v in value]
    return value


@schemathesis.deserializer("application/msgpack")
def from_msgpack(ctx: schemathesis.DeserializationContext, response: schemathesis.Response) -> Any:
    return _bin_as_base64(msgpack.unpackb(response.content, raw=False))


@schemathesis.hook
def before_call(ctx: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict) -> None:
    """Two refusals the description states in words only, since no JSON Schema can, are
    kept out of the requests that must be accepted; every other 422 still fails the run.
    Both refusals are tested in test_openapi.py (test_refusals_no_schema_can_state).

    - A transfer from an agent to itself, a copy of a thread onto itself (422): such a
      draw gets another target.
    - A transfer's ``to_agent_type`` must be a type the ``--config`` file declares (422
      ``unknown_agent_type``); the description cannot list them, and this run declares
      none. A request meant to be valid goes without it (the target must then exist, or
      it is 404)."""
    route = (case.operation.method.upper(), case.operation.path)
    body = case.body
    if not isinstance(body, dict):
        return
    if route == ("POST", "/v1/transfers"):
        if isinstance(body.get("to_agent"), str) and body.get("to_agent") == body.get("from_agent"):
            body["to_agent"] = _other(body["to_agent"])
        if _meant_valid(case) and isinstance(body.get("to_agent_type"), str):
            body["to_agent_type"] = None
    elif route == ("POST", "/v1/threads/{id}/copy"):
        target = body.get("target_thread_id")
        # The path parameter may be held percent-encoded, as it goes on the wire.
        thread = unquote(str((case.path_parameters or {}).get("id", "")))
        if isinstance(target, str) and target == thread:
            body["target_thread_id"] = _other(target)


def _meant_valid(case: schemathesis.Case) -> bool:
    return case.meta is None or case.meta.generation.mode.is_positive


def _other(agent_id: str) -> str:
    """Another valid id (1-128 of A-Z a-z 0-9 - _ . :)."""
    return agent_id[:-1] + ("b" if agent_id.endswith("a") else "a")
