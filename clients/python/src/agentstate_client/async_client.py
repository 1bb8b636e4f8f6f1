"""The asyncio client: one method per endpoint, awaited, on one long-lived connection pool.

Every method runs a call description of ``_api.py``. The pool (``_asyncio_pool.py``)
belongs to the event loop using it: used from another loop, it opens new connections
there. This file is also the source of the blocking client: ``tools/gen_sync.py`` derives
``client.py`` from it (``Client``, the same methods without ``await``, on the socket
pool), so an endpoint is added here only, then the generator is run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from agentstate_client import _api, _http, _retry
from agentstate_client._config import Settings
from agentstate_client._http1 import TransportError
from agentstate_client.errors import AgentstateError
from agentstate_client.models import (
    AgentsPage,
    AgentState,
    AgentSummary,
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

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")


class AsyncClient:
    """Asyncio client of the agentstate sidecar.

    Args:
        url: Base URL; default ``AGENTSTATE_URL``, else ``http://127.0.0.1:7700``.
        token: Bearer token; default ``AGENTSTATE_TOKEN``.
        uds: Unix socket path to connect through; default ``AGENTSTATE_SOCKET``.
        codec: ``"msgpack"`` (default) or ``"json"`` bodies.
        durability: Default durability of writes (``local``/``remote``/``memory``); None
            leaves it to the server (``local``). Every write method also takes one.
        max_retries: Retries after connection failures and 503s (never after 4xx).
        timeout: Seconds to wait for the sidecar's answer, and at most 5 to connect (a
            ``remote`` write may wait for the backend).
        transport: An httpx transport to send through instead of the built-in one
            (proxies, TLS, tests); needs httpx installed.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        token: str | None = None,
        uds: str | None = None,
        codec: str = "msgpack",
        durability: str | None = None,
        max_retries: int = 3,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = Settings.resolve(
            url,
            token=token,
            uds=uds,
            codec=codec,
            durability=durability,
            max_retries=max_retries,
            timeout=timeout,
        )
        self._transport = _http.async_transport(self.settings, transport)

    # --- lifecycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._transport.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, call: _api.Call[T]) -> T:
        settings = self.settings
        request = _http.request_of(settings, call)
        attempt = 0
        while True:
            error: AgentstateError
            try:
                response = await self._transport.exchange(request)
            except TransportError as e:
                error = _http.connection_failed(settings, e)
                retriable = _retry.retriable_transport_error(e, call)
                cause: BaseException | None = e
            else:
                reply = _http.reply_of(response)
                if _http.is_success(call, reply):
                    return call.parse(reply)
                error = _http.error_of(reply)
                durability = _http.effective_durability(settings, call)
                retriable = _retry.retriable_error(error, call, durability)
                cause = None
            if not retriable or attempt >= settings.max_retries:
                raise error from cause
            await asyncio.sleep(_retry.wait_s(settings, attempt, _http.retry_after(error)))
            attempt += 1

    # --- agents --------------------------------------------------------------------------

    async def get_agent(self, agent_id: str) -> AgentState:
        """The agent's current state (:class:`~agentstate_client.errors.NotFound` if none)."""
        return await self._send(_api.get_agent(agent_id))

    async def save_agent(
        self,
        agent_id: str,
        state_name: str,
        *,
        agent_type: str | None = None,
        state_data: Any = None,
        metadata: Mapping[str, Any] | None = None,
        if_match: int | None = None,
        if_none_match: bool = False,
        durability: str | None = None,
    ) -> int:
        """Save the agent's state; returns the new version.

        ``if_match=v``: only if the stored version is ``v``; ``if_none_match=True``: only
        if the agent does not exist. Either failing raises ``VersionConflict``.
        """
        return await self._send(
            _api.save_agent(
                agent_id,
                state_name,
                agent_type=agent_type,
                state_data=state_data,
                metadata=metadata,
                if_match=if_match,
                if_none_match=if_none_match,
                durability=durability,
            )
        )

    async def delete_agent(
        self, agent_id: str, *, if_match: int | None = None, durability: str | None = None
    ) -> None:
        """Delete the agent with its log, conversation and checkpoints."""
        return await self._send(
            _api.delete_agent(agent_id, if_match=if_match, durability=durability)
        )

    # --- transitions ---------------------------------------------------------------------

    async def transition(
        self,
        agent_id: str,
        to_state: str,
        trigger: str,
        *,
        state_data: Any = None,
        if_match: int | None = None,
        durability: str | None = None,
    ) -> TransitionResult:
        """Move the agent to ``to_state`` and log it, atomically (422 if not allowed)."""
        return await self._send(
            _api.transition(
                agent_id,
                to_state,
                trigger,
                state_data=state_data,
                if_match=if_match,
                durability=durability,
            )
        )

    async def begin_transition(
        self,
        agent_id: str,
        to_state: str,
        trigger: str,
        *,
        state_data: Any = None,
        if_match: int | None = None,
        durability: str | None = None,
    ) -> BeginResult:
        """Start a multi-step transition; finish it with ``complete_transition`` or
        ``abort_transition`` (it survives crashes meanwhile)."""
        return await self._send(
            _api.begin_transition(
                agent_id,
                to_state,
                trigger,
                state_data=state_data,
                if_match=if_match,
                durability=durability,
            )
        )

    async def complete_transition(
        self,
        agent_id: str,
        transition_id: str,
        *,
        state_data: Any = None,
        if_match: int | None = None,
        durability: str | None = None,
    ) -> TransitionResult:
        return await self._send(
            _api.finish_transition(
                agent_id,
                transition_id,
                "complete",
                {"state_data": state_data},
                if_match=if_match,
                durability=durability,
            )
        )

    async def abort_transition(
        self,
        agent_id: str,
        transition_id: str,
        *,
        error: str | None = None,
        if_match: int | None = None,
        durability: str | None = None,
    ) -> TransitionResult:
        return await self._send(
            _api.finish_transition(
                agent_id,
                transition_id,
                "abort",
                {"error": error},
                if_match=if_match,
                durability=durability,
            )
        )

    async def list_transitions(
        self, agent_id: str, *, after: int = 0, limit: int = 100
    ) -> list[Transition]:
        """The transition log, oldest first, from ``seq > after``."""
        return await self._send(_api.list_transitions(agent_id, after=after, limit=limit))

    # --- messages ------------------------------------------------------------------------

    async def append_messages(
        self,
        agent_id: str,
        messages: Iterable[NewMessage | Mapping[str, Any]],
        *,
        if_match: int | None = None,
        durability: str | None = None,
    ) -> AppendResult:
        """Append ``{role, content, metadata?}`` messages (the agent must exist)."""
        return await self._send(
            _api.append_messages(agent_id, messages, if_match=if_match, durability=durability)
        )

    async def list_messages(
        self, agent_id: str, *, after: int = 0, limit: int = 100
    ) -> list[Message]:
        """The conversation, oldest first, from ``seq > after``."""
        return await self._send(_api.list_messages(agent_id, after=after, limit=limit))

    async def last_messages(self, agent_id: str, n: int) -> list[Message]:
        """The latest ``n`` (1..1000) messages, oldest first."""
        return await self._send(_api.last_messages(agent_id, n))

    async def pop_last_message(
        self, agent_id: str, *, if_match: int | None = None, durability: str | None = None
    ) -> PopResult:
        """Remove and return the latest message (``message`` None if there was none)."""
        return await self._send(
            _api.pop_last_message(agent_id, if_match=if_match, durability=durability)
        )

    async def clear_messages(
        self, agent_id: str, *, if_match: int | None = None, durability: str | None = None
    ) -> int:
        """Remove the whole conversation (the agent stays); returns the new version."""
        return await self._send(
            _api.clear_messages(agent_id, if_match=if_match, durability=durability)
        )

    # --- agent checkpoints ---------------------------------------------------------------

    async def create_checkpoint(
        self, agent_id: str, *, label: str | None = None, durability: str | None = None
    ) -> CheckpointResult:
        """Snapshot the agent (state, log and conversation positions)."""
        return await self._send(
            _api.create_checkpoint(agent_id, label=label, durability=durability)
        )

    async def list_checkpoints(self, agent_id: str) -> list[Checkpoint]:
        return await self._send(_api.list_checkpoints(agent_id))

    async def rollback(
        self,
        agent_id: str,
        checkpoint_id: str,
        *,
        if_match: int | None = None,
        durability: str | None = None,
    ) -> TransitionResult:
        """Make the checkpoint's state current (a new version, logged as ``rollback``)."""
        return await self._send(
            _api.rollback(agent_id, checkpoint_id, if_match=if_match, durability=durability)
        )

    async def replay(
        self,
        agent_id: str,
        checkpoint_id: str,
        *,
        apply: bool = False,
        if_match: int | None = None,
        durability: str | None = None,
    ) -> ReplayResult:
        """Recompute the state from a checkpoint and the log; a dry run unless ``apply``."""
        return await self._send(
            _api.replay(
                agent_id, checkpoint_id, apply=apply, if_match=if_match, durability=durability
            )
        )

    # --- transfers and batches -----------------------------------------------------------

    async def create_transfer(
        self,
        transfer_id: str,
        from_agent: str,
        to_agent: str,
        trigger: str,
        *,
        to_trigger: str | None = None,
        to_agent_type: str | None = None,
        context: Any = None,
        messages_max: int | None = None,
        durability: str | None = None,
    ) -> Transfer:
        """Hand the conversation and context to another agent, all or nothing."""
        return await self._send(
            _api.create_transfer(
                transfer_id,
                from_agent,
                to_agent,
                trigger,
                to_trigger=to_trigger,
                to_agent_type=to_agent_type,
                context=context,
                messages_max=messages_max,
                durability=durability,
            )
        )

    async def get_transfer(self, transfer_id: str) -> Transfer:
        return await self._send(_api.get_transfer(transfer_id))

    async def batch(
        self, operations: Sequence[Mapping[str, Any]], *, durability: str | None = None
    ) -> list[BatchResult]:
        """Several operations, all or nothing. Each is a wire map with ``op`` one of
        ``put``/``delete``/``transition``/``messages``, ``agent_id``, ``if_match?`` and
        the fields of the matching single call."""
        return await self._send(_api.batch(operations, durability=durability))

    # --- operations ----------------------------------------------------------------------

    async def health(self) -> bool:
        """True while the process runs (``/healthz``)."""
        return await self._send(_api.health())

    async def ready(self) -> bool:
        """True once the WAL is replayed and the backlog is under its bound (``/readyz``)."""
        return await self._send(_api.ready())

    async def status(self) -> Status:
        return await self._send(_api.status())

    async def usage(self, top: int = 10) -> Usage:
        """What the backend holds per table, and the ``top`` agents holding the most bytes
        (0 to 1000)."""
        return await self._send(_api.usage(top))

    async def metrics(self) -> str:
        """Prometheus text."""
        return await self._send(_api.metrics())

    # --- threads (graph checkpoints) -----------------------------------------------------

    async def put_checkpoint(
        self,
        thread_id: str,
        checkpoint_id: str,
        checkpoint: Typed,
        *,
        checkpoint_ns: str = "",
        parent_checkpoint_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        channel_versions: Mapping[str, str] | None = None,
        blobs: Iterable[Any] = (),
        durability: str | None = None,
    ) -> PutCheckpointResult:
        """Store a graph checkpoint (creates the thread's agent if absent)."""
        return await self._send(
            _api.put_checkpoint(
                thread_id,
                checkpoint_id,
                checkpoint,
                checkpoint_ns=checkpoint_ns,
                parent_checkpoint_id=parent_checkpoint_id,
                metadata=metadata,
                channel_versions=channel_versions,
                blobs=blobs,
                durability=durability,
            )
        )

    async def put_writes(
        self,
        thread_id: str,
        checkpoint_id: str,
        task_id: str,
        writes: Iterable[PendingWriteValue],
        *,
        checkpoint_ns: str = "",
        task_path: str = "",
        durability: str | None = None,
    ) -> int:
        """Store a task's pending writes against a checkpoint; returns the version."""
        return await self._send(
            _api.put_writes(
                thread_id,
                checkpoint_id,
                task_id,
                writes,
                checkpoint_ns=checkpoint_ns,
                task_path=task_path,
                durability=durability,
            )
        )

    async def get_checkpoint(
        self, thread_id: str, *, checkpoint_ns: str = "", checkpoint_id: str | None = None
    ) -> ThreadTuple:
        """A checkpoint tuple; the latest in the namespace without ``checkpoint_id``.
        Raises ``NotFound`` if there is none."""
        return await self._send(
            _api.get_checkpoint(thread_id, checkpoint_ns=checkpoint_ns, checkpoint_id=checkpoint_id)
        )

    async def search_checkpoints(
        self,
        *,
        thread_id: str | None = None,
        checkpoint_ns: str | None = None,
        checkpoint_id: str | None = None,
        before: str | None = None,
        filter: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> list[ThreadTuple]:
        """One page of checkpoints, newest id first (None = any thread / namespace)."""
        return await self._send(
            _api.search_checkpoints(
                thread_id=thread_id,
                checkpoint_ns=checkpoint_ns,
                checkpoint_id=checkpoint_id,
                before=before,
                filter=filter,
                limit=limit,
            )
        )

    async def delete_thread(self, thread_id: str, *, durability: str | None = None) -> None:
        """Delete the thread's checkpoints, writes, blobs and agent (fine if absent)."""
        return await self._send(_api.delete_thread(thread_id, durability=durability))

    async def copy_thread(
        self, source_thread_id: str, target_thread_id: str, *, durability: str | None = None
    ) -> int:
        """Copy every checkpoint and write; returns how many checkpoints were copied."""
        return await self._send(
            _api.copy_thread(source_thread_id, target_thread_id, durability=durability)
        )

    async def prune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "keep_latest",
        durability: str | None = None,
    ) -> int:
        """``keep_latest`` (per namespace) or ``delete``; returns checkpoints deleted."""
        return await self._send(_api.prune(thread_ids, strategy=strategy, durability=durability))

    async def delete_for_runs(
        self, run_ids: Sequence[str], *, durability: str | None = None
    ) -> int:
        """Delete checkpoints whose ``metadata.run_id`` is listed, in any thread."""
        return await self._send(_api.delete_for_runs(run_ids, durability=durability))

    async def delta_history(
        self,
        thread_id: str,
        channels: Sequence[str],
        *,
        checkpoint_ns: str = "",
        checkpoint_id: str | None = None,
    ) -> dict[str, DeltaChannel]:
        """Per channel: the writes along the target's ancestors and the nearest stored
        value (LangGraph's ``get_delta_channel_history``, served by the sidecar)."""
        return await self._send(
            _api.delta_history(
                thread_id, channels, checkpoint_ns=checkpoint_ns, checkpoint_id=checkpoint_id
            )
        )

    # --- listings and the inspector's reads ----------------------------------------------
    #
    # Paged by an opaque cursor: pass a page's ``next_cursor`` back as ``cursor`` (None on
    # the last page). A page may be shorter than ``limit`` (1 to 1000) and not be the last.

    async def list_agents(
        self,
        *,
        prefix: str | None = None,
        state: str | None = None,
        agent_type: str | None = None,
        updated_after: datetime | None = None,
        failed: bool = False,
        cursor: str | None = None,
        limit: int = 100,
    ) -> AgentsPage:
        """One page of agents in order of id, unflushed changes included: ids starting
        with ``prefix``, in ``state``, of ``agent_type``, changed after ``updated_after``
        (a naive datetime is UTC), with a refused transition in their log (``failed``)."""
        return await self._send(
            _api.list_agents(
                prefix=prefix,
                state=state,
                agent_type=agent_type,
                updated_after=updated_after,
                failed=failed,
                cursor=cursor,
                limit=limit,
            )
        )

    async def iter_agents(
        self,
        *,
        prefix: str | None = None,
        state: str | None = None,
        agent_type: str | None = None,
        updated_after: datetime | None = None,
        failed: bool = False,
        page_size: int = 100,
    ) -> AsyncIterator[AgentSummary]:
        """Every agent ``list_agents`` lists with these filters, fetching page after page
        (``page_size`` each) as the iteration goes."""
        cursor: str | None = None
        while True:
            page = await self.list_agents(
                prefix=prefix,
                state=state,
                agent_type=agent_type,
                updated_after=updated_after,
                failed=failed,
                cursor=cursor,
                limit=page_size,
            )
            # In client.py, made from this, ruff would want `yield from` (UP028), which an
            # async generator cannot use.
            for agent in page.agents:  # noqa: RUF100, UP028
                yield agent
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def list_threads(
        self, *, prefix: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> ThreadsPage:
        """One page of threads with framework checkpoints, in order of id."""
        return await self._send(_api.list_threads(prefix=prefix, cursor=cursor, limit=limit))

    async def list_transfers(
        self, *, agent: str | None = None, cursor: str | None = None, limit: int = 100
    ) -> TransfersPage:
        """One page of transfers in order of transfer id: all, or those from or to
        ``agent``."""
        return await self._send(_api.list_transfers(agent=agent, cursor=cursor, limit=limit))

    async def timeline(
        self, agent_id: str, *, cursor: str | None = None, limit: int = 100
    ) -> TimelinePage:
        """One page of everything that happened to the agent, oldest first: transitions
        (refused and aborted ones, rollbacks and replays among them), messages,
        checkpoints, transfers in and out. Raises ``NotFound`` if there is no agent."""
        return await self._send(_api.timeline(agent_id, cursor=cursor, limit=limit))

    async def thread_history(
        self,
        thread_id: str,
        *,
        checkpoint_ns: str = "",
        cursor: str | None = None,
        limit: int = 100,
    ) -> ThreadHistoryPage:
        """One page of a namespace's checkpoints without their values, greatest id first
        (empty for a thread without any)."""
        return await self._send(
            _api.thread_history(thread_id, checkpoint_ns=checkpoint_ns, cursor=cursor, limit=limit)
        )

    async def thread_view(
        self, thread_id: str, *, checkpoint_ns: str = "", checkpoint_id: str | None = None
    ) -> ThreadView:
        """A checkpoint (the namespace's latest without ``checkpoint_id``) with its channel
        values and pending writes decoded for reading. Raises ``NotFound`` if there is
        none."""
        return await self._send(
            _api.thread_view(thread_id, checkpoint_ns=checkpoint_ns, checkpoint_id=checkpoint_id)
        )
