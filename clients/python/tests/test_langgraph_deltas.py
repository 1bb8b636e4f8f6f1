"""Delta channels through real LangGraph graphs: the saver sends a grown ``messages`` list
as its new items only, and anything else whole, and every value read back is the one
LangGraph's ``InMemorySaver`` holds for the same operations.

The decision is checked case by case (what each put sent), then on random sequences of
LangGraph operations (appends, ``RemoveMessage``, replacement by id, reordering, an
earlier message changed in place, forks from older checkpoints, a saver restarted, a
second saver writing the same thread, a ``kill -9`` of the sidecar) compared value for
value against ``InMemorySaver`` by hypothesis.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, RemoveMessage
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import REMOVE_ALL_MESSAGES, add_messages
from typing_extensions import TypedDict

from _procs import Sidecar
from agentstate_client.langgraph import AgentstateSaver, _delta


class State(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    cmd: str


def reply(state: State) -> dict[str, Any]:
    messages = state.get("messages", [])
    if state.get("cmd") == "mutate" and messages:
        # In place, on an earlier message: the anti-pattern the saver must still see.
        messages[0].content = f"{messages[0].content}!"
    return {"messages": [AIMessage(f"re {len(messages)}")], "cmd": ""}


def graph(saver: BaseCheckpointSaver[Any]) -> Any:
    """Run with ``durability="sync"``: each step's checkpoint is stored before the next
    step runs, so an in-place change cannot race the put of the step before."""
    builder = StateGraph(State)
    builder.add_node("reply", reply)
    builder.add_edge(START, "reply")
    builder.add_edge("reply", END)
    return builder.compile(checkpointer=saver)


class Recorder:
    """Records, per put, whether its ``messages`` blob went as a delta."""

    def __init__(self, saver: AgentstateSaver) -> None:
        self.kinds: list[str] = []
        real = saver.client.put_checkpoint

        def put(*args: Any, **kwargs: Any) -> Any:
            for b in kwargs["blobs"]:
                if b.channel == "messages":
                    self.kinds.append("delta" if b.extends is not None else "whole")
            return real(*args, **kwargs)

        saver.client.put_checkpoint = put  # type: ignore[method-assign]

    def since(self, mark: int) -> list[str]:
        return self.kinds[mark:]


def view(g: Any, config: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The whole history of a thread as values (ids differ between savers)."""
    return [
        (
            [(m.type, m.content) for m in s.values.get("messages", [])],
            s.values.get("cmd"),
            s.next,
            s.metadata.get("step") if s.metadata else None,
            s.metadata.get("source") if s.metadata else None,
        )
        for s in g.get_state_history(config)
    ]


def thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": f"d-{uuid.uuid4().hex[:10]}"}}


