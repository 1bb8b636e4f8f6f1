"""The listings and reads the web inspector uses, through both clients against the real
sidecar on both backends: ``list_agents`` (and ``iter_agents``) with every filter,
``list_threads``, ``list_transfers``, an agent's ``timeline``, a thread's
``thread_history`` and ``thread_view``; paged reads equal whole ones. Also the fields
the sidecar added beside them: a transition's ``reason``, the status's ``cache_bytes``
and ``leases_held``, and the ``ui_writes_disabled`` refusal."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timezone

import httpx
import pytest

from _procs import REPO, Sidecar
from agentstate_client import (
    AsyncClient,
    Blob,
    Client,
    Forbidden,
    Malformed,
    NotFound,
    PendingWriteValue,
    Status,
    Typed,
    ValidationFailed,
)
from agentstate_client.errors import error_from_response

AGENT_TYPES = REPO / "protocol" / "examples" / "agent-types.toml"
#: Needs percent-encoding in a query: space, & = + / and a non-ASCII letter.
AWKWARD = "wait & see=1+1/é"


@pytest.fixture
def typed(backend: str, make_sidecar: object) -> Sidecar:
    """A sidecar on ``backend`` knowing the example agent types (``greeter``...)."""
    return make_sidecar(backend, "--config", str(AGENT_TYPES))  # type: ignore[operator]


class CountingTransport(httpx.HTTPTransport):
    """Records the requests that reach the wire."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


# --- agents ---------------------------------------------------------------------------------


async def test_list_agents_pages_through_every_agent_in_order(typed: Sidecar) -> None:
    ids = [f"pg-{i:02d}-{random.randrange(16**6):06x}" for i in range(30)]
    shuffled = random.sample(ids, len(ids))
    async with AsyncClient(typed.url) as ac:
        for agent_id in shuffled:
            await ac.save_agent(agent_id, "idle")
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await ac.list_agents(limit=7, cursor=cursor)
            pages += 1
            assert len(page.agents) <= 7
            seen += [a.agent_id for a in page.agents]
            if page.next_cursor is None:
                break
            assert page.next_cursor != cursor, "a cursor must move on"
            cursor = page.next_cursor
            assert pages < 40, "paging does not end"
    assert seen == sorted(ids)
    assert pages >= 5  # 30 agents, 7 a page
    with Client(typed.url) as c:
        whole = c.list_agents(limit=1000)
        assert whole.next_cursor is None
        assert [a.agent_id for a in whole.agents] == sorted(ids)
        first = whole.agents[0]
        state = c.get_agent(first.agent_id)
        assert (first.state_name, first.version, first.pending, first.agent_type) == (
            "idle",
            1,
            False,
            None,
        )
        assert (first.created_at, first.updated_at) == (state.created_at, state.updated_at)
        assert first.updated_at.tzinfo is not None
        for bad in (0, 1001):
            with pytest.raises(ValueError, match="limit"):
                c.list_agents(limit=bad)


