"""Pure conversions between LangGraph's checkpoint types and the sidecar's threads API.

Both savers (blocking and asyncio) share these, so they store and read exactly the same
shapes; only the I/O differs. Nothing here does I/O.

Storage layout (the same as LangGraph's own savers): the checkpoint without its
``channel_values`` is one serialized value; each channel value is a blob stored once per
``(namespace, channel, version)``; a checkpoint's values are the blobs at its
``channel_versions``, a blob of type ``empty`` meaning "the channel has no value".
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from agentstate_client._api import PAGE_LIMIT_MAX
from agentstate_client.langgraph._delta import DeltaMemory, PutPlan
from agentstate_client.models import DeltaChannel, PendingWriteValue, ThreadTuple, Typed

#: Nesting the sidecar accepts in a document; deeper metadata is cut to a string.
_DEPTH_MAX = 60
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def thread_of(config: RunnableConfig) -> tuple[str, str, str | None]:
    """``(thread_id, checkpoint_ns, checkpoint_id)`` of a config."""
    configurable = config["configurable"]
    return (
        str(configurable["thread_id"]),
        configurable.get("checkpoint_ns") or "",
        get_checkpoint_id(config),
    )


def typed(serde: SerializerProtocol, value: Any) -> Typed:
    kind, data = serde.dumps_typed(value)
    return Typed(kind, bytes(data))


def put_arguments(
    serde: SerializerProtocol,
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
    deltas: DeltaMemory,
) -> tuple[dict[str, Any], PutPlan]:
    """Keyword arguments of ``put_checkpoint`` for ``BaseCheckpointSaver.put``, and the
    plan of its blobs (deltas where a list channel grew from what this saver stored)."""
    thread_id, checkpoint_ns, parent_id = thread_of(config)
    stored: dict[str, Any] = dict(checkpoint)
    values: dict[str, Any] = stored.pop("channel_values", None) or {}
    plan = deltas.plan(
        serde, thread_id, checkpoint_ns, checkpoint["id"], parent_id, values, new_versions
    )
    args = {
        "thread_id": thread_id,
        "checkpoint_id": checkpoint["id"],
        "checkpoint": typed(serde, stored),
        "checkpoint_ns": checkpoint_ns,
        "parent_checkpoint_id": parent_id,
        "metadata": json_safe(get_checkpoint_metadata(config, metadata)),
        "channel_versions": {k: str(v) for k, v in checkpoint["channel_versions"].items()},
        "blobs": plan.blobs,
    }
    return args, plan


def stored_config(config: RunnableConfig, checkpoint: Checkpoint) -> RunnableConfig:
    thread_id, checkpoint_ns, _ = thread_of(config)
    return {
        "configurable": {
            "thread_id": thread_id,
            "checkpoint_ns": checkpoint_ns,
            "checkpoint_id": checkpoint["id"],
        }
    }


def write_values(
    serde: SerializerProtocol, writes: Sequence[tuple[str, Any]]
) -> list[PendingWriteValue]:
    """A task's writes; special channels (errors, interrupts...) get their fixed negative
    index so that a later write replaces them (``WRITES_IDX_MAP``)."""
    return [
        PendingWriteValue(WRITES_IDX_MAP.get(channel, idx), channel, typed(serde, value))
        for idx, (channel, value) in enumerate(writes)
    ]


def to_checkpoint_tuple(serde: SerializerProtocol, t: ThreadTuple) -> CheckpointTuple:
    checkpoint: Checkpoint = serde.loads_typed(t.checkpoint.as_tuple())
    values = {
        b.channel: serde.loads_typed(b.value.as_tuple()) for b in t.blobs if b.value.type != "empty"
    }
    checkpoint = {**checkpoint, "channel_values": values}
    parent_config: RunnableConfig | None = None
    if t.parent_checkpoint_id:
        parent_config = {
            "configurable": {
                "thread_id": t.thread_id,
                "checkpoint_ns": t.checkpoint_ns,
                "checkpoint_id": t.parent_checkpoint_id,
            }
        }
    return CheckpointTuple(
        config={
            "configurable": {
                "thread_id": t.thread_id,
                "checkpoint_ns": t.checkpoint_ns,
                "checkpoint_id": t.checkpoint_id,
            }
        },
        checkpoint=checkpoint,
        metadata=t.metadata,  # type: ignore[arg-type]  # a JSON map with the metadata keys
        parent_config=parent_config,
        pending_writes=[
            (w.task_id, w.channel, serde.loads_typed(w.value.as_tuple())) for w in t.writes
        ],
    )


def delta_result(
    serde: SerializerProtocol, channels: Sequence[str], history: Mapping[str, DeltaChannel]
) -> dict[str, DeltaChannelHistory]:
    """The sidecar's per-channel history as ``get_delta_channel_history`` returns it: every
    requested channel present, ``seed`` only when a stored value was found."""
    result: dict[str, DeltaChannelHistory] = {}
    for channel in channels:
        h = history.get(channel)
        entry: DeltaChannelHistory = {
            "writes": [
                (w.task_id, w.channel, serde.loads_typed(w.value.as_tuple()))
                for w in (h.writes if h else [])
            ]
        }
        if h is not None and h.seed is not None and h.seed.type != "empty":
            entry["seed"] = serde.loads_typed(h.seed.as_tuple())
        result[channel] = entry
    return result


def json_safe(value: Any, depth: int = 0) -> Any:
    """Metadata as the sidecar stores it: JSON-like maps of str keys and
    str/int/float/bool/null/list/map values, within 64-bit integers and finite floats.

    Tuples become lists, bytes base64 text, pydantic models their dump, anything else its
    ``str``. Exact values a filter compares (``source``, ``step``, ``run_id``, user keys)
    are plain types already and pass unchanged.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if _INT_MIN <= value <= _INT_MAX else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _DEPTH_MAX:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return json_safe(dump(mode="json"), depth + 1)
        except Exception:  # a model that cannot dump itself: fall back to its text
            return str(value)
    return str(value)


