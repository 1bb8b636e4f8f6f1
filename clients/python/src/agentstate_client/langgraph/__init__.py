"""LangGraph checkpointers on the agentstate sidecar's threads API.

``AgentstateSaver`` (blocking, on :class:`agentstate_client.Client`) and ``AsyncAgentstateSaver``
(asyncio, on :class:`agentstate_client.AsyncClient`) implement every method of LangGraph's
``BaseCheckpointSaver``: checkpoints, pending writes, listing with filters, thread
deletion, copy, prune, deletion by run, and the delta-channel history the sidecar
computes server-side. A thread is a sidecar agent, so a thread's checkpoints survive
``kill -9`` of the sidecar like any acknowledged write.

Needs the ``langgraph`` extra: ``pip install 'agentstate-client[langgraph]'``.
"""

try:
    import langgraph.checkpoint.base  # noqa: F401
except ImportError as e:  # say which extra brings it, not just what is missing
    raise ImportError(
        "agentstate_client.langgraph needs the langgraph extra: "
        "pip install 'agentstate-client[langgraph]'"
    ) from e

from agentstate_client.langgraph.aio import AsyncAgentstateSaver
from agentstate_client.langgraph.saver import AgentstateSaver

__all__ = ["AgentstateSaver", "AsyncAgentstateSaver"]