def test_list_agents_filters(typed: Sidecar) -> None:
    transport = CountingTransport()
    with Client(typed.url, transport=transport) as c:
        c.save_agent("f-a-1", "idle")
        c.save_agent("f-a-2", "idle")
        c.save_agent("f-b-1", AWKWARD)
        c.save_agent("f-g-1", "idle", agent_type="greeter")
        c.transition("f-g-1", "greeting", "user_message", state_data={"user_name": "ada"})
        c.save_agent("f-g-2", "idle", agent_type="greeter")
        with pytest.raises(ValidationFailed):
            c.transition("f-g-2", "done", "transferred")  # refused, and logged as refused
        c.save_agent("f-p-1", "idle")
        c.begin_transition("f-p-1", "busy", "work")
        c.save_agent("x-1", "idle")

        def ids(**filters: object) -> list[str]:
            page = c.list_agents(**filters)  # type: ignore[arg-type]
            assert page.next_cursor is None
            return [a.agent_id for a in page.agents]

        everything = ["f-a-1", "f-a-2", "f-b-1", "f-g-1", "f-g-2", "f-p-1", "x-1"]
        assert ids() == everything
        assert ids(prefix="f-a-") == ["f-a-1", "f-a-2"]
        assert ids(prefix="f-") == everything[:-1]
        assert ids(prefix="") == everything, "an empty filter is no filter"
        assert ids(state=AWKWARD) == ["f-b-1"]
        assert ids(state="greeting") == ["f-g-1"]
        assert ids(state="idle", prefix="f-") == ["f-a-1", "f-a-2", "f-g-2", "f-p-1"]
        assert ids(state="nowhere") == []
        greeters = c.list_agents(agent_type="greeter").agents
        assert [(a.agent_id, a.agent_type, a.state_name) for a in greeters] == [
            ("f-g-1", "greeter", "greeting"),
            ("f-g-2", "greeter", "idle"),
        ]
        assert ids(agent_type="greeter", state="idle") == ["f-g-2"]
        assert ids(failed=True) == ["f-g-2"]
        assert ids(failed=True, prefix="f-a-") == []
        pending = [a for a in c.list_agents(prefix="f-").agents if a.pending]
        assert [(a.agent_id, a.version) for a in pending] == [("f-p-1", 2)]

        boundary = datetime.now(timezone.utc)
        time.sleep(0.05)  # the sidecar's times are in milliseconds
        c.save_agent("f-a-2", "idle", state_data={"touched": True})
        assert ids(updated_after=boundary) == ["f-a-2"]
        naive = boundary.replace(tzinfo=None)
        assert ids(updated_after=naive) == ["f-a-2"], "a naive datetime is UTC"
        assert ids(updated_after=boundary, prefix="x-") == []
        [touched] = c.list_agents(updated_after=boundary).agents
        assert touched.version == 2
        assert touched.updated_at > boundary >= touched.created_at

    sent = [dict(r.url.params) for r in transport.requests if r.url.path == "/v1/agents"]
    assert sent[0] == {"limit": "100"}, "unset filters and the first cursor are not sent"
    assert {"type": "greeter", "state": "idle", "limit": "100"} in sent
    assert {"state": AWKWARD, "limit": "100"} in sent
    assert {"failed": "true", "limit": "100"} in sent


async def test_iter_agents_follows_the_cursor(typed: Sidecar) -> None:
    all_ids = [f"it-{i:02d}" for i in range(10)]
    greeters = all_ids[1::4]
    with Client(typed.url) as c:
        for agent_id in all_ids:
            c.save_agent(agent_id, "idle", agent_type="greeter" if agent_id in greeters else None)
        c.save_agent("other", "idle")
    async with AsyncClient(typed.url) as ac:
        got = [a.agent_id async for a in ac.iter_agents(page_size=3)]
        assert got == [*all_ids, "other"]
        typed_ids = [a.agent_id async for a in ac.iter_agents(agent_type="greeter", page_size=1)]
        assert typed_ids == greeters
        assert [a async for a in ac.iter_agents(state="nowhere")] == []
    transport = CountingTransport()
    with Client(typed.url, transport=transport) as c:
        summaries = list(c.iter_agents(prefix="it-", page_size=4))
        assert [a.agent_id for a in summaries] == all_ids
        assert {a.agent_type for a in summaries} == {"greeter", None}
        assert summaries == c.list_agents(prefix="it-").agents
    cursors = [r.url.params.get("cursor") for r in transport.requests[:3]]
    assert cursors[0] is None
    assert all(cursors[1:]), "each page after the first asks from the cursor before"
    assert all(r.url.params["limit"] == "4" for r in transport.requests[:3])


# --- timeline -------------------------------------------------------------------------------