def test_each_case_goes_as_a_delta_or_whole(sidecar: Sidecar) -> None:
    saver = AgentstateSaver(sidecar.url)
    rec = Recorder(saver)
    g, ref = graph(saver), graph(InMemorySaver())
    cfg, rcfg = thread(), thread()

    def both(op: Any) -> list[str]:
        mark = len(rec.kinds)
        op(g, cfg)
        op(ref, rcfg)
        assert view(g, cfg) == view(ref, rcfg)
        return rec.since(mark)

    def say(text: str, cmd: str = "") -> Any:
        return lambda gr, c: gr.invoke(
            {"messages": [HumanMessage(text)], "cmd": cmd}, c, durability="sync"
        )

    def update(make: Any) -> Any:
        return lambda gr, c: gr.update_state(c, {"messages": make(gr.get_state(c).values)})

    # The first put with messages is whole; then appends are deltas (input, reply). A
    # long first message keeps the deltas below the size that starts a new whole value.
    assert both(say("a" * 20_000)) == ["whole", "delta"]
    assert both(say("b")) == ["delta", "delta"]
    # RemoveMessage, replacement by id, reordering: whole.
    assert both(update(lambda v: [RemoveMessage(id=v["messages"][1].id)])) == ["whole"]
    assert both(update(lambda v: [AIMessage("new", id=v["messages"][0].id)])) == ["whole"]
    reordered = update(lambda v: [RemoveMessage(id=REMOVE_ALL_MESSAGES), *reversed(v["messages"])])
    assert both(reordered) == ["whole"]
    assert both(say("c")) == ["delta", "delta"]
    # An earlier message changed in place by a node: the reply's put is whole.
    assert both(say("d", cmd="mutate")) == ["delta", "whole"]
    # A fork from an older checkpoint: whole; then deltas on the fork.
    old = list(g.get_state_history(cfg))[4]
    rold = list(ref.get_state_history(rcfg))[4]
    mark = len(rec.kinds)
    g.invoke({"messages": [HumanMessage("fork")]}, old.config, durability="sync")
    ref.invoke({"messages": [HumanMessage("fork")]}, rold.config, durability="sync")
    assert view(g, cfg) == view(ref, rcfg)
    assert rec.since(mark) == ["whole", "delta"]
    assert both(say("e")) == ["delta", "delta"]

    # A second saver writes the thread: both it (no memory) and the first (its parent
    # is not what it stored last) send whole values, then deltas again.
    other = AgentstateSaver(sidecar.url)
    orec = Recorder(other)
    graph(other).invoke({"messages": [HumanMessage("from other")]}, cfg, durability="sync")
    ref.invoke({"messages": [HumanMessage("from other")]}, rcfg, durability="sync")
    assert orec.kinds == ["whole", "delta"]
    assert both(say("f")) == ["whole", "delta"]

    # The sidecar killed mid-thread: what was acknowledged holds, deltas go on.
    sidecar.kill9()
    sidecar.restart()
    assert both(say("g")) == ["delta", "delta"]

    # A restarted saver remembers nothing: whole first.
    fresh = AgentstateSaver(sidecar.url)
    frec = Recorder(fresh)
    graph(fresh).invoke({"messages": [HumanMessage("h")]}, cfg, durability="sync")
    ref.invoke({"messages": [HumanMessage("h")]}, rcfg, durability="sync")
    assert view(g, cfg) == view(ref, rcfg)
    assert frec.kinds == ["whole", "delta"]


def test_a_refused_delta_is_sent_whole(sidecar: Sidecar) -> None:
    """The thread deleted under the saver: its base is gone, the sidecar refuses the
    delta (409) and the saver sends the value whole."""
    saver = AgentstateSaver(sidecar.url)
    rec = Recorder(saver)
    config = thread()
    items: list[AnyMessage] = [HumanMessage("x" * 1000, id="0")]
    version = None
    for n in range(1, 4):
        items.append(HumanMessage(str(n), id=str(n)))
        if n == 3:
            AgentstateSaver(sidecar.url).delete_thread(config["configurable"]["thread_id"])
        ckpt = empty_checkpoint()
        version = saver.get_next_version(version, None)
        ckpt["channel_values"] = {"messages": list(items)}
        ckpt["channel_versions"] = {"messages": version}
        config = saver.put(config, ckpt, {"step": n}, {"messages": version})
    assert rec.kinds == ["whole", "delta", "delta", "whole"]
    got = saver.get_tuple(config)
    assert got is not None
    contents = [m.content for m in got.checkpoint["channel_values"]["messages"]]
    assert contents == ["x" * 1000, "1", "2", "3"]


def test_deltas_off_sends_whole_values(sidecar: Sidecar) -> None:
    saver = AgentstateSaver(sidecar.url, deltas=False)
    rec = Recorder(saver)
    g, cfg = graph(saver), thread()
    for text in "abc":
        g.invoke({"messages": [HumanMessage(text)]}, cfg, durability="sync")
    assert set(rec.kinds) == {"whole"}
    assert len(g.get_state(cfg).values["messages"]) == 6


