"""The OpenAI Agents SDK session adapter on the real sidecar, including ``Runner.run``
with a fake model (no network) and a ``kill -9`` between turns."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import Agent, Runner, set_tracing_disabled
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.memory import Session, SessionABC, SessionSettings
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from _procs import Sidecar
from agentstate_client import Client
from agentstate_client.openai_agents import AgentstateSession

set_tracing_disabled(True)  # tracing would try to export to the network


class FakeModel(Model):
    """Answers every call with one fixed assistant message, and records what it got."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.inputs: list[Any] = []

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: Any,
        tools: Any,
        output_schema: Any,
        handoffs: Any,
        tracing: Any,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: Any,
    ) -> ModelResponse:
        self.inputs.append(input)
        message = ResponseOutputMessage(
            id=f"msg_{len(self.inputs)}",
            type="message",
            role="assistant",
            status="completed",
            content=[
                ResponseOutputText(text=self.reply, type="output_text", annotations=[], logprobs=[])
            ],
        )
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        raise NotImplementedError("not used by these tests")


def session_id() -> str:
    return f"sess-{uuid.uuid4().hex[:10]}"


def test_implements_the_sdk_session_protocol() -> None:
    session = AgentstateSession(session_id(), url="http://127.0.0.1:9")
    assert isinstance(session, SessionABC)
    assert isinstance(session, Session)  # runtime_checkable Protocol
    assert session.session_settings is not None


async def test_add_get_pop_clear(sidecar: Sidecar) -> None:
    sid = session_id()
    async with AgentstateSession(sid, url=sidecar.url) as session:
        assert await session.get_items() == []
        assert await session.pop_item() is None
        await session.clear_session()  # nothing there: fine

        items: list[Any] = [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"role": "user", "content": "ünïcödé ✓"},
        ]
        await session.add_items(items[:2])
        await session.add_items(items[2:])
        await session.add_items([])
        assert await session.get_items() == items
        assert await session.get_items(limit=2) == items[2:]
        assert await session.get_items(limit=0) == []
        assert await session.get_items(limit=50) == items

        assert await session.pop_item() == items[3]
        assert await session.get_items() == items[:3]

        # Stored as the agent's messages: role or type, compact JSON.
        with Client(sidecar.url) as c:
            stored = c.list_messages(sid)
        assert [m.role for m in stored] == ["user", "assistant", "function_call"]
        assert json.loads(stored[2].content) == items[2]
        assert " " not in stored[0].content

        await session.clear_session()
        assert await session.get_items() == []
        await session.add_items([{"role": "user", "content": "after clear"}])
        assert await session.get_items() == [{"role": "user", "content": "after clear"}]


async def test_many_items_page_and_batch(sidecar: Sidecar) -> None:
    """More items than one append takes (100) go in one batch; more than a page (1,000)
    are read back in pages."""
    settings = SessionSettings(limit=3)
    async with AgentstateSession(
        session_id(), url=sidecar.url, durability="memory", session_settings=settings
    ) as session:
        items: list[Any] = [{"role": "user", "content": f"m{i}"} for i in range(1205)]
        await session.add_items(items)
        assert await session.get_items() == items[-3:]  # the settings' limit
        assert await session.get_items(limit=1100) == items[-1100:]
        everything = await session.get_items(limit=-1)
        assert everything == items


async def test_history_survives_kill9(sidecar: Sidecar) -> None:
    sid = session_id()
    session = AgentstateSession(sid, url=sidecar.url)
    await session.add_items([{"role": "user", "content": "remember me"}])
    sidecar.restart()  # kill -9, same data dir
    assert await session.get_items() == [{"role": "user", "content": "remember me"}]
    await session.add_items([{"role": "assistant", "content": "I do"}])
    await session.aclose()

    sidecar.restart()
    async with AgentstateSession(sid, url=sidecar.url) as fresh:
        assert [i["content"] for i in await fresh.get_items()] == ["remember me", "I do"]


async def test_runner_persists_input_and_output(sidecar: Sidecar) -> None:
    sid = session_id()
    model = FakeModel("hello from the fake model")
    agent = Agent(name="assistant", instructions="Be brief.", model=model)

    async with AgentstateSession(sid, url=sidecar.url) as session:
        result = await Runner.run(agent, "hi", session=session)
        assert result.final_output == "hello from the fake model"

    sidecar.restart()  # the next turn starts from what the sidecar kept

    async with AgentstateSession(sid, url=sidecar.url) as session:
        await Runner.run(agent, "and again", session=session)
        items = await session.get_items()

    assert [i.get("role") for i in items] == ["user", "assistant", "user", "assistant"]
    assert items[0]["content"] == "hi"
    assert items[1]["content"][0]["text"] == "hello from the fake model"
    # The second call saw the first turn, read back from the sidecar.
    second_input = model.inputs[1]
    assert next(i.get("content") for i in second_input) == "hi"
    assert len(second_input) == 3

    with Client(sidecar.url) as c:
        stored = c.list_messages(sid)
    assert [m.role for m in stored] == ["user", "assistant", "user", "assistant"]
    assert json.loads(stored[2].content) == {"content": "and again", "role": "user"}


@pytest.mark.parametrize("durability", ["remote"])
async def test_session_writes_take_a_durability(sidecar: Sidecar, durability: str) -> None:
    async with AgentstateSession(session_id(), url=sidecar.url, durability=durability) as s:
        await s.add_items([{"role": "user", "content": "durable"}])
        assert await s.pop_item() == {"role": "user", "content": "durable"}
