"""Typed views of the sidecar's answers (and of a few request parts).

Each model reads itself from a decoded body with ``from_wire``, taking the fields it knows
and ignoring the rest, so a newer sidecar that adds fields does not break an older client.
Timestamps become aware ``datetime`` objects (the wire carries RFC 3339 UTC).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from agentstate_client._codec import as_bytes

_FRACTION = re.compile(r"\.(\d+)")


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 (``Z`` or an offset, up to nanoseconds) as an aware datetime.

    ``datetime.fromisoformat`` on Python 3.10 takes neither ``Z`` nor more than six
    fractional digits, both of which the sidecar writes.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    text = str(value).strip()
    if text[-1:] in ("Z", "z"):
        # The sidecar's form, ``2026-01-02T03:04:05.123456789Z``: no regex needed (it
        # is read twice per state, and the regex costs more than the rest of the parse).
        seconds, dot, fraction = text[:-1].partition(".")
        if not dot:
            return datetime.fromisoformat(seconds + "+00:00")
        if fraction.isdecimal():
            return datetime.fromisoformat(f"{seconds}.{(fraction + '000000')[:6]}+00:00")
        text = text[:-1] + "+00:00"
    text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _ts(value: Any) -> datetime:
    parsed = parse_timestamp(value)
    if parsed is None:
        raise ValueError("a required timestamp is missing")
    return parsed


def _map(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


# --- agents ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingTransition:
    """A multi-step transition begun and neither completed nor aborted."""

    id: str
    from_state: str
    to_state: str
    trigger: str
    started_at: datetime
    state_data: Any = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> PendingTransition:
        return cls(
            id=d["id"],
            from_state=d["from_state"],
            to_state=d["to_state"],
            trigger=d["trigger"],
            started_at=_ts(d["started_at"]),
            state_data=d.get("state_data"),
        )


@dataclass(frozen=True)
class AgentState:
    """An agent's current state; ``version`` is its ETag."""

    agent_id: str
    state_name: str
    version: int
    created_at: datetime
    updated_at: datetime
    agent_type: str | None = None
    state_data: Any = None
    conversation_context: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    pending_transition: PendingTransition | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> AgentState:
        pending = d.get("pending_transition")
        return cls(
            agent_id=d["agent_id"],
            state_name=d["state_name"],
            version=int(d["version"]),
            created_at=_ts(d["created_at"]),
            updated_at=_ts(d["updated_at"]),
            agent_type=d.get("agent_type"),
            state_data=d.get("state_data"),
            conversation_context=d.get("conversation_context"),
            metadata=_map(d.get("metadata")),
            pending_transition=PendingTransition.from_wire(pending) if pending else None,
        )


@dataclass(frozen=True)
class Transition:
    """One entry of an agent's transition log."""

    id: str
    seq: int
    agent_id: str
    from_state: str
    to_state: str
    trigger: str
    timestamp: datetime
    success: bool
    error: str | None = None
    state_data: Any = None
    #: Why an operator made it (a rollback or abort from the web inspector).
    reason: str | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Transition:
        return cls(
            id=d["id"],
            seq=int(d["seq"]),
            agent_id=d["agent_id"],
            from_state=d["from_state"],
            to_state=d["to_state"],
            trigger=d["trigger"],
            timestamp=_ts(d["timestamp"]),
            success=bool(d["success"]),
            error=d.get("error"),
            state_data=d.get("state_data"),
            reason=d.get("reason"),
        )


@dataclass(frozen=True)
class TransitionResult:
    """Answer to a one-step transition, ``complete`` or ``abort``."""

    transition: Transition
    version: int

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> TransitionResult:
        return cls(Transition.from_wire(d["transition"]), int(d["version"]))


@dataclass(frozen=True)
class BeginResult:
    """Answer to ``transitions/begin``."""

    pending_transition: PendingTransition
    version: int

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> BeginResult:
        return cls(PendingTransition.from_wire(d["pending_transition"]), int(d["version"]))


