"""``AgentstateSaver``: a blocking LangGraph checkpointer on :class:`agentstate_client.Client`.

The blocking methods are ``_core.py``'s, generated from the asyncio saver's
(``_async_core.py``). The blocking client works from any thread, so they do too. The
async methods here run them in a worker thread (``asyncio.to_thread``) rather than block
the event loop; use :class:`AsyncAgentstateSaver` for a native asyncio saver.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Mapping, Sequence
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

from agentstate_client.langgraph import _convert
from agentstate_client.langgraph._core import SaverCore


class AgentstateSaver(SaverCore):
    """LangGraph checkpointer persisting threads in the agentstate sidecar (blocking).

    Args:
        url: The sidecar; default ``AGENTSTATE_URL``, else ``http://127.0.0.1:7700``.
        token: Bearer token; default ``AGENTSTATE_TOKEN``.
        uds: Unix socket; default ``AGENTSTATE_SOCKET``.
        client: A client to use instead (not closed by the saver).
        durability: ``local`` / ``remote`` / ``memory`` for every write.
        serde: LangGraph serializer (default ``JsonPlusSerializer``).
        deltas: Send a list channel that grew from what this saver stored last (the
            ``messages`` of a conversation) as only its new items; reads answer whole
            values either way. ``False`` sends every value whole.
    """

    def __enter__(self) -> AgentstateSaver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> AgentstateSaver:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- asyncio interface: the blocking calls in a worker thread ------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

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
            search = functools.partial(self.client.search_checkpoints, **request)
            page = await asyncio.to_thread(search)
            for t in pager.take(page):
                yield _convert.to_checkpoint_tuple(self.serde, t)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(lambda: self.prune(thread_ids, strategy=strategy))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await asyncio.to_thread(
            lambda: self.get_delta_channel_history(config=config, channels=channels)
        )
