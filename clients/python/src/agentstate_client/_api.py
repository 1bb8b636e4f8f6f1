"""Every endpoint of the HTTP API as a :class:`Call`: what to send and how to read the answer.

The sync and async clients differ only in how they perform I/O, so each endpoint is
described once here (path, query, headers, body, idempotency, result parser) and both
clients execute the same descriptions. That keeps the two surfaces identical by
construction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar
from urllib.parse import quote

from agentstate_client._config import check_durability
from agentstate_client.models import (
    AgentsPage,
    AgentState,
    AppendResult,
    BatchResult,
    BeginResult,
    Checkpoint,
    CheckpointResult,
    DeltaChannel,
    Message,
    NewMessage,
    PendingWriteValue,
    PopResult,
    PutCheckpointResult,
    ReplayResult,
    Status,
    ThreadHistoryPage,
    ThreadsPage,
    ThreadTuple,
    ThreadView,
    TimelinePage,
    Transfer,
    TransfersPage,
    Transition,
    TransitionResult,
    Typed,
    Usage,
)

T = TypeVar("T", covariant=True)

#: Largest page the sidecar serves (messages, transitions, checkpoint search, listings).
PAGE_LIMIT_MAX = 1000


# Reply and Call are built on every call and never changed afterwards, but are not
# frozen: a frozen dataclass sets each field through object.__setattr__, a microsecond
# per Call (measured), of some 25-45 µs of CPU for a whole call (bench/client_cpu.py).


@dataclass(slots=True)
class Reply:
    """An HTTP answer, decoded: what a parser gets."""

    status: int
    headers: Mapping[str, str]
    body: Any


class _NoBody:
    """Marks a call without a request body (distinct from a body that is None)."""


NO_BODY: Any = _NoBody()


@dataclass(slots=True)
class Call(Generic[T]):
    """One request and the parser of its answer."""

    method: str
    path: str
    parse: Callable[[Reply], T]
    params: Mapping[str, str] = field(default_factory=dict)
    body: Any = NO_BODY
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Changes state: takes ``?durability=``.
    mutating: bool = False
    #: Repeating it changes nothing more (reads, keyed upserts): safe to retry after the
    #: request may have reached the server.
    idempotent: bool = True
    #: Per-call durability; None = the client's default (then the server's: local).
    durability: str | None = None
    #: Statuses besides 2xx handed to ``parse`` rather than raised.
    ok_statuses: tuple[int, ...] = ()


_ID = re.compile(r"[A-Za-z0-9\-_.:]+")


def _seg(value: str) -> str:
    """One path segment. Id characters (``A-Z a-z 0-9 - _ . :``) go as they are: the
    server does not percent-decode, so ``:`` must not become ``%3A``. Anything else is
    encoded, so a ``/`` cannot re-route the call; the server then refuses the id."""
    if _ID.fullmatch(value):
        return value  # nothing to encode, and quote() would cost more than the match
    return quote(value, safe=":")


def _agent(agent_id: str, *rest: str) -> str:
    return "/".join(["/v1/agents", _seg(agent_id), *rest])


def _thread(thread_id: str, *rest: str) -> str:
    return "/".join(["/v1/threads", _seg(thread_id), *rest])


def _preconditions(if_match: int | None, if_none_match: bool = False) -> dict[str, str]:
    if if_match is not None and if_none_match:
        raise ValueError("if_match and if_none_match exclude each other")
    if if_match is not None:
        return {"if-match": f'"{int(if_match)}"'}
    if if_none_match:
        return {"if-none-match": "*"}
    return {}


def _write(
    method: str,
    path: str,
    parse: Callable[[Reply], T],
    body: Any = NO_BODY,
    *,
    durability: str | None,
    headers: Mapping[str, str] | None = None,
    idempotent: bool,
) -> Call[T]:
    check_durability(durability)
    return Call(
        method,
        path,
        parse,
        body=body,
        headers=headers or {},
        mutating=True,
        idempotent=idempotent,
        durability=durability,
    )


def _version(reply: Reply) -> int:
    return int(reply.body["version"])


def _none(_reply: Reply) -> None:
    return None


def _some(body: dict[str, Any]) -> dict[str, Any]:
    """Drop absent optional fields: the server refuses unknown ones, not absent ones."""
    return {k: v for k, v in body.items() if v is not None}


def _paging(after: int, limit: int) -> dict[str, str]:
    if after < 0 or not 1 <= limit <= PAGE_LIMIT_MAX:
        raise ValueError(f"after must be >= 0 and limit within 1..{PAGE_LIMIT_MAX}")
    return {"after": str(after), "limit": str(limit)}


def _listing(params: Mapping[str, str | None], cursor: str | None, limit: int) -> dict[str, str]:
    """The query of a listing paged by cursor: the filters that are set (an empty one is no
    filter), the cursor unless this is the first page (a timeline refuses ``cursor=``), the
    page size. ``request_of`` percent-encodes the values."""
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise ValueError(f"limit must be within 1..{PAGE_LIMIT_MAX}")
    query = {k: v for k, v in params.items() if v}
    if cursor:
        query["cursor"] = cursor
    query["limit"] = str(limit)
    return query


def _rfc3339(t: datetime) -> str:
    """``t`` in UTC as RFC 3339; a naive datetime is taken as UTC, as the sidecar's are."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    text = t.astimezone(timezone.utc).isoformat(timespec="microseconds")
    return text.removesuffix("+00:00") + "Z"