# --- messages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewMessage:
    """A message to append; the sidecar assigns ``seq`` and ``timestamp``."""

    role: str
    content: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"role": self.role, "content": self.content, "metadata": self.metadata}


@dataclass(frozen=True)
class Message:
    """One message of an agent's conversation; ``seq`` counts from 1 per agent."""

    seq: int
    role: str
    content: str
    timestamp: datetime
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Message:
        return cls(
            seq=int(d["seq"]),
            role=d["role"],
            content=d["content"],
            timestamp=_ts(d["timestamp"]),
            metadata=_map(d.get("metadata")),
        )


@dataclass(frozen=True)
class AppendResult:
    """Sequence numbers given to appended messages, and the agent's version."""

    seqs: list[int]
    version: int

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> AppendResult:
        return cls([int(s) for s in d.get("seqs", [])], int(d["version"]))


@dataclass(frozen=True)
class PopResult:
    """The message ``pop_last_message`` removed (None if there was none)."""

    message: Message | None
    version: int

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> PopResult:
        m = d.get("message")
        return cls(Message.from_wire(m) if m else None, int(d["version"]))


# --- agent checkpoints, transfers, batches ---------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A snapshot of an agent to roll back or replay from."""

    checkpoint_id: str
    agent_id: str
    version: int
    state: AgentState
    transition_seq: int
    message_seq: int
    created_at: datetime
    label: str | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Checkpoint:
        return cls(
            checkpoint_id=d["checkpoint_id"],
            agent_id=d["agent_id"],
            version=int(d["version"]),
            state=AgentState.from_wire(d["state"]),
            transition_seq=int(d["transition_seq"]),
            message_seq=int(d["message_seq"]),
            created_at=_ts(d["created_at"]),
            label=d.get("label"),
        )


@dataclass(frozen=True)
class CheckpointResult:
    checkpoint_id: str
    version: int

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> CheckpointResult:
        return cls(d["checkpoint_id"], int(d["version"]))


@dataclass(frozen=True)
class ReplayResult:
    """The state recomputed from a checkpoint and the log (applied or a dry run)."""

    state: AgentState
    transitions_applied: int
    applied: bool
    version: int

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> ReplayResult:
        return cls(
            AgentState.from_wire(d["state"]),
            int(d["transitions_applied"]),
            bool(d["applied"]),
            int(d["version"]),
        )


@dataclass(frozen=True)
class Transfer:
    """A transfer's record: the same ``transfer_id`` again returns this."""

    transfer_id: str
    from_agent: str
    to_agent: str
    trigger: str
    context: Any
    messages_copied: int
    from_version: int
    to_version: int
    created_at: datetime
    to_trigger: str | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Transfer:
        return cls(
            transfer_id=d["transfer_id"],
            from_agent=d["from_agent"],
            to_agent=d["to_agent"],
            trigger=d["trigger"],
            context=d.get("context"),
            messages_copied=int(d["messages_copied"]),
            from_version=int(d["from_version"]),
            to_version=int(d["to_version"]),
            created_at=_ts(d["created_at"]),
            to_trigger=d.get("to_trigger"),
        )


@dataclass(frozen=True)
class BatchResult:
    """Per batch operation, in order: the agent and its version after it."""

    agent_id: str
    version: int

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> BatchResult:
        return cls(d["agent_id"], int(d["version"]))


