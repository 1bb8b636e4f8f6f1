"""Which channel values a put sends as deltas.

A list-valued channel (``messages`` under ``add_messages``) mostly grows by a few items a
step. When a channel's new value extends the value this saver last stored for the same
thread and namespace, and the put's parent is the checkpoint it stored then, only the
new items are serialized and sent, as a blob that ``extends`` the stored version; the
sidecar answers every read with the whole value, byte for byte what serializing the
whole list gives.

"Extends" is decided without serializing the old items (that is the cost saved): the
old items must be the very same objects, in the same places, and each one's attributes
(or a dict item's entries, or a list item's elements) the same objects or equal values
as when they were stored. So ``RemoveMessage``, a replacement by id, a reordering, an
attribute assigned on an earlier message, a fork from an older checkpoint, another
process writing the thread, or a saver that restarted all send the whole value. Not
seen: a change made inside a nested container of an earlier item in place (for example
``message.additional_kwargs["k"] = v`` or appending to a list ``content``); LangGraph's
state is meant to be updated through node returns, and a saver built with
``deltas=False`` sends whole values always.

A whole value is sent again after ``CHAIN_MAX`` deltas in a row, or once the deltas since
the last whole value add up to more than ``GROWTH`` times its size. The whole values then
grow by a factor of at least ``GROWTH`` + 1, and every item is in one delta or in whole
values only: the stored values stay within 1 + (``GROWTH`` + 1) / ``GROWTH`` times the
final value (2.33 at 3; 1.5 for bench/langgraph's conversation). A read puts together
at most ``CHAIN_MAX`` + 1 blobs.
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from langgraph.checkpoint.serde.base import SerializerProtocol

from agentstate_client.models import Blob, Typed

#: Deltas in a row before a whole value again.
CHAIN_MAX = 128
#: A whole value again once the deltas since the last exceed this many times its size.
GROWTH = 3
#: Threads (and namespaces) remembered; the least recently written is forgotten.
THREADS_MAX = 1024
#: The serializer's type for MessagePack: the only one a delta can extend.
MSGPACK = "msgpack"


def _shape(item: Any) -> Any:
    """What an in-place change to an item would change: its attributes, entries or
    elements (shallow), or nothing for an immutable value."""
    attrs = getattr(item, "__dict__", None)
    if attrs is not None:
        return dict(attrs)
    if isinstance(item, dict):
        return dict(item)
    if isinstance(item, list):
        return list(item)
    return None


def _shapes(items: Any) -> list[Any]:
    try:
        # The common case (messages: objects with attributes) in C.
        return [dict(a) for a in map(vars, items)]
    except TypeError:
        return [_shape(x) for x in items]


def _current_shapes(items: Any) -> list[Any]:
    try:
        return list(map(vars, items))
    except TypeError:
        return [_shape(x) for x in items]


@dataclass
class _Stored:
    """What this saver stored of one channel: its version, and the items of that value
    as objects the application may extend: those it put and, once read back, those it
    read (LangGraph builds a run's state from what it reads)."""

    version: str
    #: ``(items, shapes)`` pairs, the put's first; at most two.
    views: list[tuple[list[Any], list[Any]]]
    #: Size of the whole value the chain stands on, and of the deltas since.
    whole_bytes: int
    delta_bytes: int = 0
    chain: int = 0

    @property
    def length(self) -> int:
        return len(self.views[0][0])

    def extended_by(self, value: list[Any]) -> list[Any] | None:
        """The shapes of the old items if ``value`` is them (unchanged) followed by new
        ones, else None."""
        n = self.length
        if len(value) < n:
            return None
        for items, shapes in self.views:
            if not all(map(operator.is_, islice(value, n), items)):
                continue
            try:
                return shapes if _current_shapes(islice(value, n)) == shapes else None
            except Exception:  # an attribute whose == refuses to answer: send it whole
                return None
        return None

    def read_back(self, value: list[Any]) -> None:
        """Adds the items of a read of this version."""
        if len(value) == self.length:
            self.views[1:] = [(list(value), _shapes(value))]


@dataclass
class _Head:
    checkpoint_id: str
    channels: dict[str, _Stored] = field(default_factory=dict)


@dataclass
class PutPlan:
    """The blobs of one put and what to remember once it is stored."""

    key: tuple[str, str]
    checkpoint_id: str
    parent: _Head | None
    blobs: list[Blob]
    remember: dict[str, _Stored | None]

    @property
    def has_deltas(self) -> bool:
        return any(b.extends is not None for b in self.blobs)


class DeltaMemory:
    """Per thread and namespace, the last checkpoint this saver stored and its list
    channels' items."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._heads: OrderedDict[tuple[str, str], _Head] = OrderedDict()
        # LangGraph's blocking graphs put from worker threads: changes to the table are
        # made under this lock (lookups need none).
        self._lock = threading.Lock()

    def plan(
        self,
        serde: SerializerProtocol,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        parent_id: str | None,
        values: Mapping[str, Any],
        new_versions: Mapping[str, Any],
    ) -> PutPlan:
        """The blobs of a put: deltas where a value extends what was stored for the
        parent, whole values otherwise."""
        key = (thread_id, checkpoint_ns)
        head = self._heads.get(key) if self.enabled and parent_id is not None else None
        parent = head if head is not None and head.checkpoint_id == parent_id else None
        blobs: list[Blob] = []
        remember: dict[str, _Stored | None] = {}
        for channel, version in new_versions.items():
            version = str(version)
            if channel not in values:
                blobs.append(Blob(channel, version, Typed("empty", b"")))
                remember[channel] = None
                continue
            value = values[channel]
            stored = parent.channels.get(channel) if parent is not None else None
            blob, kept = self._blob(serde, channel, version, value, stored)
            blobs.append(blob)
            remember[channel] = kept
        return PutPlan(key, checkpoint_id, parent, blobs, remember)

    def _blob(
        self,
        serde: SerializerProtocol,
        channel: str,
        version: str,
        value: Any,
        stored: _Stored | None,
    ) -> tuple[Blob, _Stored | None]:
        is_list = self.enabled and type(value) is list
        shapes = None
        if is_list and stored is not None and stored.chain < CHAIN_MAX:
            shapes = stored.extended_by(value)
        if stored is not None and shapes is not None:
            n = stored.length
            kind, data = serde.dumps_typed(value[n:])
            if kind == MSGPACK and stored.delta_bytes + len(data) <= GROWTH * stored.whole_bytes:
                kept = _Stored(
                    version,
                    [(list(value), shapes + _shapes(value[n:]))],
                    stored.whole_bytes,
                    stored.delta_bytes + len(data),
                    stored.chain + 1,
                )
                return Blob(channel, version, Typed(kind, bytes(data)), stored.version), kept
        kind, data = serde.dumps_typed(value)
        whole = Blob(channel, version, Typed(kind, bytes(data)))
        if not is_list or kind != MSGPACK:
            return whole, None
        return whole, _Stored(version, [(list(value), _shapes(value))], len(data))

    def whole(self, serde: SerializerProtocol, plan: PutPlan, values: Mapping[str, Any]) -> None:
        """Turns a plan's deltas into whole values (the sidecar refused a delta)."""
        for i, b in enumerate(plan.blobs):
            if b.extends is not None:
                kind, data = serde.dumps_typed(values[b.channel])
                plan.blobs[i] = Blob(b.channel, b.version, Typed(kind, bytes(data)))
                kept = plan.remember.get(b.channel)
                if kept is not None:
                    kept.whole_bytes, kept.delta_bytes, kept.chain = len(data), 0, 0

    def stored(self, plan: PutPlan) -> None:
        """Remembers a put the sidecar acknowledged."""
        if not self.enabled:
            return
        channels = dict(plan.parent.channels) if plan.parent is not None else {}
        for channel, kept in plan.remember.items():
            if kept is None:
                channels.pop(channel, None)
            else:
                channels[channel] = kept
        with self._lock:
            self._heads[plan.key] = _Head(plan.checkpoint_id, channels)
            self._heads.move_to_end(plan.key)
            while len(self._heads) > THREADS_MAX:
                self._heads.popitem(last=False)

    def read(
        self,
        thread_id: str,
        checkpoint_ns: str,
        checkpoint_id: str,
        versions: Mapping[str, Any],
        values: Mapping[str, Any],
    ) -> None:
        """Remembers the objects of a read of the checkpoint this saver stored last."""
        head = self._heads.get((thread_id, checkpoint_ns))
        if head is None or head.checkpoint_id != checkpoint_id:
            return
        for channel, stored in head.channels.items():
            value = values.get(channel)
            if type(value) is list and str(versions.get(channel)) == stored.version:
                stored.read_back(value)

    def forget(self, thread_id: str) -> None:
        """Forgets a thread in every namespace (it was deleted, copied onto or pruned)."""
        with self._lock:
            for key in [k for k in self._heads if k[0] == thread_id]:
                del self._heads[key]
