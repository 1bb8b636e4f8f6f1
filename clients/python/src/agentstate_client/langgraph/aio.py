"""``AsyncAgentstateSaver``: an asyncio LangGraph checkpointer on :class:`AsyncClient`.

Sync methods: LangGraph's own async savers refuse them on the event loop's thread (they
would block or deadlock the loop) and serve them from other threads. This saver does the
same, but serves other threads through a blocking client with the same settings rather
than by scheduling onto the loop: that cannot deadlock, and it works whether or not the
loop is still running.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import TracebackType
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

from agentstate_client.async_client import AsyncClient
from agentstate_client.client import Client
from agentstate_client.errors import NotFound
from agentstate_client.langgraph import _convert
from agentstate_client.langgraph._base import SaverBase
from agentstate_client.langgraph.saver import AgentstateSaver


class AsyncAgentstateSaver(SaverBase):
    """LangGraph checkpointer persisting threads in the agentstate sidecar (asyncio).

    Args:
        url: The sidecar; default ``AGENTSTATE_URL``, else ``http://127.0.0.1:7700``.
        token: Bearer token; default ``AGENTSTATE_TOKEN``.
        uds: Unix socket; default ``AGENTSTATE_SOCKET``.
        client: An :class:`AsyncClient` to use instead (not closed by the saver).
        durability: ``local`` / ``remote`` / ``memory`` for every write.
        serde: LangGraph serializer (default ``JsonPlusSerializer``).

    Use as ``async with AsyncAgentstateSaver() as saver:`` to close what it opened.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        uds: str | None = None,
        client: AsyncClient | None = None,
        durability: str | None = None,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(durability=durability, serde=serde)
        self._owns_client = client is None
        self.client = client if client is not None else AsyncClient(url, token=token, uds=uds)
        self._blocking: AgentstateSaver | None = None
        self._blocking_lock = threading.Lock()

    async def aclose(self) -> None:
        """Close the clients this saver created."""
        if self._owns_client:
            await self.client.aclose()
        if self._blocking is not None:
            self._blocking.client.close()

    async def __aenter__(self) -> AsyncAgentstateSaver:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> AsyncAgentstateSaver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Without a loop the async pool cannot be closed here; it was never used by a
        # blocking caller, and the blocking client is what sync callers opened.
        if self._blocking is not None:
            self._blocking.client.close()

    # --- asyncio interface ---------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id, checkpoint_ns, checkpoint_id = _convert.thread_of(config)
        try:
            t = await self.client.get_checkpoint(
                thread_id, checkpoint_ns=checkpoint_ns, checkpoint_id=checkpoint_id
            )
        except NotFound:
            return None
        return _convert.to_checkpoint_tuple(self.serde, t)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        pager = _convert.SearchPager(config, filter=filter, before=before, limit=limit)
        while (request := pager.request()) is not None:
            for t in pager.take(await self.client.search_checkpoints(**request)):
                yield _convert.to_checkpoint_tuple(self.serde, t)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        args = _convert.put_arguments(self.serde, config, checkpoint, metadata, new_versions)
        await self.client.put_checkpoint(**args, durability=self.durability)
        return _convert.stored_config(config, checkpoint)

    async def aput_writes(
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
        await self.client.put_writes(
            thread_id,
            checkpoint_id,
            task_id,
            _convert.write_values(self.serde, writes),
            checkpoint_ns=checkpoint_ns,
            task_path=task_path,
            durability=self.durability,
        )

    async def adelete_thread(self, thread_id: str) -> None:
        try:
            await self.client.delete_thread(str(thread_id), durability=self.durability)
        except NotFound:
            return

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            await self.client.delete_for_runs([str(r) for r in run_ids], durability=self.durability)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        try:
            await self.client.copy_thread(
                str(source_thread_id), str(target_thread_id), durability=self.durability
            )
        except NotFound:
            return  # the source has no checkpoints: nothing to copy

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if thread_ids:
            await self.client.prune(
                [str(t) for t in thread_ids], strategy=strategy, durability=self.durability
            )

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        if not channels:
            return {}
        thread_id, checkpoint_ns, checkpoint_id = _convert.thread_of(config)
        history = await self.client.delta_history(
            thread_id, list(channels), checkpoint_ns=checkpoint_ns, checkpoint_id=checkpoint_id
        )
        return _convert.delta_result(self.serde, channels, history)

    # --- blocking interface: refused on the loop's thread, served elsewhere --------------

    def _sync(self) -> AgentstateSaver:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise asyncio.InvalidStateError(
                "Synchronous calls to AsyncAgentstateSaver are only allowed from a thread "
                "without a running event loop. From async code, use the async interface: "
                "`await checkpointer.aget_tuple(...)`, `await graph.ainvoke(...)`."
            )
        with self._blocking_lock:
            if self._blocking is None:
                s = self.client.settings
                client = Client(
                    s.url,
                    token=s.token,
                    uds=s.uds,
                    codec=s.codec,
                    durability=s.durability,
                    max_retries=s.max_retries,
                    timeout=s.timeout_s,
                )
                self._blocking = AgentstateSaver(
                    client=client, durability=self.durability, serde=self.serde
                )
            return self._blocking

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._sync().get_tuple(config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self._sync().list(config, filter=filter, before=before, limit=limit)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._sync().put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._sync().put_writes(config, writes, task_id, task_path)

    def delete_thread(self, thread_id: str) -> None:
        self._sync().delete_thread(thread_id)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._sync().delete_for_runs(run_ids)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._sync().copy_thread(source_thread_id, target_thread_id)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._sync().prune(thread_ids, strategy=strategy)

    def get_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return self._sync().get_delta_channel_history(config=config, channels=channels)
