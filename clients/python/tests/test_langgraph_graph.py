"""A real LangGraph ``StateGraph`` persisted in the sidecar, killed with ``kill -9``
between steps.

Each scenario runs twice: on LangGraph's ``InMemorySaver`` (the reference) and on
``AsyncAgentstateSaver`` with the sidecar killed and restarted between steps. Everything
observable (results, state, the whole state history, a fork) must be the same.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from langchain_core.messages import AIMessage, HumanMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.types import Command, StateSnapshot, interrupt
from typing_extensions import TypedDict

from _procs import Sidecar
from agentstate_client.langgraph import AsyncAgentstateSaver

Restart = Callable[[], Awaitable[None]]


async def no_restart() -> None:
    return None


def chat_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    """Two nodes, no LLM: ``greet`` answers, ``ask`` waits for a human (``interrupt``)."""

    def greet(state: MessagesState) -> dict[str, Any]:
        return {"messages": [AIMessage(content=f"hello #{len(state['messages'])}")]}

    def ask(state: MessagesState) -> dict[str, Any]:
        name = interrupt("what is your name?")
        return {"messages": [AIMessage(content=f"nice to meet you, {name}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("greet", greet)
    builder.add_node("ask", ask)
    builder.add_edge(START, "greet")
    builder.add_edge("greet", "ask")
    builder.add_edge("ask", END)
    return builder.compile(checkpointer=saver)


def view(snapshot: StateSnapshot) -> tuple[Any, ...]:
    """What a snapshot shows, without ids (which differ between savers)."""
    return (
        [m.content for m in snapshot.values.get("messages", [])],
        snapshot.next,
        snapshot.metadata.get("step") if snapshot.metadata else None,
        snapshot.metadata.get("source") if snapshot.metadata else None,
        [i.value for t in snapshot.tasks for i in t.interrupts],
    )


async def chat_scenario(saver: BaseCheckpointSaver[Any], restart: Restart) -> dict[str, Any]:
    graph = chat_graph(saver)
    thread = {"configurable": {"thread_id": f"chat-{uuid.uuid4().hex[:8]}"}}
    seen: dict[str, Any] = {}

    first = await graph.ainvoke({"messages": [HumanMessage("hi")]}, thread)
    seen["interrupted"] = [i.value for i in first["__interrupt__"]]
    await restart()
    seen["after_restart"] = view(await graph.aget_state(thread))
    done = await graph.ainvoke(Command(resume="Ada"), thread)
    seen["resumed"] = [m.content for m in done["messages"]]
    await restart()
    await graph.ainvoke({"messages": [HumanMessage("again")]}, thread)
    await restart()
    done = await graph.ainvoke(Command(resume="Bob"), thread)
    seen["second_turn"] = [m.content for m in done["messages"]]

    history = [s async for s in graph.aget_state_history(thread)]
    seen["history"] = [view(s) for s in history]
    seen["history_linked"] = all(
        newer.parent_config is not None
        and newer.parent_config["configurable"]["checkpoint_id"]
        == older.config["configurable"]["checkpoint_id"]
        for newer, older in itertools.pairwise(history)
    )

    # Time travel: run again from the checkpoint before "again" was answered (a fork).
    fork_point = next(s for s in history if s.next == ("greet",))
    forked = await graph.ainvoke(None, fork_point.config)
    seen["fork_interrupted"] = [i.value for i in forked["__interrupt__"]]
    await restart()
    done = await graph.ainvoke(Command(resume="Carol"), thread)
    seen["fork_result"] = [m.content for m in done["messages"]]
    after_fork = [s async for s in graph.aget_state_history(thread)]
    seen["history_after_fork"] = [view(s) for s in after_fork]
    fork_copy = next(s for s in after_fork if s.metadata and s.metadata.get("source") == "fork")
    seen["fork_parent_is_fork_point"] = (
        fork_copy.parent_config is not None
        and fork_copy.parent_config["configurable"]["checkpoint_id"]
        == fork_point.config["configurable"]["checkpoint_id"]
    )
    seen["thread"] = thread
    return seen


async def test_graph_resumes_across_kill9_and_time_travels(sidecar: Sidecar) -> None:
    reference = await chat_scenario(InMemorySaver(), no_restart)

    async def restart() -> None:
        sidecar.restart()

    async with AsyncAgentstateSaver(sidecar.url) as saver:
        ours = await chat_scenario(saver, restart)

    # The resumed conversation has the full history from before the kill.
    assert ours["after_restart"] == (
        ["hi", "hello #1"],
        ("ask",),
        1,
        "loop",
        ["what is your name?"],
    )
    assert ours["second_turn"] == [
        "hi",
        "hello #1",
        "nice to meet you, Ada",
        "again",
        "hello #4",
        "nice to meet you, Bob",
    ]
    assert len(ours["history"]) == 8  # input, greet, ask, done; twice
    assert [v[2] for v in ours["history"]] == [6, 5, 4, 3, 2, 1, 0, -1]  # newest first
    assert ours["history_linked"]
    assert ours["fork_parent_is_fork_point"]
    assert ours["fork_result"][-1] == "nice to meet you, Carol"
    # Everything else as LangGraph's reference saver has it.
    thread = ours.pop("thread")
    reference.pop("thread")
    assert ours == reference

    # A fresh saver (nothing in memory) after one more kill -9 sees the same thread.
    sidecar.restart()
    async with AsyncAgentstateSaver(sidecar.url) as fresh:
        graph = chat_graph(fresh)
        state = await graph.aget_state(thread)
        assert view(state)[0] == ours["fork_result"]
        assert len([s async for s in graph.aget_state_history(thread)]) == len(
            ours["history_after_fork"]
        )


def concat(state: list[int] | None, writes: list[list[int]]) -> list[int]:
    out = list(state or [])
    for w in writes:
        out.extend(w)
    return out


class Counter(TypedDict):
    items: Annotated[list[int], DeltaChannel(concat, list, snapshot_frequency=3)]
    n: int


def delta_graph(saver: BaseCheckpointSaver[Any]) -> Any:
    """A ``DeltaChannel`` stores writes, not values: reading it back needs the sidecar's
    delta history (writes along the parent chain since the last snapshot)."""

    def add(state: Counter) -> dict[str, Any]:
        return {"items": [state["n"]], "n": state["n"] + 1}

    builder = StateGraph(Counter)
    builder.add_node("add", add)
    builder.add_edge(START, "add")
    builder.add_conditional_edges("add", lambda s: END if s["n"] % 4 == 0 else "add")
    return builder.compile(checkpointer=saver)


async def delta_scenario(saver: BaseCheckpointSaver[Any], restart: Restart) -> list[Any]:
    graph = delta_graph(saver)
    thread = {"configurable": {"thread_id": f"delta-{uuid.uuid4().hex[:8]}"}}
    results: list[Any] = []
    n = 1
    for _ in range(3):
        out = await graph.ainvoke({"n": n}, thread)
        results.append(out)
        n = out["n"] + 1
        await restart()
    results.append([s.values async for s in graph.aget_state_history(thread)])
    return results


async def test_delta_channel_state_is_rebuilt_by_the_sidecar(sidecar: Sidecar) -> None:
    reference = await delta_scenario(InMemorySaver(), no_restart)

    async def restart() -> None:
        sidecar.restart()

    async with AsyncAgentstateSaver(sidecar.url) as saver:
        calls = 0
        original = saver.client.delta_history

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal calls
            calls += 1
            return await original(*args, **kwargs)

        saver.client.delta_history = counted  # type: ignore[method-assign]
        ours = await delta_scenario(saver, restart)

    assert ours[2]["items"] == [1, 2, 3, 5, 6, 7, 9, 10, 11]
    assert calls > 0, "the delta history must come from the sidecar"
    assert ours == reference