# --- operations -------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """``GET /v1/status``: what an operator looks at first."""

    ready: bool
    backend: str
    backend_reachable: bool
    wal_segments: int
    wal_bytes: int
    wal_last_lsn: int
    flushed_lsn: int
    backlog_agents: int
    backlog_bytes: int
    backlog_bytes_max: int
    backlog_oldest_age_ms: int
    cache_entries: int
    last_flush_at: datetime | None = None
    last_flush_error: str | None = None
    #: Bytes of agent states held in the cache (0 from a sidecar that does not say).
    cache_bytes: int = 0
    #: Ownership leases this sidecar holds (MongoDB; 0 on the embedded store).
    leases_held: int = 0

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Status:
        return cls(
            ready=bool(d["ready"]),
            backend=d["backend"],
            backend_reachable=bool(d["backend_reachable"]),
            wal_segments=int(d["wal_segments"]),
            wal_bytes=int(d["wal_bytes"]),
            wal_last_lsn=int(d["wal_last_lsn"]),
            flushed_lsn=int(d["flushed_lsn"]),
            backlog_agents=int(d["backlog_agents"]),
            backlog_bytes=int(d["backlog_bytes"]),
            backlog_bytes_max=int(d["backlog_bytes_max"]),
            backlog_oldest_age_ms=int(d["backlog_oldest_age_ms"]),
            cache_entries=int(d["cache_entries"]),
            last_flush_at=parse_timestamp(d.get("last_flush_at")),
            last_flush_error=d.get("last_flush_error"),
            cache_bytes=int(d.get("cache_bytes") or 0),
            leases_held=int(d.get("leases_held") or 0),
        )


@dataclass(frozen=True)
class TableUsage:
    """What one table (SQLite) or collection (MongoDB) of the backend holds."""

    name: str
    rows: int
    data_bytes: int
    storage_bytes: int
    index_bytes: int

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> TableUsage:
        return cls(
            name=d["name"],
            rows=int(d["rows"]),
            data_bytes=int(d["data_bytes"]),
            storage_bytes=int(d["storage_bytes"]),
            index_bytes=int(d["index_bytes"]),
        )


@dataclass(frozen=True)
class Usage:
    """``GET /v1/usage``: what the backend holds per table, and the agents holding the
    most bytes (``(agent_id, bytes)``, most first)."""

    backend: str
    tables: list[TableUsage]
    largest: list[tuple[str, int]]

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Usage:
        return cls(
            backend=d["backend"],
            tables=[TableUsage.from_wire(t) for t in d.get("tables") or []],
            largest=[(a["agent_id"], int(a["bytes"])) for a in d.get("largest") or []],
        )


# --- threads (graph checkpoints) --------------------------------------------------------


@dataclass(frozen=True)
class Typed:
    """A serialized value: exactly what a LangGraph serde's ``dumps_typed`` returns."""

    type: str
    data: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.type, "data": self.data}

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Typed:
        return cls(str(d["type"]), as_bytes(d.get("data")))

    def as_tuple(self) -> tuple[str, bytes]:
        return (self.type, self.data)


@dataclass(frozen=True)
class Blob:
    """One channel's value at one version; type ``empty`` means "no value"."""

    channel: str
    version: str
    value: Typed
    #: A delta: the version of the channel this value extends; ``value`` then holds the
    #: items added to that list (a MessagePack array). Reads answer whole values.
    extends: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = {"channel": self.channel, "version": self.version, "value": self.value.to_wire()}
        if self.extends is not None:
            wire["extends"] = self.extends
        return wire

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Blob:
        return cls(d["channel"], str(d["version"]), Typed.from_wire(d["value"]))


@dataclass(frozen=True)
class PendingWriteValue:
    """A write to put: its index in the task's writes, the channel and the value."""

    idx: int
    channel: str
    value: Typed

    def to_wire(self) -> dict[str, Any]:
        return {"idx": self.idx, "channel": self.channel, "value": self.value.to_wire()}


@dataclass(frozen=True)
class Write:
    """A stored write of a task against a checkpoint."""

    task_id: str
    task_path: str
    idx: int
    channel: str
    value: Typed

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> Write:
        return cls(
            task_id=d["task_id"],
            task_path=d.get("task_path") or "",
            idx=int(d["idx"]),
            channel=d["channel"],
            value=Typed.from_wire(d["value"]),
        )


