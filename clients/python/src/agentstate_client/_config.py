"""Client settings, resolved once from arguments, then the environment, then defaults.

Both clients (and the framework adapters, which may build a client of the other flavour
from the same settings) read one :class:`Settings`, so "where is the sidecar and how do I
talk to it" is decided in one place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, cast

from agentstate_client._codec import Codec

Durability = Literal["local", "remote", "memory"]

ENV_URL = "AGENTSTATE_URL"
ENV_TOKEN = "AGENTSTATE_TOKEN"
ENV_SOCKET = "AGENTSTATE_SOCKET"
DEFAULT_URL = "http://127.0.0.1:7700"
#: Host used in URLs when talking over a Unix socket (the socket, not the host, routes).
UDS_URL = "http://agentstate"

DURABILITIES: tuple[str, ...] = ("local", "remote", "memory")
#: Bound on any single retry wait, ``Retry-After`` included.
RETRY_WAIT_MAX_S = 30.0


@dataclass(frozen=True)
class Settings:
    """Where the sidecar is and how to call it."""

    url: str
    token: str | None
    uds: str | None
    codec: Codec
    durability: Durability | None
    max_retries: int
    timeout_s: float
    backoff_base_s: float
    backoff_max_s: float

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        *,
        token: str | None = None,
        uds: str | None = None,
        codec: str = "msgpack",
        durability: str | None = None,
        max_retries: int = 3,
        timeout: float = 30.0,
        backoff_base: float = 0.05,
        backoff_max: float = 2.0,
    ) -> Settings:
        uds = uds or os.environ.get(ENV_SOCKET) or None
        url = url or os.environ.get(ENV_URL) or (UDS_URL if uds else DEFAULT_URL)
        token = token or os.environ.get(ENV_TOKEN) or None
        if codec not in ("msgpack", "json"):
            raise ValueError(f"codec must be 'msgpack' or 'json', got {codec!r}")
        check_durability(durability)
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if timeout <= 0 or backoff_base < 0 or backoff_max < backoff_base:
            raise ValueError("timeout must be > 0 and 0 <= backoff_base <= backoff_max")
        return cls(
            url=url.rstrip("/"),
            token=token,
            uds=uds,
            codec=cast(Codec, codec),
            durability=cast("Durability | None", durability),
            max_retries=max_retries,
            timeout_s=timeout,
            backoff_base_s=backoff_base,
            backoff_max_s=backoff_max,
        )

    def headers(self) -> dict[str, str]:
        media = "application/msgpack" if self.codec == "msgpack" else "application/json"
        headers = {"accept": media, "user-agent": "agentstate-python"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        return headers


def check_durability(durability: str | None) -> None:
    if durability is not None and durability not in DURABILITIES:
        raise ValueError(f"durability must be one of {DURABILITIES}, got {durability!r}")
