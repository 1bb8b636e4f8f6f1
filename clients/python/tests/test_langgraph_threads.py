"""The savers' own behaviour beyond the conformance suite: paging a listing across
pages (and across repeated ids), the delta history against LangGraph's reference walk,
sync calls on an async saver, and channel versions."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance.test_utils import (
    generate_checkpoint,
    generate_config,
    generate_metadata,
)

from _procs import Sidecar
from agentstate_client import Client
from agentstate_client.langgraph import AgentstateSaver, AsyncAgentstateSaver


def test_listing_pages_through_repeated_ids(make_sidecar: object) -> None:
    """1,200 checkpoints in three threads sharing ids (copies): a listing over every
    thread pages 1,000 at a time, and the page boundary falls inside a run of equal ids."""
    sidecar: Sidecar = make_sidecar("sqlite")  # type: ignore[operator]
    suite = uuid.uuid4().hex
    source = f"src-{suite[:8]}"
    with AgentstateSaver(client=Client(sidecar.url), durability="memory") as saver:
        parent = None
        for step in range(400):
            config = generate_config(source)
            if parent:
                config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
            parent = saver.put(
                config, generate_checkpoint(), generate_metadata(step=step, suite=suite), {}
            )
        saver.copy_thread(source, f"cp1-{suite[:8]}")
        saver.copy_thread(source, f"cp2-{suite[:8]}")

        listed = list(saver.list(None, filter={"suite": suite}))
        keys = [(t.config["configurable"]["thread_id"], t.checkpoint["id"]) for t in listed]
        assert len(keys) == 1200
        assert len(set(keys)) == 1200
        ids = [k[1] for k in keys]
        assert ids == sorted(ids, reverse=True)

        limited = list(saver.list(None, filter={"suite": suite}, limit=1001))
        limited_keys = {
            (t.config["configurable"]["thread_id"], t.checkpoint["id"]) for t in limited
        }
        assert len(limited) == len(limited_keys) == 1001

        one_thread = list(saver.list(generate_config(source)))
        assert len(one_thread) == 400
        assert [t.metadata["step"] for t in one_thread[:3]] == [399, 398, 397]
        before = one_thread[10].config
        older = list(saver.list(generate_config(source), before=before, limit=5))
        assert [t.metadata["step"] for t in older] == [388, 387, 386, 385, 384]
        saver.client.close()


async def test_delta_history_matches_the_reference_walk(sidecar: Sidecar) -> None:
    """The sidecar's delta history equals LangGraph's default implementation, which walks
    the parent chain with get_tuple."""
    async with AsyncAgentstateSaver(sidecar.url) as saver:
        tid = f"dh-{uuid.uuid4().hex[:8]}"
        parent = None
        configs = []
        for step in range(6):
            config = generate_config(tid)
            if parent:
                config["configurable"]["checkpoint_id"] = parent["configurable"]["checkpoint_id"]
            # "a" has a stored value at steps 0 and 3 only; "b" never has one.
            values = {"a": f"seed{step}"} if step in (0, 3) else {}
            versions = {"a": saver.get_next_version(None, None)} if values else {}
            checkpoint = generate_checkpoint(channel_values=values, channel_versions=versions)
            parent = await saver.aput(config, checkpoint, generate_metadata(step=step), versions)
            configs.append(parent)
            await saver.aput_writes(
                parent, [("a", f"a{step}.0"), ("b", f"b{step}"), ("a", f"a{step}.1")], "task-1"
            )
            await saver.aput_writes(parent, [("a", f"z{step}")], "task-0", task_path="~0")

        for target in [*configs, generate_config(tid), generate_config(tid, checkpoint_id="x")]:
            ours = await saver.aget_delta_channel_history(config=target, channels=["a", "b", "c"])
            reference = await BaseCheckpointSaver.aget_delta_channel_history(
                saver, config=target, channels=["a", "b", "c"]
            )
            assert ours == reference, target
        latest = await saver.aget_delta_channel_history(config=configs[-1], channels=["a"])
        assert latest["a"]["seed"] == "seed3"
        assert [w[2] for w in latest["a"]["writes"]] == [
            "a3.0",
            "a3.1",
            "z3",
            "a4.0",
            "a4.1",
            "z4",
        ], "oldest first; within a checkpoint by (task_path, task_id, idx)"
        assert await saver.aget_delta_channel_history(config=configs[0], channels=[]) == {}


async def test_thread_ids_with_colons(sidecar: Sidecar) -> None:
    async with AsyncAgentstateSaver(sidecar.url) as saver:
        tid = f"user:42:{uuid.uuid4().hex[:6]}"
        stored = await saver.aput(
            generate_config(tid), generate_checkpoint(), generate_metadata(), {}
        )
        got = await saver.aget_tuple(stored)
        assert got is not None
        assert got.config["configurable"]["thread_id"] == tid
        await saver.acopy_thread(tid, tid + ".copy")
        assert len([t async for t in saver.alist(generate_config(tid + ".copy"))]) == 1
        await saver.adelete_thread(tid)
        assert await saver.aget_tuple(generate_config(tid)) is None


async def test_sync_calls_on_the_async_saver(sidecar: Sidecar) -> None:
    async with AsyncAgentstateSaver(sidecar.url) as saver:
        config = await saver.aput(
            generate_config(f"s-{uuid.uuid4().hex[:8]}"),
            generate_checkpoint(),
            generate_metadata(),
            {},
        )
        with pytest.raises(asyncio.InvalidStateError):
            saver.get_tuple(config)  # on the loop's thread: refused, never a deadlock
        got = await asyncio.to_thread(saver.get_tuple, config)
        assert got is not None
        assert got.config == config
        listed = await asyncio.to_thread(lambda: list(saver.list(config)))
        assert len(listed) == 1

        results: list[Any] = []
        worker = threading.Thread(target=lambda: results.append(saver.get_tuple(config)))
        worker.start()
        worker.join()  # blocks the loop meanwhile: the sync path must not need it
        assert results[0] is not None
        assert results[0].config == config


def test_versions_grow_like_in_memory_saver() -> None:
    saver = AgentstateSaver("http://127.0.0.1:9")  # no I/O in this test
    v1 = saver.get_next_version(None, None)
    v2 = saver.get_next_version(v1, None)
    assert v1.startswith("0" * 31 + "1.")
    assert v2 > v1
    assert saver.get_next_version(7, None).startswith("0" * 31 + "8.")
    saver.close()
