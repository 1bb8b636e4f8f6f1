"""``AsyncAgentstateSaver``: an asyncio LangGraph checkpointer on :class:`AsyncClient`.

The asyncio methods are ``_async_core.py``'s, the one source of both savers' checkpointer
methods (``tools/gen_sync.py`` derives the blocking saver's from them).

Sync methods: LangGraph's own async savers refuse them on the event loop's thread (they
would block or deadlock the loop) and serve them from other threads. This saver does the
same, but serves other threads through a blocking client with the same settings rather
than by scheduling onto the loop: that cannot deadlock, and it works whether or not the
loop is still running.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping, Sequence
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

from agentstate_client.client import Client
from agentstate_client.langgraph._async_core import AsyncSaverCore
from agentstate_client.langgraph.saver import AgentstateSaver


class AsyncAgentstateSaver(AsyncSaverCore):
    """LangGraph checkpointer persisting threads in the agentstate sidecar (asyncio).

    Args:
        url: The sidecar; default ``AGENTSTATE_URL``, else ``http://127.0.0.1:7700``.
        token: Bearer token; default ``AGENTSTATE_TOKEN``.
        uds: Unix socket; default ``AGENTSTATE_SOCKET``.
        client: An :class:`AsyncClient` to use instead (not closed by the saver).
        durability: ``local`` / ``remote`` / ``memory`` for every write.
        serde: LangGraph serializer (default ``JsonPlusSerializer``).
        deltas: Send a list channel that grew from what this saver stored last (the
            ``messages`` of a conversation) as only its new items; reads answer whole
            values either way. ``False`` sends every value whole.

    Use as ``async with AsyncAgentstateSaver() as saver:`` to close what it opened.
    """

    #: The blocking saver that serves sync calls, made on the first one; guarded by the
    #: lock, which is class-wide since it is held only while that saver is made.
    _blocking: AgentstateSaver | None = None
    _blocking_lock = threading.Lock()

    async def aclose(self) -> None:
        """Close the clients this saver created."""
        await super().aclose()
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
                    client=client,
                    durability=self.durability,
                    serde=self.serde,
                    deltas=self._deltas.enabled,
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
