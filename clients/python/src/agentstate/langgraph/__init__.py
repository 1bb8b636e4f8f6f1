"""LangGraph checkpointers on the agentstate sidecar's threads API.

``AgentstateSaver`` (blocking, on :class:`agentstate.Client`) and ``AsyncAgentstateSaver``
(asyncio, on :class:`agentstate.AsyncClient`) implement every method of LangGraph's
``BaseCheckpointSaver``: checkpoints, pending writes, listing with filters, thread
deletion, copy, prune, deletion by run, and the delta-channel history the sidecar
computes server-side. A thread is a sidecar agent, so a thread's checkpoints survive
``kill -9`` of the sidecar like any acknowledged write.

Needs the ``langgraph`` extra: ``pip install 'agentstate[langgraph]'``.
"""

try:
    import langgraph.checkpoint.base  # noqa: F401
except ImportError as e:  # say which extra brings it, not just what is missing
    raise ImportError(
        "agentstate.langgraph needs the langgraph extra: pip install 'agentstate[langgraph]'"
    ) from e

from agentstate.langgraph.aio import AsyncAgentstateSaver
from agentstate.langgraph.saver import AgentstateSaver

__all__ = ["AgentstateSaver", "AsyncAgentstateSaver"]