@dataclass(frozen=True)
class ThreadTuple:
    """A graph checkpoint with what it needs: its channel blobs and pending writes.

    ``writes`` come in the server's order: ``(task_path, task_id, idx)``.
    """

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    checkpoint: Typed
    metadata: dict[str, Any]
    channel_versions: dict[str, str]
    blobs: list[Blob]
    writes: list[Write]

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> ThreadTuple:
        return cls(
            thread_id=d["thread_id"],
            checkpoint_ns=d.get("checkpoint_ns") or "",
            checkpoint_id=d["checkpoint_id"],
            parent_checkpoint_id=d.get("parent_checkpoint_id") or None,
            checkpoint=Typed.from_wire(d["checkpoint"]),
            metadata=_map(d.get("metadata")),
            channel_versions={str(k): str(v) for k, v in _map(d.get("channel_versions")).items()},
            blobs=[Blob.from_wire(b) for b in d.get("blobs") or []],
            writes=[Write.from_wire(w) for w in d.get("writes") or []],
        )


@dataclass(frozen=True)
class PutCheckpointResult:
    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    version: int

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> PutCheckpointResult:
        return cls(
            d["thread_id"], d.get("checkpoint_ns") or "", d["checkpoint_id"], int(d["version"])
        )


@dataclass(frozen=True)
class DeltaChannel:
    """One channel's history for ``delta_history``: writes oldest first, and the value at
    the nearest ancestor that stored one (None when the walk found none)."""

    writes: list[Write]
    seed: Typed | None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> DeltaChannel:
        seed = d.get("seed")
        return cls(
            [Write.from_wire(w) for w in d.get("writes") or []],
            Typed.from_wire(seed) if seed else None,
        )


# --- listings and the inspector's reads ------------------------------------------------
#
# Lists are paged by an opaque cursor: a page's ``next_cursor`` goes back as ``cursor=``;
# it is None on the last page. A page may hold fewer than ``limit`` items and still have
# a ``next_cursor``.


@dataclass(frozen=True)
class AgentSummary:
    """One row of ``list_agents``: an agent without its data."""

    agent_id: str
    state_name: str
    version: int
    created_at: datetime
    updated_at: datetime
    #: A multi-step transition is begun and neither completed nor aborted.
    pending: bool
    agent_type: str | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> AgentSummary:
        return cls(
            agent_id=d["agent_id"],
            state_name=d["state_name"],
            version=int(d["version"]),
            created_at=_ts(d["created_at"]),
            updated_at=_ts(d["updated_at"]),
            pending=bool(d["pending"]),
            agent_type=d.get("agent_type"),
        )


@dataclass(frozen=True)
class AgentsPage:
    """``list_agents``: agents in order of id."""

    agents: list[AgentSummary]
    next_cursor: str | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> AgentsPage:
        return cls(
            [AgentSummary.from_wire(a) for a in d.get("agents") or []],
            d.get("next_cursor") or None,
        )


@dataclass(frozen=True)
class ThreadSummary:
    """One row of ``list_threads``: a thread with framework checkpoints."""

    thread_id: str
    #: Checkpoints of every namespace.
    checkpoints: int
    #: The greatest checkpoint id (the latest, for LangGraph's time-ordered ids).
    latest_checkpoint_id: str

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> ThreadSummary:
        return cls(d["thread_id"], int(d["checkpoints"]), d["latest_checkpoint_id"])


@dataclass(frozen=True)
class ThreadsPage:
    """``list_threads``: threads in order of id."""

    threads: list[ThreadSummary]
    next_cursor: str | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> ThreadsPage:
        return cls(
            [ThreadSummary.from_wire(t) for t in d.get("threads") or []],
            d.get("next_cursor") or None,
        )


@dataclass(frozen=True)
class TransfersPage:
    """``list_transfers``: transfers in order of transfer id."""

    transfers: list[Transfer]
    next_cursor: str | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> TransfersPage:
        return cls(
            [Transfer.from_wire(t) for t in d.get("transfers") or []],
            d.get("next_cursor") or None,
        )


@dataclass(frozen=True)
class TimelineEntry:
    """One thing that happened to an agent. ``kind`` (``transition``, ``message``,
    ``checkpoint`` or ``transfer``) names the one field that is set; a transition with
    ``success`` False was refused or aborted."""

    kind: str
    at: datetime
    transition: Transition | None = None
    message: Message | None = None
    checkpoint: Checkpoint | None = None
    transfer: Transfer | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> TimelineEntry:
        transition, message = d.get("transition"), d.get("message")
        checkpoint, transfer = d.get("checkpoint"), d.get("transfer")
        return cls(
            kind=d["kind"],
            at=_ts(d["at"]),
            transition=Transition.from_wire(transition) if transition else None,
            message=Message.from_wire(message) if message else None,
            checkpoint=Checkpoint.from_wire(checkpoint) if checkpoint else None,
            transfer=Transfer.from_wire(transfer) if transfer else None,
        )


