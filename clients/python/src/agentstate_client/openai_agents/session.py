"""``AgentstateSession``: an OpenAI Agents SDK session kept in the agentstate sidecar.

A session is one sidecar agent (id = ``session_id``); each conversation item is one
message of it: ``role`` = the item's role (or type), ``content`` = the item as compact
JSON. So the history gets the sidecar's durability (in the WAL before acknowledged) and
can be read by anything else that reads the agent's conversation.

Limits inherited from the sidecar: one item's JSON is at most ``--message-bytes-max``
(64 KiB by default); larger items are refused with ``Malformed``/``TooLarge``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from agents.memory import SessionABC, SessionSettings
from agents.memory.session_settings import resolve_session_limit

from agentstate_client._api import PAGE_LIMIT_MAX
from agentstate_client.async_client import AsyncClient
from agentstate_client.errors import NotFound, VersionConflict
from agentstate_client.models import Message

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

#: Messages per append request (the sidecar's ``--messages-per-request-max`` default).
APPEND_MESSAGES_MAX = 100
#: Operations per batch (``--batch-operations-max`` default): bigger adds go in pieces.
BATCH_OPERATIONS_MAX = 100


class AgentstateSession(SessionABC):
    """Conversation memory for ``Runner.run(agent, input, session=...)`` in the sidecar.

    Args:
        session_id: The sidecar agent holding the conversation (agent-id rules: 1-128 of
            ``A-Z a-z 0-9 - _ . :``). Created on the first ``add_items``.
        url, token, uds: Where the sidecar is (defaults from ``AGENTSTATE_URL``,
            ``AGENTSTATE_TOKEN``, ``AGENTSTATE_SOCKET``).
        client: An :class:`AsyncClient` to use instead (not closed by the session).
        durability: ``local`` / ``remote`` / ``memory`` for every write.
        session_settings: The SDK's settings (``limit``: default for ``get_items``).
    """

    def __init__(
        self,
        session_id: str,
        *,
        url: str | None = None,
        token: str | None = None,
        uds: str | None = None,
        client: AsyncClient | None = None,
        durability: str | None = None,
        session_settings: SessionSettings | None = None,
    ) -> None:
        self.session_id = session_id
        self.session_settings = session_settings or SessionSettings()
        self.durability = durability
        self._owns_client = client is None
        self.client = client if client is not None else AsyncClient(url, token=token, uds=uds)
        #: Set once the agent is known to exist, to skip the create on later adds.
        self._agent_exists = False

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def __aenter__(self) -> AgentstateSession:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- the Session protocol ------------------------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The latest ``limit`` items, oldest first (None: the settings' limit, else all)."""
        n = resolve_session_limit(limit, self.session_settings)
        try:
            if n is None or n < 0:
                messages = await self._all_messages()
            elif n == 0:
                return []
            elif n <= PAGE_LIMIT_MAX:
                messages = await self.client.last_messages(self.session_id, n)
            else:
                messages = (await self._all_messages())[-n:]
        except NotFound:
            return []
        return [item for m in messages if (item := _decode(m)) is not None]

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        if not items:
            return
        messages = [_encode(item) for item in items]
        if not self._agent_exists:
            await self._create_agent()
        try:
            await self._append(messages)
        except NotFound:  # deleted meanwhile (or by clear elsewhere): create it again
            await self._create_agent()
            await self._append(messages)

    async def pop_item(self) -> TResponseInputItem | None:
        try:
            popped = await self.client.pop_last_message(self.session_id, durability=self.durability)
        except NotFound:
            return None
        return _decode(popped.message) if popped.message is not None else None

    async def clear_session(self) -> None:
        try:
            await self.client.clear_messages(self.session_id, durability=self.durability)
        except NotFound:
            return

    # --- helpers -------------------------------------------------------------------------

    async def _create_agent(self) -> None:
        with contextlib.suppress(VersionConflict):  # it exists already
            await self.client.save_agent(
                self.session_id, "active", if_none_match=True, durability=self.durability
            )
        self._agent_exists = True

    async def _append(self, messages: list[dict[str, Any]]) -> None:
        """One request when it fits; else one all-or-nothing batch per 10,000 items."""
        if len(messages) <= APPEND_MESSAGES_MAX:
            await self.client.append_messages(self.session_id, messages, durability=self.durability)
            return
        per_batch = APPEND_MESSAGES_MAX * BATCH_OPERATIONS_MAX
        for start in range(0, len(messages), per_batch):
            chunk = messages[start : start + per_batch]
            operations = [
                {
                    "op": "messages",
                    "agent_id": self.session_id,
                    "messages": chunk[i : i + APPEND_MESSAGES_MAX],
                }
                for i in range(0, len(chunk), APPEND_MESSAGES_MAX)
            ]
            await self.client.batch(operations, durability=self.durability)

    async def _all_messages(self) -> list[Message]:
        out: list[Message] = []
        after = 0
        while True:
            page = await self.client.list_messages(
                self.session_id, after=after, limit=PAGE_LIMIT_MAX
            )
            out.extend(page)
            if len(page) < PAGE_LIMIT_MAX:
                return out
            after = page[-1].seq


def _encode(item: Any) -> dict[str, Any]:
    data = _plain(item)
    role = None
    if isinstance(data, Mapping):
        role = data.get("role") or data.get("type")
    return {
        "role": str(role or "item"),
        "content": json.dumps(data, separators=(",", ":"), ensure_ascii=False),
    }


def _decode(message: Message) -> Any:
    """An item back from its message; a message that is not JSON (written by something
    else) is skipped, as the SDK's SQLite session skips corrupt rows."""
    try:
        return json.loads(message.content)
    except (json.JSONDecodeError, TypeError):
        return None


def _plain(item: Any) -> Any:
    """Items are JSON-like dicts; a pydantic model (an output item passed as is) is dumped."""
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    return item