# --- agents ------------------------------------------------------------------------------


def get_agent(agent_id: str) -> Call[AgentState]:
    return Call("GET", _agent(agent_id), lambda r: AgentState.from_wire(r.body))


def save_agent(
    agent_id: str,
    state_name: str,
    *,
    agent_type: str | None,
    state_data: Any,
    metadata: Mapping[str, Any] | None,
    if_match: int | None,
    if_none_match: bool,
    durability: str | None,
) -> Call[int]:
    body = _some(
        {
            "agent_type": agent_type,
            "state_name": state_name,
            "state_data": state_data,
            "metadata": dict(metadata) if metadata is not None else None,
        }
    )
    return _write(
        "PUT",
        _agent(agent_id),
        _version,
        body,
        durability=durability,
        headers=_preconditions(if_match, if_none_match),
        # Without a precondition a repeat saves the same state again (a new version, same
        # content); with one, a repeat answers 409 although the first went through.
        idempotent=if_match is None and not if_none_match,
    )


def delete_agent(agent_id: str, *, if_match: int | None, durability: str | None) -> Call[None]:
    return _write(
        "DELETE",
        _agent(agent_id),
        _none,
        durability=durability,
        headers=_preconditions(if_match),
        idempotent=if_match is None,
    )


# --- transitions -------------------------------------------------------------------------


def transition(
    agent_id: str,
    to_state: str,
    trigger: str,
    *,
    state_data: Any,
    if_match: int | None,
    durability: str | None,
) -> Call[TransitionResult]:
    body = _some({"to_state": to_state, "trigger": trigger, "state_data": state_data})
    return _write(
        "POST",
        _agent(agent_id, "transitions"),
        lambda r: TransitionResult.from_wire(r.body),
        body,
        durability=durability,
        headers=_preconditions(if_match),
        idempotent=False,
    )


def begin_transition(
    agent_id: str,
    to_state: str,
    trigger: str,
    *,
    state_data: Any,
    if_match: int | None,
    durability: str | None,
) -> Call[BeginResult]:
    body = _some({"to_state": to_state, "trigger": trigger, "state_data": state_data})
    return _write(
        "POST",
        _agent(agent_id, "transitions", "begin"),
        lambda r: BeginResult.from_wire(r.body),
        body,
        durability=durability,
        headers=_preconditions(if_match),
        idempotent=False,
    )


def finish_transition(
    agent_id: str,
    transition_id: str,
    action: str,
    body: dict[str, Any],
    *,
    if_match: int | None,
    durability: str | None,
) -> Call[TransitionResult]:
    return _write(
        "POST",
        _agent(agent_id, "transitions", _seg(transition_id), action),
        lambda r: TransitionResult.from_wire(r.body),
        _some(body),
        durability=durability,
        headers=_preconditions(if_match),
        idempotent=False,
    )


def list_transitions(agent_id: str, *, after: int, limit: int) -> Call[list[Transition]]:
    return Call(
        "GET",
        _agent(agent_id, "transitions"),
        lambda r: [Transition.from_wire(t) for t in r.body["transitions"]],
        params=_paging(after, limit),
    )


# --- messages ----------------------------------------------------------------------------