async def test_timeline_interleaves_everything_in_time_order(typed: Sidecar) -> None:
    g, other = "tl-greeter", "tl-other"
    # The sidecar's times are in milliseconds (ties go transition, message, checkpoint,
    # transfer): a pause between steps keeps their order the order they happened in.
    pause = 0.01
    async with AsyncClient(typed.url) as ac:
        await ac.save_agent(g, "idle", agent_type="greeter")
        await ac.transition(g, "greeting", "user_message", state_data={"user_name": "ada"})
        await asyncio.sleep(pause)
        await ac.append_messages(
            g, [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
        )
        await asyncio.sleep(pause)
        checkpoint = await ac.create_checkpoint(g, label="after-hello")
        await asyncio.sleep(pause)
        with pytest.raises(ValidationFailed):
            await ac.transition(g, "done", "transferred")
        await asyncio.sleep(pause)
        await ac.append_messages(g, [{"role": "user", "content": "bye"}])
        await asyncio.sleep(pause)
        await ac.save_agent(other, "idle")
        transfer = await ac.create_transfer("tl-tr", g, other, "handoff", messages_max=2)

        whole = await ac.timeline(g)
        assert whole.next_cursor is None
        entries = whole.entries
        assert [e.kind for e in entries] == [
            "transition",
            "message",
            "message",
            "checkpoint",
            "transition",
            "message",
            "transition",  # the transfer moves the source: one logged transition
            "transfer",
        ]
        for e in entries:  # exactly the field the kind names is set
            fields = {"transition", "message", "checkpoint", "transfer"}
            assert {f for f in fields if getattr(e, f) is not None} == {e.kind}
        assert [e.at for e in entries] == sorted(e.at for e in entries)

        made, refused, handoff = (entries[i].transition for i in (0, 4, 6))
        assert made is not None
        assert refused is not None
        assert handoff is not None
        assert (made.trigger, made.to_state, made.success, made.reason) == (
            "user_message",
            "greeting",
            True,
            None,
        )
        assert (refused.trigger, refused.to_state, refused.success) == (
            "transferred",
            "done",
            False,
        )
        assert refused.error is not None
        assert "transition_not_allowed" in refused.error
        assert (handoff.trigger, handoff.to_state) == ("handoff", "transferring")
        assert [made.seq, refused.seq, handoff.seq] == [1, 2, 3]
        contents = [e.message.content for e in entries if e.message is not None]
        assert contents == ["hi", "hello", "bye"]
        cp = entries[3].checkpoint
        assert cp is not None
        assert (cp.checkpoint_id, cp.label, cp.state.state_name, cp.message_seq) == (
            checkpoint.checkpoint_id,
            "after-hello",
            "greeting",
            2,
        )
        assert entries[3].at == cp.created_at
        assert entries[7].transfer == transfer
        assert entries[7].at == transfer.created_at

        paged = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await ac.timeline(g, cursor=cursor, limit=3)
            pages += 1
            assert len(page.entries) <= 3
            paged += page.entries
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
            assert pages < 20, "paging does not end"
        assert paged == entries
        assert pages >= 3

        # The target's timeline shows the transfer in, and the messages it got.
        target = (await ac.timeline(other)).entries
        assert [e.transfer for e in target if e.kind == "transfer"] == [transfer]
        got = [e.message.content for e in target if e.message is not None]
        assert got == ["hello", "bye"]

        with pytest.raises(NotFound):
            await ac.timeline("tl-nobody")
        with pytest.raises(Malformed):
            await ac.timeline(g, cursor="not-a-cursor")


# --- threads --------------------------------------------------------------------------------


def _put_threads(c: Client) -> None:
    """th-a: cp-1 <- cp-2 <- cp-3 in the root namespace (writes against cp-3), n-1 in
    ``AWKWARD``; th-b and zz-c: one checkpoint each."""
    c.put_checkpoint(
        "th-a",
        "cp-1",
        Typed("json", b'{"v": 1}'),
        metadata={"step": 0},
        channel_versions={"messages": "1"},
        blobs=[Blob("messages", "1", Typed("json", b'["hi"]'))],
    )
    c.put_checkpoint(
        "th-a",
        "cp-2",
        Typed("json", b'{"v": 2}'),
        parent_checkpoint_id="cp-1",
        metadata={"step": 1},
        channel_versions={"messages": "2"},
        blobs=[Blob("messages", "2", Typed("json", b'["hi", "there"]'))],
    )
    c.put_checkpoint(
        "th-a",
        "cp-3",
        Typed("json", b'{"v": 3}'),
        parent_checkpoint_id="cp-2",
        metadata={"step": 2, "source": "loop"},
        channel_versions={"messages": "2", "raw": "1"},
        blobs=[Blob("raw", "1", Typed("pickle", b"\x80\x04abc"))],
    )
    c.put_writes(
        "th-a", "cp-3", "task-1", [PendingWriteValue(0, "messages", Typed("json", b'"more"'))]
    )
    c.put_checkpoint(
        "th-a", "n-1", Typed("json", b'{"ns": true}'), checkpoint_ns=AWKWARD, metadata={"n": 1}
    )
    c.put_checkpoint("th-b", "cp-1", Typed("json", b"{}"))
    c.put_checkpoint("zz-c", "cp-1", Typed("json", b"{}"))


def test_threads_list_history_and_view(typed: Sidecar) -> None:
    with Client(typed.url) as c:
        _put_threads(c)

        threads = c.list_threads()
        assert threads.next_cursor is None
        assert [(t.thread_id, t.checkpoints, t.latest_checkpoint_id) for t in threads.threads] == [
            ("th-a", 4, "n-1"),  # every namespace; the greatest id
            ("th-b", 1, "cp-1"),
            ("zz-c", 1, "cp-1"),
        ]
        assert [t.thread_id for t in c.list_threads(prefix="th-").threads] == ["th-a", "th-b"]
        assert c.list_threads(prefix="nope").threads == []
        paged, cursor = [], None
        for _ in range(10):
            page = c.list_threads(cursor=cursor, limit=1)
            paged += page.threads
            cursor = page.next_cursor
            if cursor is None:
                break
        assert paged == threads.threads

        history = c.thread_history("th-a")
        assert history.next_cursor is None
        assert [
            (h.checkpoint_ns, h.checkpoint_id, h.parent_checkpoint_id, h.metadata)
            for h in history.checkpoints
        ] == [
            ("", "cp-3", "cp-2", {"step": 2, "source": "loop"}),
            ("", "cp-2", "cp-1", {"step": 1}),
            ("", "cp-1", None, {"step": 0}),
        ]
        first = c.thread_history("th-a", limit=2)
        assert [h.checkpoint_id for h in first.checkpoints] == ["cp-3", "cp-2"]
        assert first.next_cursor is not None
        rest = c.thread_history("th-a", cursor=first.next_cursor, limit=2)
        assert first.checkpoints + rest.checkpoints == history.checkpoints
        assert rest.next_cursor is None
        in_ns = c.thread_history("th-a", checkpoint_ns=AWKWARD).checkpoints
        assert [(h.checkpoint_ns, h.checkpoint_id, h.metadata) for h in in_ns] == [
            (AWKWARD, "n-1", {"n": 1})
        ]
        assert c.thread_history("th-nobody").checkpoints == []

        view = c.thread_view("th-a")
        assert (view.thread_id, view.checkpoint_ns, view.checkpoint_id) == ("th-a", "", "cp-3")
        assert (view.parent_checkpoint_id, view.metadata) == ("cp-2", {"step": 2, "source": "loop"})
        assert (view.checkpoint.type, view.checkpoint.decoded, view.checkpoint.value) == (
            "json",
            True,
            {"v": 3},
        )
        assert sorted(view.channels) == ["messages", "raw"]
        messages = view.channels["messages"]
        assert (messages.version, messages.value.decoded, messages.value.value) == (
            "2",
            True,
            ["hi", "there"],
        )
        raw = view.channels["raw"].value
        assert (raw.type, raw.decoded, raw.value, raw.bytes, raw.hex) == (
            "pickle",
            False,
            None,
            5,
            "8004616263",
        )
        [write] = view.writes
        assert (write.task_id, write.idx, write.channel, write.value.value) == (
            "task-1",
            0,
            "messages",
            "more",
        )
        old = c.thread_view("th-a", checkpoint_id="cp-1")
        assert (old.checkpoint_id, old.parent_checkpoint_id, old.writes) == ("cp-1", None, [])
        assert old.channels["messages"].value.value == ["hi"]
        assert old.checkpoint.value == {"v": 1}
        ns_view = c.thread_view("th-a", checkpoint_ns=AWKWARD)
        assert (ns_view.checkpoint_ns, ns_view.checkpoint_id, ns_view.checkpoint.value) == (
            AWKWARD,
            "n-1",
            {"ns": True},
        )
        with pytest.raises(NotFound):
            c.thread_view("th-nobody")
        with pytest.raises(NotFound):
            c.thread_view("th-a", checkpoint_id="cp-9")


async def test_thread_reads_on_the_async_client(typed: Sidecar) -> None:
    with Client(typed.url) as c:
        _put_threads(c)
    async with AsyncClient(typed.url, codec="json") as ac:
        assert [t.thread_id for t in (await ac.list_threads(prefix="zz")).threads] == ["zz-c"]
        history = await ac.thread_history("th-a", limit=1)
        assert [h.checkpoint_id for h in history.checkpoints] == ["cp-3"]
        view = await ac.thread_view("th-a", checkpoint_id="cp-2")
        assert view.channels["messages"].value.value == ["hi", "there"]


# --- transfers ------------------------------------------------------------------------------


async def test_list_transfers_all_and_by_agent(typed: Sidecar) -> None:
    async with AsyncClient(typed.url) as ac:
        for agent in ("a", "b", "c", "d"):
            await ac.save_agent(agent, "idle")
        await ac.append_messages("a", [{"role": "user", "content": "carry me"}])
        made = [
            await ac.create_transfer("tr-1", "a", "b", "handoff", context={"n": 1}),
            await ac.create_transfer("tr-2", "b", "c", "handoff"),
            await ac.create_transfer("tr-3", "c", "d", "handoff"),
        ]
        everything = await ac.list_transfers()
        assert everything.next_cursor is None
        assert everything.transfers == made
        assert made[0].messages_copied == 1
        assert made[0].context == {"n": 1}

        def ids(page_transfers: list) -> list[str]:
            return [t.transfer_id for t in page_transfers]

        assert ids((await ac.list_transfers(agent="b")).transfers) == ["tr-1", "tr-2"]
        assert ids((await ac.list_transfers(agent="d")).transfers) == ["tr-3"]
        assert (await ac.list_transfers(agent="nobody")).transfers == []
        paged, cursor = [], None
        for _ in range(10):
            page = await ac.list_transfers(cursor=cursor, limit=2)
            assert len(page.transfers) <= 2
            paged += page.transfers
            cursor = page.next_cursor
            if cursor is None:
                break
        assert paged == made
        with pytest.raises(Malformed):
            await ac.list_transfers(agent="not an id")
    with Client(typed.url) as c:
        lineage = c.list_transfers(agent="c", limit=1)
        assert ids(lineage.transfers) == ["tr-2"]
        assert lineage.next_cursor is not None
        after = c.list_transfers(agent="c", cursor=lineage.next_cursor, limit=1)
        assert ids(after.transfers) == ["tr-3"]


# --- what the sidecar added beside the listings ------------------------------------------


def test_transition_reason_status_fields_and_ui_writes_disabled(
    backend: str, make_sidecar: object
) -> None:
    writable: Sidecar = make_sidecar(backend, "--ui-writes")  # type: ignore[operator]
    reason = "operator: undo the bad step"
    with Client(writable.url) as c:
        c.save_agent("r", "idle")
        c.transition("r", "working", "start")
        checkpoint = c.create_checkpoint("r")
        c.transition("r", "broken", "oops")
        r = httpx.post(
            f"{writable.url}/v1/inspector/agents/r/rollback",
            json={"checkpoint_id": checkpoint.checkpoint_id, "reason": reason},
        )
        assert r.status_code == 200, r.text
        log = c.list_transitions("r")
        assert [(t.trigger, t.reason) for t in log] == [
            ("start", None),
            ("oops", None),
            ("rollback", reason),
        ]
        last = c.timeline("r").entries[-1]
        assert last.transition == log[-1]

        status = c.status()
        assert status.cache_bytes > 0, "the cache holds the agent"
        if status.backend == "sqlite":
            assert status.leases_held == 0, "no leases on the embedded store"
        # On MongoDB the count lags the leases taken (the sidecar reads a cache's
        # approximate entry count), so only its agreement with the wire is checked.
        body = httpx.get(f"{writable.url}/v1/status").json()
        assert (body["cache_bytes"], body["leases_held"]) == (
            status.cache_bytes,
            status.leases_held,
        )
        for key in ("cache_bytes", "leases_held"):
            del body[key]
        older = Status.from_wire(body)  # an older sidecar's answer
        assert (older.cache_bytes, older.leases_held) == (0, 0)
        assert older.wal_last_lsn == body["wal_last_lsn"]

    read_only: Sidecar = make_sidecar(backend)  # type: ignore[operator]
    with Client(read_only.url) as c:
        c.save_agent("r", "idle")
        checkpoint = c.create_checkpoint("r")
    r = httpx.post(
        f"{read_only.url}/v1/inspector/agents/r/rollback",
        json={"checkpoint_id": checkpoint.checkpoint_id, "reason": reason},
    )
    error = error_from_response(r.status_code, r.json())
    assert isinstance(error, Forbidden)
    assert (error.status, error.code) == (403, "ui_writes_disabled")
    assert "--ui-writes" in error.message
