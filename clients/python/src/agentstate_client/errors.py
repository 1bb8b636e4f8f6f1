"""Typed errors, one class per error code the sidecar returns.

Callers branch on these (a ``VersionConflict`` means "reload and retry your logic", an
``Unavailable`` means "the sidecar will take it later"), so the mapping from the wire
body ``{"error": {"code", "message", "current_version"?}}`` lives in one place:
:func:`error_from_response`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "AgentstateError",
    "Conflict",
    "ConnectionFailed",
    "Forbidden",
    "Malformed",
    "NotFound",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "ValidationFailed",
    "VersionConflict",
    "error_from_response",
]

#: Rules a ``validation_failed`` message names (README "Agent types").
VALIDATION_RULES = (
    "unknown_agent_type",
    "unknown_state",
    "transition_not_allowed",
    "schema_mismatch",
)


class AgentstateError(Exception):
    """Any error the sidecar (or reaching it) produced.

    ``code`` is the wire code (``not_found``, ``version_conflict``...), ``status`` the HTTP
    status (0 when no response arrived).
    """

    def __init__(self, code: str, message: str, status: int = 0) -> None:
        super().__init__(f"{code} ({status}): {message}" if status else f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class Malformed(AgentstateError):
    """400: the request was refused as bad input; nothing was stored."""


class Unauthorized(AgentstateError):
    """401: the bearer token is missing or wrong (``AGENTSTATE_TOKEN``)."""


class Forbidden(AgentstateError):
    """403: refused before it reached a handler: ``host_not_allowed`` (the URL's host
    is not a name of the sidecar: use a loopback address, or start the sidecar with
    ``--allowed-hosts``), or ``cross_origin`` (a browser sent a write from another
    site); or ``ui_writes_disabled`` (a write of the web inspector, which the sidecar
    answers only when started with ``--ui-writes``)."""


class NotFound(AgentstateError):
    """404: no such agent, thread, checkpoint or transfer."""


class Conflict(AgentstateError):
    """409 ``conflict``: the agent's state forbids this now (a pending multi-step
    transition, a transfer id reused for other agents, another sidecar's lease)."""


class VersionConflict(Conflict):
    """409 ``version_conflict``: an ``If-Match`` / ``If-None-Match`` precondition failed.

    ``current_version`` is the stored version (None when the agent does not exist).
    """

    def __init__(
        self, code: str, message: str, status: int = 409, current_version: int | None = None
    ) -> None:
        super().__init__(code, message, status)
        self.current_version = current_version


class TooLarge(AgentstateError):
    """413: the body exceeds the sidecar's ``--body-bytes-max``."""


class ValidationFailed(AgentstateError):
    """422: refused by the agent type's rules.

    ``rule`` is the rule the message names (one of :data:`VALIDATION_RULES`), or None.
    """

    def __init__(self, code: str, message: str, status: int = 422) -> None:
        super().__init__(code, message, status)
        self.rule: str | None = next((r for r in VALIDATION_RULES if r in message), None)


class Unavailable(AgentstateError):
    """503: the sidecar cannot take this now (backend down for an unseen agent, backlog
    full, disk full, a ``remote`` write that timed out). ``retry_after`` is the server's
    ``Retry-After`` in seconds, if it sent one."""

    def __init__(
        self, code: str, message: str, status: int = 503, retry_after: float | None = None
    ) -> None:
        super().__init__(code, message, status)
        self.retry_after = retry_after


class ConnectionFailed(AgentstateError):
    """No response: nothing listens, the connection broke, or the request timed out."""

    def __init__(self, message: str) -> None:
        super().__init__("connection_failed", message, 0)


_BY_CODE: dict[str, type[AgentstateError]] = {
    "malformed": Malformed,
    "unauthorized": Unauthorized,
    "host_not_allowed": Forbidden,
    "cross_origin": Forbidden,
    "ui_writes_disabled": Forbidden,
    "not_found": NotFound,
    "conflict": Conflict,
    "too_large": TooLarge,
    "validation_failed": ValidationFailed,
}

_BY_STATUS: dict[int, type[AgentstateError]] = {
    400: Malformed,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    422: ValidationFailed,
}


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds; the HTTP-date form is not used by the sidecar."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def error_from_response(
    status: int, body: Any, retry_after_header: str | None = None
) -> AgentstateError:
    """The typed error for a non-2xx answer whose decoded body is ``body``.

    ``body`` is the decoded error document, or a string when the answer was not one (a
    proxy's page, a plain-text 503 from ``/readyz``).
    """
    detail: Mapping[str, Any] = {}
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        detail = body["error"]
    code = str(detail.get("code") or _default_code(status))
    message = str(detail.get("message") or (body if isinstance(body, str) else "")).strip()
    if code == "version_conflict":
        current = detail.get("current_version")
        return VersionConflict(code, message, status, current if isinstance(current, int) else None)
    if code == "unavailable" or status == 503:
        return Unavailable(code, message, status, parse_retry_after(retry_after_header))
    cls = _BY_CODE.get(code) or _BY_STATUS.get(status) or AgentstateError
    return cls(code, message, status)


def _default_code(status: int) -> str:
    return {
        400: "malformed",
        401: "unauthorized",
        403: "host_not_allowed",
        404: "not_found",
        405: "method_not_allowed",
        409: "conflict",
        413: "too_large",
        415: "unsupported_media_type",
        422: "validation_failed",
        503: "unavailable",
    }.get(status, "internal" if status >= 500 else "http_error")