def _message_wire(m: NewMessage | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(m, NewMessage):
        return m.to_wire()
    wire = {"role": m["role"], "content": m["content"]}
    if m.get("metadata") is not None:
        wire["metadata"] = dict(m["metadata"])
    return wire


def append_messages(
    agent_id: str,
    messages: Iterable[NewMessage | Mapping[str, Any]],
    *,
    if_match: int | None,
    durability: str | None,
) -> Call[AppendResult]:
    return _write(
        "POST",
        _agent(agent_id, "messages"),
        lambda r: AppendResult.from_wire(r.body),
        {"messages": [_message_wire(m) for m in messages]},
        durability=durability,
        headers=_preconditions(if_match),
        idempotent=False,
    )


def list_messages(agent_id: str, *, after: int, limit: int) -> Call[list[Message]]:
    return Call(
        "GET",
        _agent(agent_id, "messages"),
        lambda r: [Message.from_wire(m) for m in r.body["messages"]],
        params=_paging(after, limit),
    )


def last_messages(agent_id: str, n: int) -> Call[list[Message]]:
    if not 1 <= n <= PAGE_LIMIT_MAX:
        raise ValueError(f"n must be within 1..{PAGE_LIMIT_MAX}")
    return Call(
        "GET",
        _agent(agent_id, "messages"),
        lambda r: [Message.from_wire(m) for m in r.body["messages"]],
        params={"last": str(n)},
    )


def pop_last_message(
    agent_id: str, *, if_match: int | None, durability: str | None
) -> Call[PopResult]:
    return _write(
        "DELETE",
        _agent(agent_id, "messages", "last"),
        lambda r: PopResult.from_wire(r.body),
        durability=durability,
        headers=_preconditions(if_match),
        idempotent=False,
    )


def clear_messages(agent_id: str, *, if_match: int | None, durability: str | None) -> Call[int]:
    return _write(
        "DELETE",
        _agent(agent_id, "messages"),
        _version,
        durability=durability,
        headers=_preconditions(if_match),
        idempotent=if_match is None,
    )


# --- agent checkpoints -------------------------------------------------------------------


def create_checkpoint(
    agent_id: str, *, label: str | None, durability: str | None
) -> Call[CheckpointResult]:
    return _write(
        "POST",
        _agent(agent_id, "checkpoints"),
        lambda r: CheckpointResult.from_wire(r.body),
        _some({"label": label}),
        durability=durability,
        idempotent=False,
    )


def list_checkpoints(agent_id: str) -> Call[list[Checkpoint]]:
    return Call(
        "GET",
        _agent(agent_id, "checkpoints"),
        lambda r: [Checkpoint.from_wire(c) for c in r.body["checkpoints"]],
    )


def rollback(
    agent_id: str, checkpoint_id: str, *, if_match: int | None, durability: str | None
) -> Call[TransitionResult]:
    return _write(
        "POST",
        _agent(agent_id, "rollback"),
        lambda r: TransitionResult.from_wire(r.body),
        {"checkpoint_id": checkpoint_id},
        durability=durability,
        headers=_preconditions(if_match),
        idempotent=False,
    )


def replay(
    agent_id: str,
    checkpoint_id: str,
    *,
    apply: bool,
    if_match: int | None,
    durability: str | None,
) -> Call[ReplayResult]:
    return _write(
        "POST",
        _agent(agent_id, "replay"),
        lambda r: ReplayResult.from_wire(r.body),
        {"checkpoint_id": checkpoint_id, "apply": apply},
        durability=durability,
        headers=_preconditions(if_match),
        idempotent=not apply,
    )


# --- transfers and batches ---------------------------------------------------------------


def create_transfer(
    transfer_id: str,
    from_agent: str,
    to_agent: str,
    trigger: str,
    *,
    to_trigger: str | None,
    to_agent_type: str | None,
    context: Any,
    messages_max: int | None,
    durability: str | None,
) -> Call[Transfer]:
    body = _some(
        {
            "transfer_id": transfer_id,
            "from_agent": from_agent,
            "to_agent": to_agent,
            "trigger": trigger,
            "to_trigger": to_trigger,
            "to_agent_type": to_agent_type,
            "context": context,
            "messages_max": messages_max,
        }
    )
    # The same transfer_id again returns the first result: safe to repeat.
    return _write(
        "POST",
        "/v1/transfers",
        lambda r: Transfer.from_wire(r.body),
        body,
        durability=durability,
        idempotent=True,
    )


def get_transfer(transfer_id: str) -> Call[Transfer]:
    return Call("GET", f"/v1/transfers/{_seg(transfer_id)}", lambda r: Transfer.from_wire(r.body))


def batch(
    operations: Sequence[Mapping[str, Any]], *, durability: str | None
) -> Call[list[BatchResult]]:
    return _write(
        "POST",
        "/v1/batch",
        lambda r: [BatchResult.from_wire(x) for x in r.body["results"]],
        {"operations": [dict(op) for op in operations]},
        durability=durability,
        idempotent=False,
    )


# --- operations --------------------------------------------------------------------------


def health() -> Call[bool]:
    return Call("GET", "/healthz", lambda r: r.status == 200)


def ready() -> Call[bool]:
    # 503 is an answer here ("not ready: <why>"), not a failure to retry.
    return Call("GET", "/readyz", lambda r: r.status == 200, ok_statuses=(503,))


def status() -> Call[Status]:
    return Call("GET", "/v1/status", lambda r: Status.from_wire(r.body))


def usage(top: int = 10) -> Call[Usage]:
    return Call("GET", f"/v1/usage?top={int(top)}", lambda r: Usage.from_wire(r.body))


def metrics() -> Call[str]:
    return Call("GET", "/metrics", lambda r: str(r.body or ""))


# --- threads (graph checkpoints) ---------------------------------------------------------


def put_checkpoint(
    thread_id: str,
    checkpoint_id: str,
    checkpoint: Typed,
    *,
    checkpoint_ns: str,
    parent_checkpoint_id: str | None,
    metadata: Mapping[str, Any] | None,
    channel_versions: Mapping[str, str] | None,
    blobs: Iterable[Any],
    durability: str | None,
) -> Call[PutCheckpointResult]:
    body = {
        "checkpoint_ns": checkpoint_ns,
        "checkpoint_id": checkpoint_id,
        "parent_checkpoint_id": parent_checkpoint_id,
        "checkpoint": checkpoint.to_wire(),
        "metadata": dict(metadata or {}),
        "channel_versions": {str(k): str(v) for k, v in (channel_versions or {}).items()},
        "blobs": [b.to_wire() for b in blobs],
    }
    return _write(
        "POST",
        _thread(thread_id, "checkpoints"),
        lambda r: PutCheckpointResult.from_wire(r.body),
        body,
        durability=durability,
        idempotent=True,
    )


def put_writes(
    thread_id: str,
    checkpoint_id: str,
    task_id: str,
    writes: Iterable[PendingWriteValue],
    *,
    checkpoint_ns: str,
    task_path: str,
    durability: str | None,
) -> Call[int]:
    body = {
        "checkpoint_ns": checkpoint_ns,
        "checkpoint_id": checkpoint_id,
        "task_id": task_id,
        "task_path": task_path,
        "writes": [w.to_wire() for w in writes],
    }
    # (task_id, idx) >= 0: the first write wins; < 0: replaced. Either way a repeat is
    # harmless.
    return _write(
        "POST",
        _thread(thread_id, "writes"),
        _version,
        body,
        durability=durability,
        idempotent=True,
    )


def get_checkpoint(
    thread_id: str, *, checkpoint_ns: str, checkpoint_id: str | None
) -> Call[ThreadTuple]:
    params = {"checkpoint_ns": checkpoint_ns}
    if checkpoint_id:
        params["checkpoint_id"] = checkpoint_id
    return Call(
        "GET",
        _thread(thread_id, "checkpoint"),
        lambda r: ThreadTuple.from_wire(r.body),
        params=params,
    )


def search_checkpoints(
    *,
    thread_id: str | None,
    checkpoint_ns: str | None,
    checkpoint_id: str | None,
    before: str | None,
    filter: Mapping[str, Any] | None,
    limit: int | None,
) -> Call[list[ThreadTuple]]:
    if limit is not None and not 1 <= limit <= PAGE_LIMIT_MAX:
        raise ValueError(f"limit must be within 1..{PAGE_LIMIT_MAX}")
    body = {
        "thread_id": thread_id,
        "checkpoint_ns": checkpoint_ns,
        "checkpoint_id": checkpoint_id,
        "before": before,
        "filter": dict(filter) if filter is not None else None,
        "limit": limit,
    }
    return Call(
        "POST",
        "/v1/checkpoints/search",
        lambda r: [ThreadTuple.from_wire(t) for t in r.body["checkpoints"]],
        body=body,
    )


def delete_thread(thread_id: str, *, durability: str | None) -> Call[None]:
    return _write("DELETE", _thread(thread_id), _none, durability=durability, idempotent=True)


def copy_thread(
    source_thread_id: str, target_thread_id: str, *, durability: str | None
) -> Call[int]:
    return _write(
        "POST",
        _thread(source_thread_id, "copy"),
        lambda r: int(r.body["checkpoints_copied"]),
        {"target_thread_id": target_thread_id},
        durability=durability,
        idempotent=True,
    )


def prune(thread_ids: Sequence[str], *, strategy: str, durability: str | None) -> Call[int]:
    if strategy not in ("keep_latest", "delete"):
        raise ValueError(f"strategy must be 'keep_latest' or 'delete', got {strategy!r}")
    return _write(
        "POST",
        "/v1/checkpoints/prune",
        lambda r: int(r.body["checkpoints_deleted"]),
        {"thread_ids": list(thread_ids), "strategy": strategy},
        durability=durability,
        idempotent=True,
    )


def delete_for_runs(run_ids: Sequence[str], *, durability: str | None) -> Call[int]:
    return _write(
        "POST",
        "/v1/checkpoints/delete_for_runs",
        lambda r: int(r.body["checkpoints_deleted"]),
        {"run_ids": list(run_ids)},
        durability=durability,
        idempotent=True,
    )


def delta_history(
    thread_id: str,
    channels: Sequence[str],
    *,
    checkpoint_ns: str,
    checkpoint_id: str | None,
) -> Call[dict[str, DeltaChannel]]:
    return Call(
        "POST",
        _thread(thread_id, "delta_history"),
        lambda r: {
            str(ch): DeltaChannel.from_wire(h) for ch, h in (r.body["channels"] or {}).items()
        },
        body={
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint_id,
            "channels": list(channels),
        },
    )


# --- listings and the inspector's reads ---------------------------------------------------


def list_agents(
    *,
    prefix: str | None,
    state: str | None,
    agent_type: str | None,
    updated_after: datetime | None,
    failed: bool,
    cursor: str | None,
    limit: int,
) -> Call[AgentsPage]:
    params = {
        "prefix": prefix,
        "state": state,
        "type": agent_type,
        "updated_after": _rfc3339(updated_after) if updated_after is not None else None,
        "failed": "true" if failed else None,
    }
    return Call(
        "GET",
        "/v1/agents",
        lambda r: AgentsPage.from_wire(r.body),
        params=_listing(params, cursor, limit),
    )


def list_threads(*, prefix: str | None, cursor: str | None, limit: int) -> Call[ThreadsPage]:
    return Call(
        "GET",
        "/v1/threads",
        lambda r: ThreadsPage.from_wire(r.body),
        params=_listing({"prefix": prefix}, cursor, limit),
    )


def list_transfers(*, agent: str | None, cursor: str | None, limit: int) -> Call[TransfersPage]:
    return Call(
        "GET",
        "/v1/transfers",
        lambda r: TransfersPage.from_wire(r.body),
        params=_listing({"agent": agent}, cursor, limit),
    )


def timeline(agent_id: str, *, cursor: str | None, limit: int) -> Call[TimelinePage]:
    return Call(
        "GET",
        _agent(agent_id, "timeline"),
        lambda r: TimelinePage.from_wire(r.body),
        params=_listing({}, cursor, limit),
    )


def thread_history(
    thread_id: str, *, checkpoint_ns: str, cursor: str | None, limit: int
) -> Call[ThreadHistoryPage]:
    return Call(
        "GET",
        _thread(thread_id, "history"),
        lambda r: ThreadHistoryPage.from_wire(r.body),
        params=_listing({"checkpoint_ns": checkpoint_ns}, cursor, limit),
    )


def thread_view(
    thread_id: str, *, checkpoint_ns: str, checkpoint_id: str | None
) -> Call[ThreadView]:
    params = {"checkpoint_ns": checkpoint_ns}
    if checkpoint_id:
        params["checkpoint_id"] = checkpoint_id
    return Call(
        "GET",
        _thread(thread_id, "view"),
        lambda r: ThreadView.from_wire(r.body),
        params=params,
    )