OPS = st.lists(
    st.sampled_from(
        [
            "say",
            "say",
            "say",
            "mutate",
            "remove",
            "replace",
            "reorder",
            "fork",
            "restart",
            "other",
            "kill",
        ]
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS, picks=st.lists(st.integers(min_value=0, max_value=1000), min_size=12, max_size=12))
def test_random_operations_match_in_memory_saver(
    sidecar: Sidecar, ops: list[str], picks: list[int]
) -> None:
    saver = AgentstateSaver(sidecar.url)
    g, ref = graph(saver), graph(InMemorySaver())
    cfg, rcfg = thread(), thread()
    for i, (op, pick) in enumerate(zip(ops, picks, strict=False)):
        msgs = g.get_state(cfg).values.get("messages", [])
        rmsgs = ref.get_state(rcfg).values.get("messages", [])
        if op in ("say", "mutate") or not msgs:
            cmd = "mutate" if op == "mutate" else ""
            for gr, c in ((g, cfg), (ref, rcfg)):
                gr.invoke({"messages": [HumanMessage(f"m{i}")], "cmd": cmd}, c, durability="sync")
        elif op == "remove":
            k = pick % len(msgs)
            g.update_state(cfg, {"messages": [RemoveMessage(id=msgs[k].id)]})
            ref.update_state(rcfg, {"messages": [RemoveMessage(id=rmsgs[k].id)]})
        elif op == "replace":
            k = pick % len(msgs)
            g.update_state(cfg, {"messages": [AIMessage(f"r{i}", id=msgs[k].id)]})
            ref.update_state(rcfg, {"messages": [AIMessage(f"r{i}", id=rmsgs[k].id)]})
        elif op == "reorder":
            for gr, c, ms in ((g, cfg, msgs), (ref, rcfg, rmsgs)):
                gr.update_state(c, {"messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES), *ms[::-1]]})
        elif op == "fork":
            history = list(g.get_state_history(cfg))
            rhistory = list(ref.get_state_history(rcfg))
            k = pick % len(history)
            g.invoke({"messages": [HumanMessage(f"f{i}")]}, history[k].config, durability="sync")
            ref.invoke({"messages": [HumanMessage(f"f{i}")]}, rhistory[k].config, durability="sync")
        elif op == "restart":
            saver = AgentstateSaver(sidecar.url)
            g = graph(saver)
        elif op == "other":
            graph(AgentstateSaver(sidecar.url)).invoke(
                {"messages": [HumanMessage(f"o{i}")]}, cfg, durability="sync"
            )
            ref.invoke({"messages": [HumanMessage(f"o{i}")]}, rcfg, durability="sync")
        elif op == "kill":
            sidecar.kill9()
            sidecar.restart()
        assert view(g, cfg) == view(ref, rcfg), f"after {ops[: i + 1]}"


def test_one_saver_shared_by_worker_threads(
    sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocking graphs on many threads through one saver, with the table of remembered
    threads small enough that they keep evicting each other: every history is right."""
    monkeypatch.setattr(_delta, "THREADS_MAX", 3)
    saver = AgentstateSaver(sidecar.url)
    g = graph(saver)

    def run(i: int) -> list[str]:
        cfg = thread()
        for k in range(6):
            g.invoke({"messages": [HumanMessage(f"{i}-{k}")]}, cfg, durability="sync")
        if i % 2:
            saver.delete_thread(cfg["configurable"]["thread_id"])
            g.invoke({"messages": [HumanMessage(f"{i}-again")]}, cfg, durability="sync")
        return [m.content for m in g.get_state(cfg).values["messages"]]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(16)))
    for i, got in enumerate(results):
        if i % 2:
            assert got == [f"{i}-again", "re 1"]
        else:
            assert got == [x for k in range(6) for x in (f"{i}-{k}", f"re {2 * k + 1}")]
