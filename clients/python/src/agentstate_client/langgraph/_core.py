# Generated from src/agentstate_client/langgraph/_async_core.py by tools/gen_sync.py: edit
# that file and run `python clients/python/tools/gen_sync.py`, not this one.
"""The client, its lifetime and the checkpointer methods of ``AgentstateSaver``.

Blocking: LangGraph calls these from whatever thread runs the graph, and the
blocking client works from any thread. ``saver.py`` adds the asyncio interface,
on worker threads.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from agentstate_client.client import Client
from agentstate_client.errors import Conflict, NotFound
from agentstate_client.langgraph import _convert
from agentstate_client.langgraph._base import SaverBase


class SaverCore(SaverBase):
    """The client and the blocking checkpointer methods of :class:`AgentstateSaver`."""

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        uds: str | None = None,
        client: Client | None = None,
        durability: str | None = None,
        serde: SerializerProtocol | None = None,
        deltas: bool = True,
    ) -> None:
        super().__init__(durability=durability, serde=serde, deltas=deltas)
        self._owns_client = client is None
        self.client = client if client is not None else Client(url, token=token, uds=uds)

    def close(self) -> None:
        """Close the client if this saver created it."""
        if self._owns_client:
            self.client.close()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id, checkpoint_ns, checkpoint_id = _convert.thread_of(config)
        try:
            t = self.client.get_checkpoint(
                thread_id, checkpoint_ns=checkpoint_ns, checkpoint_id=checkpoint_id
            )
        except NotFound:
            return None
        found = _convert.to_checkpoint_tuple(self.serde, t)
        c = found.checkpoint
        self._deltas.read(
            thread_id, checkpoint_ns, c["id"], c["channel_versions"], c["channel_values"]
        )
        return found

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        pager = _convert.SearchPager(config, filter=filter, before=before, limit=limit)
        while (request := pager.request()) is not None:
            for t in pager.take(self.client.search_checkpoints(**request)):
                yield _convert.to_checkpoint_tuple(self.serde, t)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        args, plan = _convert.put_arguments(
            self.serde, config, checkpoint, metadata, new_versions, self._deltas
        )
        try:
            self.client.put_checkpoint(**args, durability=self.durability)
        except Conflict:
            if not plan.has_deltas:
                raise
            # The sidecar no longer holds a base (or refuses the chain): send it whole.
            self._deltas.whole(self.serde, plan, checkpoint["channel_values"])
            self.client.put_checkpoint(**args, durability=self.durability)
        self._deltas.stored(plan)
        return _convert.stored_config(config, checkpoint)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        if not writes:
            return
        thread_id, checkpoint_ns, checkpoint_id = _convert.thread_of(config)
        if checkpoint_id is None:
            raise ValueError("put_writes needs a config with a checkpoint_id")
        self.client.put_writes(
            thread_id,
            checkpoint_id,
            task_id,
            _convert.write_values(self.serde, writes),
            checkpoint_ns=checkpoint_ns,
            task_path=task_path,
            durability=self.durability,
        )

    def delete_thread(self, thread_id: str) -> None:
        self._deltas.forget(str(thread_id))
        try:
            self.client.delete_thread(str(thread_id), durability=self.durability)
        except NotFound:
            return

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            self.client.delete_for_runs([str(r) for r in run_ids], durability=self.durability)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._deltas.forget(str(target_thread_id))
        try:
            self.client.copy_thread(
                str(source_thread_id), str(target_thread_id), durability=self.durability
            )
        except NotFound:
            return  # the source has no checkpoints: nothing to copy

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        for t in thread_ids:
            self._deltas.forget(str(t))
        if thread_ids:
            self.client.prune(
                [str(t) for t in thread_ids], strategy=strategy, durability=self.durability
            )

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        if not channels:
            return {}
        thread_id, checkpoint_ns, checkpoint_id = _convert.thread_of(config)
        history = self.client.delta_history(
            thread_id, list(channels), checkpoint_ns=checkpoint_ns, checkpoint_id=checkpoint_id
        )
        return _convert.delta_result(self.serde, channels, history)
