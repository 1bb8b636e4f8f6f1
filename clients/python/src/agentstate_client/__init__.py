"""agentstate: Python client of the agentstate sidecar.

The sidecar (a Rust process beside each agent) makes agent state durable: every write is
in its write-ahead log before it is acknowledged, then flushed to MongoDB or an embedded
store. This package talks to it over HTTP (MessagePack by default):

- :class:`Client` / :class:`AsyncClient`: the whole HTTP API, typed (``models``), with
  typed errors (``errors``) and bounded retries.
- :mod:`agentstate_client.langgraph`: LangGraph checkpoint savers on the sidecar's threads API.
- :mod:`agentstate_client.openai_agents`: an OpenAI Agents SDK session on an agent's messages.
"""

from agentstate_client.async_client import AsyncClient
from agentstate_client.client import Client
from agentstate_client.errors import (
    AgentstateError,
    Conflict,
    ConnectionFailed,
    Forbidden,
    Malformed,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
    ValidationFailed,
    VersionConflict,
)
from agentstate_client.models import (
    AgentState,
    AppendResult,
    BatchResult,
    BeginResult,
    Blob,
    Checkpoint,
    CheckpointResult,
    DeltaChannel,
    Message,
    NewMessage,
    PendingTransition,
    PendingWriteValue,
    PopResult,
    PutCheckpointResult,
    ReplayResult,
    Status,
    TableUsage,
    ThreadTuple,
    Transfer,
    Transition,
    TransitionResult,
    Typed,
    Usage,
    Write,
)

__version__ = "0.1.0"

__all__ = [
    "AgentState",
    "AgentstateError",
    "AppendResult",
    "AsyncClient",
    "BatchResult",
    "BeginResult",
    "Blob",
    "Checkpoint",
    "CheckpointResult",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "DeltaChannel",
    "Forbidden",
    "Malformed",
    "Message",
    "NewMessage",
    "NotFound",
    "PendingTransition",
    "PendingWriteValue",
    "PopResult",
    "PutCheckpointResult",
    "ReplayResult",
    "Status",
    "TableUsage",
    "ThreadTuple",
    "TooLarge",
    "Transfer",
    "Transition",
    "TransitionResult",
    "Typed",
    "Unauthorized",
    "Unavailable",
    "Usage",
    "ValidationFailed",
    "VersionConflict",
    "Write",
]
