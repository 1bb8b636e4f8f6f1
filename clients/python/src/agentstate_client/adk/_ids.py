"""Sidecar agent ids for ADK apps, users and sessions: the one place that names them.

ADK names are any strings; a sidecar agent id is 1-128 characters of
``A-Z a-z 0-9 - _ . :``. Each name is escaped on its own: ``A-Z a-z 0-9 - .`` stay, every
other UTF-8 byte (``_`` and ``:`` among them) becomes ``_XX`` (two uppercase hex digits).
An escaped name holds no ``:``, so names joined with ``:`` after a kind never read two ways:

- app state and the app's user index: ``adk:app:<app>``
- a user's state and session list: ``adk:user:<app>:<user>``
- a session (its state; its events are the agent's conversation):
  ``adk:session:<app>:<user>:<session>``

An id that would exceed 128 characters is ``adk:<kind>.sha256:<hex>`` instead, the SHA-256
of the long id: distinct from every readable id (no readable kind contains ``.``), and the
names kept in each agent's ``state_data`` let a reader check it got the agent it meant.
"""

from __future__ import annotations

import hashlib

#: The sidecar's longest agent id.
AGENT_ID_CHARS_MAX = 128
_KEPT = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")


def escape(name: str) -> str:
    """``name`` in agent-id characters without ``:`` (one-to-one)."""
    out: list[str] = []
    for ch in name:
        if ch in _KEPT:
            out.append(ch)
        else:
            out.extend(f"_{b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


def _agent_id(kind: str, *names: str) -> str:
    readable = ":".join(["adk", kind, *(escape(n) for n in names)])
    if len(readable) <= AGENT_ID_CHARS_MAX:
        return readable
    digest = hashlib.sha256(readable.encode("ascii")).hexdigest()
    return f"adk:{kind}.sha256:{digest}"


def app_agent(app_name: str) -> str:
    """The agent holding ``app:`` state and the index of the app's users."""
    return _agent_id("app", app_name)


def user_agent(app_name: str, user_id: str) -> str:
    """The agent holding ``user:`` state and the ids of the user's sessions."""
    return _agent_id("user", app_name, user_id)


def session_agent(app_name: str, user_id: str, session_id: str) -> str:
    """The agent holding a session's own state; its conversation is the session's events."""
    return _agent_id("session", app_name, user_id, session_id)