class SearchPager:
    """Pages a listing through ``POST /v1/checkpoints/search``.

    Each page asks for at most 1000 (or what is left of ``limit``), newest id first; the
    next page starts ``before`` the last id, until the limit is met or a page comes back
    short. Across threads or namespaces a checkpoint id can repeat (``copy_thread`` keeps
    ids), and ``before`` would skip the repeats a full page cut off; so after a full page
    ending in such a listing, the last id's other copies are fetched by exact id first.
    """

    def __init__(
        self,
        config: RunnableConfig | None,
        *,
        filter: Mapping[str, Any] | None,
        before: RunnableConfig | None,
        limit: int | None,
    ) -> None:
        configurable = (config or {}).get("configurable") or {}
        thread_id = configurable.get("thread_id")
        self._base: dict[str, Any] = {
            "thread_id": str(thread_id) if thread_id is not None else None,
            "checkpoint_ns": configurable.get("checkpoint_ns"),
            "checkpoint_id": configurable.get("checkpoint_id") or None,
            "filter": json_safe(dict(filter)) if filter else None,
        }
        self._before = get_checkpoint_id(before) if before else None
        self._remaining = limit
        self._done = limit is not None and limit <= 0
        self._ids_unique = (
            self._base["thread_id"] is not None and self._base["checkpoint_ns"] is not None
        )
        self._tie_id: str | None = None
        self._tie_seen: set[tuple[str, str]] = set()
        self._asked = 0

    def request(self) -> dict[str, Any] | None:
        """Keyword arguments of the next ``search_checkpoints``, or None when done."""
        if self._done:
            return None
        if self._tie_id is not None:
            self._asked = PAGE_LIMIT_MAX
            return {
                **self._base,
                "checkpoint_id": self._tie_id,
                "before": None,
                "limit": PAGE_LIMIT_MAX,
            }
        left = self._remaining
        self._asked = PAGE_LIMIT_MAX if left is None else min(PAGE_LIMIT_MAX, left)
        return {**self._base, "before": self._before, "limit": self._asked}

    def take(self, page: list[ThreadTuple]) -> list[ThreadTuple]:
        """The tuples of a page to hand out, in order; advances the cursor."""
        if self._tie_id is not None:
            fresh = [t for t in page if (t.thread_id, t.checkpoint_ns) not in self._tie_seen]
            self._before, self._tie_id, self._tie_seen = self._tie_id, None, set()
        else:
            fresh = page
            if len(page) < self._asked or not page:
                self._done = True
            else:
                last = page[-1].checkpoint_id
                if self._ids_unique:
                    self._before = last
                else:
                    self._tie_id = last
                    self._tie_seen = {
                        (t.thread_id, t.checkpoint_ns) for t in page if t.checkpoint_id == last
                    }
        if self._remaining is not None:
            fresh = fresh[: self._remaining]
            self._remaining -= len(fresh)
            if self._remaining <= 0:
                self._done = True
        return fresh