@dataclass(frozen=True)
class TimelinePage:
    """``timeline``: an agent's transitions, messages, checkpoints and transfers in time
    order, oldest first."""

    entries: list[TimelineEntry]
    next_cursor: str | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> TimelinePage:
        return cls(
            [TimelineEntry.from_wire(e) for e in d.get("entries") or []],
            d.get("next_cursor") or None,
        )


@dataclass(frozen=True)
class ThreadCheckpointSummary:
    """One checkpoint of ``thread_history``, without its values."""

    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    metadata: dict[str, Any]

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> ThreadCheckpointSummary:
        return cls(
            checkpoint_ns=d.get("checkpoint_ns") or "",
            checkpoint_id=d["checkpoint_id"],
            parent_checkpoint_id=d.get("parent_checkpoint_id") or None,
            metadata=_map(d.get("metadata")),
        )


@dataclass(frozen=True)
class ThreadHistoryPage:
    """``thread_history``: a namespace's checkpoints, greatest id first; parents and forks
    make the tree."""

    checkpoints: list[ThreadCheckpointSummary]
    next_cursor: str | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> ThreadHistoryPage:
        return cls(
            [ThreadCheckpointSummary.from_wire(c) for c in d.get("checkpoints") or []],
            d.get("next_cursor") or None,
        )


@dataclass(frozen=True)
class RenderedValue:
    """A serialized value decoded for reading where the sidecar knows its serializer
    (``json``, LangGraph's ``msgpack``, ``null``, ``empty``): then ``decoded`` is True and
    ``value`` holds it; otherwise ``hex`` holds its first bytes. ``bytes`` is its size."""

    type: str
    decoded: bool
    bytes: int
    value: Any = None
    hex: str | None = None

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> RenderedValue:
        return cls(
            type=str(d["type"]),
            decoded=bool(d["decoded"]),
            bytes=int(d["bytes"]),
            value=d.get("value"),
            hex=d.get("hex"),
        )


@dataclass(frozen=True)
class ChannelView:
    """A channel's value at the viewed checkpoint."""

    version: str
    value: RenderedValue

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> ChannelView:
        return cls(str(d["version"]), RenderedValue.from_wire(d["value"]))


@dataclass(frozen=True)
class WriteView:
    """A pending write against the viewed checkpoint, its value decoded."""

    task_id: str
    task_path: str
    idx: int
    channel: str
    value: RenderedValue

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> WriteView:
        return cls(
            task_id=d["task_id"],
            task_path=d.get("task_path") or "",
            idx=int(d["idx"]),
            channel=d["channel"],
            value=RenderedValue.from_wire(d["value"]),
        )


@dataclass(frozen=True)
class ThreadView:
    """``thread_view``: one checkpoint with its channel values and pending writes decoded
    for reading (``ThreadTuple`` holds them serialized)."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    metadata: dict[str, Any]
    checkpoint: RenderedValue
    channels: dict[str, ChannelView]
    writes: list[WriteView]

    @classmethod
    def from_wire(cls, d: Mapping[str, Any]) -> ThreadView:
        return cls(
            thread_id=d["thread_id"],
            checkpoint_ns=d.get("checkpoint_ns") or "",
            checkpoint_id=d["checkpoint_id"],
            parent_checkpoint_id=d.get("parent_checkpoint_id") or None,
            metadata=_map(d.get("metadata")),
            checkpoint=RenderedValue.from_wire(d["checkpoint"]),
            channels={str(k): ChannelView.from_wire(v) for k, v in _map(d.get("channels")).items()},
            writes=[WriteView.from_wire(w) for w in d.get("writes") or []],
        )
