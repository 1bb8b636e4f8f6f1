"""Body codecs: MessagePack (the default) and JSON.

The two differ only in bytes: the threads API carries serialized values as MessagePack
``bin`` but as base64 strings in JSON (standard alphabet, padded). So
encoding turns ``bytes`` into base64 for JSON, and :func:`as_bytes` accepts either form
when reading a ``data`` field back.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

import msgpack  # type: ignore[import-untyped]  # ships no type hints

Codec = Literal["msgpack", "json"]

MSGPACK = "application/msgpack"
JSON = "application/json"


def content_type(codec: Codec) -> str:
    return MSGPACK if codec == "msgpack" else JSON


def encode(codec: Codec, body: Any) -> bytes:
    if codec == "msgpack":
        # use_bin_type: bytes go out as bin, str as str; the server tells them apart.
        packed: bytes = msgpack.packb(body, use_bin_type=True)
        return packed
    # allow_nan=False: NaN is not JSON, and the server would refuse the whole body.
    return json.dumps(body, default=_json_default, separators=(",", ":"), allow_nan=False).encode()


def decode(media_type: str | None, raw: bytes) -> Any:
    """Decode by the response's ``Content-Type``; plain text comes back as ``str``."""
    if not raw:
        return None
    if media_type == MSGPACK:  # what the sidecar sends: skip the parsing below
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    essence = (media_type or "").split(";")[0].strip().lower()
    if essence in (MSGPACK, "application/x-msgpack", "application/vnd.msgpack"):
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    if essence == JSON:
        return json.loads(raw)
    return raw.decode("utf-8", errors="replace")


def as_bytes(value: Any) -> bytes:
    """A wire ``data`` field: ``bin`` in MessagePack, base64 ``str`` in JSON."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    if value is None:
        return b""
    raise TypeError(f"expected bytes or base64 text, got {type(value).__name__}")


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
