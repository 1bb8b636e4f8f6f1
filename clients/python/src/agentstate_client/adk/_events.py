"""ADK events as the messages of a session agent's conversation, and back.

An event is stored whole: its pydantic JSON (``model_dump_json``), read back with
``model_validate_json`` into an equal ``Event``. JSON longer than one message may be
(``--message-bytes-max``, 64 KiB by default) is cut into chunks at UTF-8 character
boundaries, one message each, appended in the same all-or-nothing batch.

Every message says where it belongs in its metadata: ``event_index`` (1, 2, 3... per
session), ``chunk`` of ``chunks``, and ``message_index`` (1, 2, 3... per session). The
session agent's ``state_data`` holds how many events and messages the session has at
that version, so a reader takes exactly the messages of the version it read even when
an append lands in between. The conversation is append-only here (never popped or
cleared), so the sidecar's ``seq`` of message ``i`` is ``i`` plus a constant per agent:
the latest ``k`` events are read from the end without reading the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.adk.events import Event

from agentstate_client._api import PAGE_LIMIT_MAX
from agentstate_client.async_client import AsyncClient
from agentstate_client.models import Message

#: The sidecar's default ``--message-bytes-max``: the largest chunk of an event's JSON.
MESSAGE_BYTES_MAX = 65536
#: Messages per ``messages`` operation of a batch (``--messages-per-request-max`` default).
MESSAGES_PER_OPERATION_MAX = 100
#: Role of a message whose event's author is not a valid sidecar name.
FALLBACK_ROLE = "event"
_ROLE_CHARS_MAX = 256


class CorruptSessionError(RuntimeError):
    """A session agent's conversation does not hold the events its state counts (it was
    changed by something other than this adapter)."""


def event_json(event: Event) -> str:
    """The event's JSON, compact (``exclude_none``, as ADK's own database service stores
    it) unless that would not read back equal; then whole."""
    text = event.model_dump_json(exclude_none=True)
    if Event.model_validate_json(text) != event:
        text = event.model_dump_json()
    return text


def split_utf8(text: str, chunk_bytes_max: int) -> list[str]:
    """``text`` in pieces of at most ``chunk_bytes_max`` UTF-8 bytes, never inside a
    character."""
    if chunk_bytes_max < 4:  # a character takes up to 4 bytes
        raise ValueError(f"chunks of {chunk_bytes_max} bytes cannot hold every character")
    data = text.encode("utf-8")
    if len(data) <= chunk_bytes_max:
        return [text]
    out: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + chunk_bytes_max, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte
            end -= 1
        out.append(data[start:end].decode("utf-8"))
        start = end
    return out


def event_messages(
    event: Event, *, event_index: int, first_message_index: int, message_bytes_max: int
) -> list[dict[str, Any]]:
    """The messages storing ``event`` as the session's event ``event_index``."""
    chunks = split_utf8(event_json(event), message_bytes_max)
    author = event.author or ""
    role = author if 0 < len(author) <= _ROLE_CHARS_MAX and author.isprintable() else None
    return [
        {
            "role": role or FALLBACK_ROLE,
            "content": chunk,
            "metadata": {
                "event_index": event_index,
                "chunk": i,
                "chunks": len(chunks),
                "message_index": first_message_index + i,
            },
        }
        for i, chunk in enumerate(chunks)
    ]


def message_operations(agent_id: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Batch operations appending ``messages`` in order, at most 100 per operation."""
    return [
        {
            "op": "messages",
            "agent_id": agent_id,
            "messages": messages[i : i + MESSAGES_PER_OPERATION_MAX],
        }
        for i in range(0, len(messages), MESSAGES_PER_OPERATION_MAX)
    ]


async def read_events(
    client: AsyncClient,
    agent_id: str,
    *,
    event_count: int,
    message_count: int,
    recent: int | None,
) -> list[Event]:
    """The session's events at the version whose counts are given, oldest first: all of
    them, or the latest ``recent``. Raises ``NotFound`` if the agent is gone."""
    if event_count == 0 or recent == 0:
        return []
    if recent is None or recent >= event_count:
        messages = await _read_messages(client, agent_id, after_seq=0, first=1, last=message_count)
        return _decode(agent_id, messages, first_event=1, last_event=event_count)

    first_event = event_count - recent + 1
    latest = await client.last_messages(agent_id, 1)
    if not latest:
        raise CorruptSessionError(f"{agent_id}: {event_count} events counted, no message stored")
    base_seq = latest[0].seq - _meta(agent_id, latest[0], "message_index")
    # One message per event is the common case; widen towards the start while the
    # earliest message read is not the first chunk of the first event wanted.
    lo = max(1, message_count - recent + 1)
    messages = await _read_messages(
        client, agent_id, after_seq=base_seq + lo - 1, first=lo, last=message_count
    )
    while lo > 1:
        head = messages[0]
        missing = _meta(agent_id, head, "chunk") + max(
            0, _meta(agent_id, head, "event_index") - first_event
        )
        if missing == 0:
            break
        new_lo = max(1, lo - missing)
        messages = (
            await _read_messages(
                client, agent_id, after_seq=base_seq + new_lo - 1, first=new_lo, last=lo - 1
            )
            + messages
        )
        lo = new_lo
    wanted = [m for m in messages if _meta(agent_id, m, "event_index") >= first_event]
    return _decode(agent_id, wanted, first_event=first_event, last_event=event_count)


async def _read_messages(
    client: AsyncClient, agent_id: str, *, after_seq: int, first: int, last: int
) -> list[Message]:
    """Messages ``first..last`` (by ``message_index``), reading from ``seq > after_seq``
    in pages; messages past ``last`` (appended since) are left out."""
    out: list[Message] = []
    after = after_seq
    while len(out) < last - first + 1:
        page = await client.list_messages(
            agent_id, after=after, limit=min(PAGE_LIMIT_MAX, last - first + 1 - len(out))
        )
        if not page:
            break
        out.extend(page)
        after = page[-1].seq
    for i, m in enumerate(out):
        if _meta(agent_id, m, "message_index") != first + i:
            raise CorruptSessionError(
                f"{agent_id}: message seq {m.seq} is not the session's message {first + i}"
            )
    if len(out) != last - first + 1:
        raise CorruptSessionError(
            f"{agent_id}: messages {first}..{last} counted, {len(out)} stored"
        )
    return out


def _decode(
    agent_id: str, messages: list[Message], *, first_event: int, last_event: int
) -> list[Event]:
    """Events ``first_event..last_event`` from their messages, chunks joined."""
    events: list[Event] = []
    chunks: list[str] = []
    for m in messages:
        index = _meta(agent_id, m, "event_index")
        chunk = _meta(agent_id, m, "chunk")
        if index != first_event + len(events) or chunk != len(chunks):
            raise CorruptSessionError(
                f"{agent_id}: message seq {m.seq} is chunk {chunk} of event {index}, expected "
                f"chunk {len(chunks)} of event {first_event + len(events)}"
            )
        chunks.append(m.content)
        if chunk == _meta(agent_id, m, "chunks") - 1:
            events.append(Event.model_validate_json("".join(chunks)))
            chunks = []
    if chunks or len(events) != last_event - first_event + 1:
        raise CorruptSessionError(
            f"{agent_id}: events {first_event}..{last_event} counted, {len(events)} whole ones "
            "stored"
        )
    return events


def _meta(agent_id: str, message: Message, key: str) -> int:
    value = message.metadata.get(key) if isinstance(message.metadata, Mapping) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise CorruptSessionError(f"{agent_id}: message seq {message.seq} has no {key}")
    return value
