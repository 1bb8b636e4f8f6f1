"""What both savers share: construction arguments, channel versions, durability."""

from __future__ import annotations

import random

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.serde.base import SerializerProtocol

from agentstate_client._config import check_durability
from agentstate_client.langgraph._delta import DeltaMemory


class SaverBase(BaseCheckpointSaver[str]):
    """Base of :class:`AgentstateSaver` and :class:`AsyncAgentstateSaver`."""

    def __init__(
        self,
        *,
        durability: str | None = None,
        serde: SerializerProtocol | None = None,
        deltas: bool = True,
    ) -> None:
        super().__init__(serde=serde)
        check_durability(durability)
        #: Durability of every write this saver makes (None: the client's default).
        self.durability = durability
        #: What this saver stored last per thread, to send list channels as deltas.
        self._deltas = DeltaMemory(deltas)

    def get_next_version(self, current: str | int | float | None, channel: None) -> str:
        """Versions as InMemorySaver makes them: a zero-padded counter, then a random
        fraction, so they sort as strings and a fork's versions differ from the
        original's."""
        if current is None:
            current_v = 0
        elif isinstance(current, (int, float)):
            current_v = int(current)
        else:
            current_v = int(str(current).split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"
