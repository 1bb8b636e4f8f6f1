"""The Google ADK session service on the real sidecar: the same results as ADK's own
``InMemorySessionService`` on one scripted sequence; ``Runner`` with a scripted model (no
network) and a tool writing every kind of state, across ``kill -9`` of the sidecar; stale
sessions and bad input as ADK's services answer them; each append whole or not at all,
also when the sidecar is killed among appends."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import random
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from google.adk.agents import LlmAgent
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events import Event, EventActions
from google.adk.models import BaseLlm, LlmRequest, LlmResponse
from google.adk.runners import Runner
from google.adk.sessions import BaseSessionService, InMemorySessionService, Session
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.tools import ToolContext
from google.genai import types
from pydantic import Field

from _procs import Sidecar
from agentstate_client import Client, ConnectionFailed, TooLarge, VersionConflict
from agentstate_client.adk import AgentstateSessionService, _ids

APP = "tea-app"
T0 = 1_700_000_000.0  # event timestamps of the script: fixed, so both services get equal ones


def text_event(author: str, text: str, at: float, delta: dict[str, Any] | None = None) -> Event:
    role = "user" if author == "user" else "model"
    return Event(
        id=f"ev-{at}",  # fixed, so that the script's events are equal across runs
        invocation_id="inv-1",
        author=author,
        timestamp=at,
        content=types.Content(role=role, parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=delta or {}),
    )


def script_events() -> list[Event]:
    """Events with deltas under every prefix, and values of every JSON kind."""
    call = Event(
        id="ev-call",
        invocation_id="inv-1",
        author="barista",
        timestamp=T0 + 2,
        content=types.Content(
            role="model",
            parts=[types.Part(function_call=types.FunctionCall(name="brew", args={"cups": 2}))],
        ),
    )
    return [
        text_event("user", "Two cups of tea, please", T0 + 1),
        call,
        text_event(
            "barista",
            "Brewing ünïcödé ☕",
            T0 + 3,
            {
                "cups": 2,
                "order": {"kind": "green", "sizes": [1, 2.5], "hot": True, "note": None},
                "user:lang": "de",
                "user:visits": 1,
                "app:brewed": 2,
                "temp:kettle": "boiling",
            },
        ),
        text_event("user", "Thanks", T0 + 4, {"cups": 3, "temp:other": 1}),
        text_event("barista", "Enjoy", T0 + 5, {"app:brewed": 5, "user:visits": 2}),
    ]


def view(session: Session | None, event_times: set[float]) -> Any:
    """What a caller can observe of a session. ``last_update_time`` is compared when it is
    an event's timestamp; set at create, it is each service's own clock reading."""
    if session is None:
        return None
    lut = session.last_update_time
    return {
        "id": session.id,
        "app_name": session.app_name,
        "user_id": session.user_id,
        "state": copy.deepcopy(session.state),  # a snapshot: later appends change it
        "events": [e.model_dump() for e in session.events],
        "last_update_time": lut if lut in event_times else "the service's clock at create",
    }


async def run_script(svc: BaseSessionService) -> list[tuple[str, Any]]:
    """One sequence of calls; returns (step, observable result) pairs."""
    events = copy.deepcopy(script_events())  # append_event trims temp: keys in place
    times = {e.timestamp for e in events} | {T0 + 6}
    out: list[tuple[str, Any]] = []

    def note(step: str, value: Any) -> None:
        out.append((step, value))

    s1 = await svc.create_session(
        app_name=APP,
        user_id="ada",
        session_id="s1",
        state={"topic": "tea", "user:lang": "en", "app:version": 1, "temp:draft": "x"},
    )
    note("create s1", view(s1, times))
    generated = await svc.create_session(app_name=APP, user_id="ada")  # an id of its own
    note("create with a generated id", (len(generated.id), generated.state))
    s2 = await svc.create_session(app_name=APP, user_id="ada", session_id="  s2  ")
    note("create s2 (stripped id)", view(s2, times))
    s3 = await svc.create_session(
        app_name=APP, user_id="bob", session_id="s3", state={"user:lang": "fr", "mood": "calm"}
    )
    note("create s3", view(s3, times))
    odd = await svc.create_session(
        app_name=APP, user_id="cy:ü/ 1_", session_id="id:with spaces/ü_", state={"k": [1]}
    )
    note("create odd names", view(odd, times))

    for i, event in enumerate(events):
        returned = await svc.append_event(s1, event)
        note(f"append {i} returns", returned.model_dump())
        note(f"append {i} session state", dict(s1.state))  # temp: keys stay in memory
    note("append to s3", (await svc.append_event(s3, text_event("user", "hi", T0 + 6))).id)

    for cfg in [
        None,
        GetSessionConfig(num_recent_events=0),
        GetSessionConfig(num_recent_events=1),
        GetSessionConfig(num_recent_events=2),
        GetSessionConfig(num_recent_events=50),
        GetSessionConfig(after_timestamp=T0 + 3),
        GetSessionConfig(after_timestamp=T0 + 3.5),
        GetSessionConfig(after_timestamp=T0 + 99),
        GetSessionConfig(num_recent_events=3, after_timestamp=T0 + 4),
    ]:
        got = await svc.get_session(app_name=APP, user_id="ada", session_id="s1", config=cfg)
        note(f"get s1 {cfg!r}", view(got, times))
    for user, sid in [("ada", "s2"), ("bob", "s3"), ("cy:ü/ 1_", "id:with spaces/ü_")]:
        got = await svc.get_session(app_name=APP, user_id=user, session_id=f" {sid} ")
        note(f"get {sid}", view(got, times))

    async def listing(user: str | None, app: str = APP) -> Any:
        found = await svc.list_sessions(app_name=app, user_id=user)
        return [view(s, times) for s in found.sessions if s.id != generated.id]

    note("list ada", await listing("ada"))
    note("list bob", await listing("bob"))
    note("list all", await listing(None))
    note("list unknown user", await listing("nobody"))
    note("list unknown app", await listing(None, "no-app"))
    note("user state ada", await svc.get_user_state(app_name=APP, user_id="ada"))
    note("user state nobody", await svc.get_user_state(app_name=APP, user_id="nobody"))

    await svc.delete_session(app_name=APP, user_id="ada", session_id="s2")
    await svc.delete_session(app_name=APP, user_id="ada", session_id="s2")  # again: nothing
    await svc.delete_session(app_name=APP, user_id="zed", session_id="s1")  # other user
    await svc.delete_session(app_name="no-app", user_id="ada", session_id="s1")
    note("get deleted", await svc.get_session(app_name=APP, user_id="ada", session_id="s2"))
    note("list after delete", await listing(None))
    note(
        "get s1 after delete",
        view(await svc.get_session(app_name=APP, user_id="ada", session_id="s1"), times),
    )
    note("get s1 as bob", await svc.get_session(app_name=APP, user_id="bob", session_id="s1"))
    again = await svc.create_session(app_name=APP, user_id="ada", session_id="s2")
    note("create s2 again", view(again, times))
    return out


async def test_same_results_as_in_memory(sidecar: Sidecar) -> None:
    expected = await run_script(InMemorySessionService())
    async with AgentstateSessionService(url=sidecar.url) as svc:
        got = await run_script(svc)
    assert [step for step, _ in got] == [step for step, _ in expected]
    for (step, value), (_, want) in zip(got, expected, strict=True):
        assert value == want, step

    # A fresh service (a restarted app) reads the same, events equal to what was appended.
    async with AgentstateSessionService(url=sidecar.url) as svc:
        s1 = await svc.get_session(app_name=APP, user_id="ada", session_id="s1")
    assert s1 is not None
    appended = script_events()
    for e in appended:
        e.actions.state_delta = {
            k: v for k, v in e.actions.state_delta.items() if not k.startswith("temp:")
        }
    assert s1.events == appended


async def test_stored_layout(sidecar: Sidecar) -> None:
    """One agent per session, user and app; states as JSON text; events whole as the
    session's messages; ``temp:`` nowhere."""
    async with AgentstateSessionService(url=sidecar.url) as svc:
        s = await svc.create_session(
            app_name=APP, user_id="ada", session_id="s1", state={"temp:t": 1, "a": 1}
        )
        for e in script_events()[:3]:
            await svc.append_event(s, e)
    with Client(sidecar.url) as c:
        session = c.get_agent("adk:session:tea-app:ada:s1")
        user = c.get_agent("adk:user:tea-app:ada")
        app = c.get_agent("adk:app:tea-app")
        messages = c.list_messages("adk:session:tea-app:ada:s1")
        users = c.list_messages("adk:app:tea-app")
    assert session.state_data["kind"] == "adk_session"
    assert json.loads(session.state_data["state"]) == {
        "a": 1,
        "cups": 2,
        "order": {"kind": "green", "sizes": [1, 2.5], "hot": True, "note": None},
    }
    assert session.state_data["event_count"] == 3
    assert session.state_data["last_update_time"] == T0 + 3
    assert json.loads(user.state_data["state"]) == {"lang": "de", "visits": 1}
    assert user.state_data["sessions"] == ["s1"]
    assert json.loads(app.state_data["state"]) == {"brewed": 2}
    assert [m.content for m in users] == ["ada"]
    assert [m.role for m in messages] == ["user", "barista", "barista"]
    assert [m.metadata["event_index"] for m in messages] == [1, 2, 3]
    assert Event.model_validate_json(messages[0].content) == script_events()[0]
    stored = json.dumps([session.state_data, user.state_data, app.state_data])
    stored += "".join(m.content for m in messages)
    assert "temp:" not in stored
    assert "kettle" not in stored


def test_agent_ids() -> None:
    assert _ids.session_agent("app", "u", "s") == "adk:session:app:u:s"
    assert _ids.user_agent("my app", "a:b") == "adk:user:my_20app:a_3Ab"
    assert _ids.escape("ü_") == "_C3_BC_5F"
    # Names that only differ in where a separator falls get different ids.
    assert _ids.user_agent("a:b", "c") != _ids.user_agent("a", "b:c")
    long_id = _ids.session_agent("app", "u", "x" * 200)
    assert long_id.startswith("adk:session.sha256:")
    assert len(long_id) <= 128
    assert long_id != _ids.session_agent("app", "u", "x" * 201)
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.:")
    for agent_id in [long_id, _ids.app_agent("☕ \n/$"), _ids.user_agent("", "")]:
        assert set(agent_id) <= allowed


async def test_long_names_hashed(make_sidecar: Any) -> None:
    sidecar = make_sidecar("sqlite")
    app, user, sid = "a" * 100, "ü" * 40, "s" * 300
    async with AgentstateSessionService(url=sidecar.url) as svc:
        s = await svc.create_session(app_name=app, user_id=user, session_id=sid)
        await svc.append_event(s, text_event("user", "hi", T0, {"user:x": 1}))
        got = await svc.get_session(app_name=app, user_id=user, session_id=sid)
        listed = await svc.list_sessions(app_name=app)
    assert got is not None
    assert got.state == {"user:x": 1}
    assert [(s.user_id, s.id) for s in listed.sessions] == [(user, sid)]


async def test_big_events_in_chunks(make_sidecar: Any) -> None:
    """Events longer than a message are cut into several; any number of recent events
    reads back as ADK's in-memory service gives it."""
    sidecar = make_sidecar("sqlite", "--message-bytes-max", "200")
    events = [
        text_event("user", "é" * n, T0 + i, {"n": n}) for i, n in enumerate([1, 300, 5, 1000, 90])
    ]
    memory = InMemorySessionService()
    async with AgentstateSessionService(url=sidecar.url, message_bytes_max=200) as svc:
        for service in (memory, svc):
            s = await service.create_session(app_name=APP, user_id="u", session_id="big")
            for e in copy.deepcopy(events):
                await service.append_event(s, e)
        for k in [None, 0, 1, 2, 3, 4, 5, 6]:
            config = GetSessionConfig(num_recent_events=k)
            want = await memory.get_session(
                app_name=APP, user_id="u", session_id="big", config=config
            )
            got = await svc.get_session(app_name=APP, user_id="u", session_id="big", config=config)
            assert want is not None
            assert got is not None
            assert got.events == want.events, k
    with Client(sidecar.url) as c:
        messages = c.list_messages("adk:session:tea-app:u:big", limit=1000)
    assert len(messages) > 10  # the long ones took several messages each
    assert max(len(m.content.encode()) for m in messages) <= 200


async def test_stale_session_refused(sidecar: Sidecar) -> None:
    async with AgentstateSessionService(url=sidecar.url) as svc:
        await svc.create_session(app_name=APP, user_id="ada", session_id="s1")
        first = await svc.get_session(app_name=APP, user_id="ada", session_id="s1")
        second = await svc.get_session(app_name=APP, user_id="ada", session_id="s1")
        assert first is not None
        assert second is not None
        await svc.append_event(first, text_event("user", "one", T0 + 1, {"k": 1}))
        await svc.append_event(first, text_event("user", "two", T0 + 2))  # its own: fine

        with pytest.raises(StaleSessionError):
            await svc.append_event(second, text_event("user", "lost", T0 + 3, {"k": 2}))
        reread = await svc.get_session(app_name=APP, user_id="ada", session_id="s1")
        assert reread is not None
        assert [e.content.parts[0].text for e in reread.events] == ["one", "two"]
        assert reread.state == {"k": 1}
        assert [e.content.parts[0].text for e in second.events] == []  # untouched

        # A session built by hand carries no version: as ADK's database service, it is
        # accepted while its latest event is the stored latest one, and stale after.
        by_hand = Session(
            id="s1",
            app_name=APP,
            user_id="ada",
            events=list(reread.events),
            last_update_time=reread.last_update_time - 10,
        )
        await svc.append_event(by_hand, text_event("user", "three", T0 + 4))
        behind = Session(id="s1", app_name=APP, user_id="ada", events=list(reread.events))
        with pytest.raises(StaleSessionError):
            await svc.append_event(behind, text_event("user", "four", T0 + 5))


async def test_bad_input_as_adk_services(sidecar: Sidecar) -> None:
    """Unknown sessions and reused ids answer as ADK's in-memory service does."""
    async with AgentstateSessionService(url=sidecar.url) as svc:
        for service in (InMemorySessionService(), svc):
            name = type(service).__name__
            assert await service.get_session(app_name=APP, user_id="u", session_id="no") is None
            ghost = Session(id="no", app_name=APP, user_id="u")
            with pytest.raises(SessionNotFoundError):
                await service.append_event(ghost, text_event("user", "x", T0))
            await service.delete_session(app_name=APP, user_id="u", session_id="no")
            assert (await service.list_sessions(app_name="none")).sessions == [], name

            s = await service.create_session(app_name=APP, user_id="u", session_id="dup")
            with pytest.raises(AlreadyExistsError):
                await service.create_session(app_name=APP, user_id="u", session_id="dup")
            partial = text_event("barista", "thinking", T0, {"k": 1})
            partial.partial = True
            assert await service.append_event(s, partial) is partial
            got = await service.get_session(app_name=APP, user_id="u", session_id="dup")
            assert got is not None
            assert (got.events, got.state) == ([], {}), name
    with pytest.raises(ValueError, match="num_recent_events"):
        GetSessionConfig(num_recent_events=-1)


async def test_event_delivered_again_is_stored_once(sidecar: Sidecar) -> None:
    """A retried append (the same event again, or an equal copy, even through a session
    read before the first try) stores it once, as InMemorySessionService does; an event
    that only shares the id is another event."""

    async def deliver(service: BaseSessionService) -> list[Any]:
        s = await service.create_session(app_name=APP, user_id="u", session_id="again")
        before = await service.get_session(app_name=APP, user_id="u", session_id="again")
        assert before is not None
        first = text_event("user", "once", T0 + 1, {"n": 1, "user:n": 1})
        await service.append_event(s, first)
        await service.append_event(s, first)
        await service.append_event(s, copy.deepcopy(first))
        await service.append_event(before, copy.deepcopy(first))
        same_id = text_event("user", "other text", T0 + 1, {"n": 2})
        await service.append_event(s, same_id)
        got = await service.get_session(app_name=APP, user_id="u", session_id="again")
        assert got is not None
        return [
            [e.model_dump() for e in s.events],
            [e.model_dump() for e in got.events],
            got.state,
            [e.model_dump() for e in before.events],
        ]

    async with AgentstateSessionService(url=sidecar.url) as svc:
        got = await deliver(svc)
    expected = await deliver(InMemorySessionService())
    assert got[:3] == expected[:3]
    assert [e["content"]["parts"][0]["text"] for e in got[1]] == ["once", "other text"]
    # The session read before the first try gets the event too (InMemorySessionService
    # leaves it out), so that it goes on as the store does: no StaleSessionError next.
    assert expected[3] == []
    assert got[3] == got[1][:1]


async def test_refused_append_changes_nothing(make_sidecar: Any) -> None:
    """An append is one batch: refused (here too large), neither the event nor its
    session, user or app delta is stored, and the in-memory session is untouched."""
    sidecar = make_sidecar("sqlite", "--body-bytes-max", "65536")
    async with AgentstateSessionService(url=sidecar.url) as svc:
        s = await svc.create_session(app_name=APP, user_id="u", session_id="s1")
        await svc.append_event(s, text_event("user", "small", T0, {"k": 1, "user:u": 1}))
        big = text_event("user", "x" * 200_000, T0 + 1, {"k": 2, "user:u": 2, "app:a": 2})
        with pytest.raises(TooLarge):
            await svc.append_event(s, big)
        assert s.state == {"k": 1, "user:u": 1}
        assert len(s.events) == 1
        got = await svc.get_session(app_name=APP, user_id="u", session_id="s1")
        assert got is not None
        assert (got.state, len(got.events)) == ({"k": 1, "user:u": 1}, 1)
        # and the session is not stale: nothing was written
        await svc.append_event(s, text_event("user", "next", T0 + 2, {"app:a": 3}))
        assert s.state == {"k": 1, "user:u": 1, "app:a": 3}


async def test_append_whose_answer_was_lost(
    make_sidecar: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection breaks after the sidecar applied the batch (as when it is killed
    right after its WAL write): the service finds its event stored and carries on; broken
    before, the error is the caller's and nothing is stored."""
    sidecar = make_sidecar("sqlite")
    async with AgentstateSessionService(url=sidecar.url) as svc:
        s = await svc.create_session(app_name=APP, user_id="u", session_id="s1")
        real_batch = svc.client.batch

        async def applied_then_lost(*args: Any, **kwargs: Any) -> Any:
            await real_batch(*args, **kwargs)
            raise ConnectionFailed("connection reset after the request was sent")

        async def lost_before(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionFailed("connection reset before the request was sent")

        monkeypatch.setattr(svc.client, "batch", applied_then_lost)
        await svc.append_event(s, text_event("user", "one", T0 + 1, {"k": 1, "user:u": 1}))
        monkeypatch.setattr(svc.client, "batch", lost_before)
        with pytest.raises(ConnectionFailed):
            await svc.append_event(s, text_event("user", "two", T0 + 2, {"k": 2}))
        monkeypatch.setattr(svc.client, "batch", real_batch)
        await svc.append_event(s, text_event("user", "three", T0 + 3, {"k": 3}))  # not stale

        got = await svc.get_session(app_name=APP, user_id="u", session_id="s1")
    assert got is not None
    assert [e.content.parts[0].text for e in got.events] == ["one", "three"]
    assert got.state == {"k": 3, "user:u": 1}
    assert [e.id for e in s.events] == [e.id for e in got.events]


async def test_kill9_mid_appends_keeps_each_event_whole(sidecar: Sidecar) -> None:
    """Appends run while the sidecar is killed with SIGKILL: afterwards every event is
    stored with its session, user and app delta, or none of them is; every acknowledged
    one is stored. The kill comes after a random delay: the seed replays it
    (``ADK_KILL_SEED``)."""
    seed = int(os.environ.get("ADK_KILL_SEED") or random.randrange(2**32))
    print(f"ADK_KILL_SEED={seed}")
    delay_s = random.Random(seed).uniform(0.05, 0.4)
    async with AgentstateSessionService(url=sidecar.url) as svc:
        s = await svc.create_session(app_name=APP, user_id="u", session_id="k")
        acked: list[int] = []
        tried: list[int] = []

        async def writer() -> None:
            for i in range(100_000):
                tried.append(i)
                delta = {f"s{i}": i, f"user:u{i}": i, f"app:a{i}": i}
                try:
                    await svc.append_event(s, text_event("user", f"m{i}", T0 + i, delta))
                except ConnectionFailed:
                    return
                acked.append(i)

        task = asyncio.create_task(writer())
        await asyncio.sleep(delay_s)
        sidecar.kill9()
        await task
        sidecar.start()

    async with AgentstateSessionService(url=sidecar.url) as svc:
        got = await svc.get_session(app_name=APP, user_id="u", session_id="k")
        user_state = await svc.get_user_state(app_name=APP, user_id="u")
    assert got is not None
    stored = [int(e.content.parts[0].text[1:]) for e in got.events]
    print(f"acknowledged {len(acked)}, stored {len(stored)}")
    assert acked, f"no append was acknowledged before the kill (seed {seed})"
    assert stored[: len(acked)] == acked
    assert stored in (acked, [*acked, tried[-1]])  # the unanswered one: all or nothing
    assert got.state == {
        **{f"s{i}": i for i in stored},
        **{f"user:u{i}": i for i in stored},
        **{f"app:a{i}": i for i in stored},
    }
    assert user_state == {f"u{i}": i for i in stored}


async def test_concurrent_appends_merge_shared_state(make_sidecar: Any) -> None:
    """Sessions of one user append user: and app: deltas at once: every key lands (a
    conflict on the shared agents is re-read and retried); appends to one session object
    at once go one after the other."""
    sidecar = make_sidecar("sqlite")
    async with AgentstateSessionService(url=sidecar.url) as svc:
        conflicts = 0
        real_batch = svc.client.batch

        async def counting_batch(*args: Any, **kwargs: Any) -> Any:
            nonlocal conflicts
            try:
                return await real_batch(*args, **kwargs)
            except VersionConflict:
                conflicts += 1
                raise

        svc.client.batch = counting_batch  # type: ignore[method-assign]
        sessions = [
            await svc.create_session(app_name=APP, user_id="ada", session_id=f"s{i}")
            for i in range(4)
        ]

        async def writer(s: Session, n: int) -> None:
            for j in range(n):
                delta = {f"user:{s.id}-{j}": j, f"app:{s.id}-{j}": j, "own": j}
                await svc.append_event(s, text_event("user", f"{s.id}-{j}", T0 + j, delta))

        await asyncio.gather(*(writer(s, 5) for s in sessions))
        one = sessions[0]
        await asyncio.gather(
            *(svc.append_event(one, text_event("user", f"same-{j}", T0 + 10 + j)) for j in range(5))
        )
        user_state = await svc.get_user_state(app_name=APP, user_id="ada")
        got = await svc.get_session(app_name=APP, user_id="ada", session_id="s0")
    assert conflicts > 0  # the writers did collide on the user's and app's agents
    assert user_state == {f"s{i}-{j}": j for i in range(4) for j in range(5)}
    assert got is not None
    assert len(got.events) == 10
    assert got.state["own"] == 4
    assert all(got.state[f"app:s{i}-{j}"] == j for i in range(4) for j in range(5))


# --- a Runner with a scripted model --------------------------------------------------------


class ScriptedModel(BaseLlm):
    """Answers with the next canned response and keeps every request (no network)."""

    model: str = "scripted"
    responses: list[LlmResponse] = Field(default_factory=list)
    requests: list[LlmRequest] = Field(default_factory=list)

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        self.requests.append(llm_request)
        yield self.responses.pop(0)


def model_says(*parts: types.Part) -> LlmResponse:
    return LlmResponse(content=types.Content(role="model", parts=list(parts)))


def remember(name: str, tool_context: ToolContext) -> dict[str, str]:
    """Remember the user's name."""
    state = tool_context.state
    state["user:name"] = name
    state["app:greetings"] = state.get("app:greetings", 0) + 1
    state["turns"] = state.get("turns", 0) + 1
    state["temp:scratch"] = "kept for this invocation only"
    return {"remembered": name}


def user_says(text: str) -> types.Content:
    return types.Content(role="user", parts=[types.Part(text=text)])


async def run_turn(runner: Runner, session_id: str, text: str) -> list[Event]:
    return [
        e
        async for e in runner.run_async(
            user_id="ada", session_id=session_id, new_message=user_says(text)
        )
    ]


async def test_runner_conversation_across_kill9(sidecar: Sidecar) -> None:
    model = ScriptedModel(
        responses=[
            model_says(
                types.Part(function_call=types.FunctionCall(name="remember", args={"name": "Ada"}))
            ),
            model_says(types.Part(text="Hello Ada!")),
            model_says(types.Part(text="You are Ada.")),
            model_says(types.Part(text="Welcome back, Ada.")),
        ]
    )
    agent = LlmAgent(
        name="greeter",
        model=model,
        instruction="Greet the user. Known name: {user:name?}.",
        tools=[remember],
    )
    svc = AgentstateSessionService(url=sidecar.url)
    runner = Runner(app_name=APP, agent=agent, session_service=svc)
    await svc.create_session(app_name=APP, user_id="ada", session_id="chat")

    first = await run_turn(runner, "chat", "I'm Ada")
    assert first[-1].content.parts[0].text == "Hello Ada!"
    before = await svc.get_session(app_name=APP, user_id="ada", session_id="chat")
    assert before is not None
    assert before.state == {"turns": 1, "user:name": "Ada", "app:greetings": 1}
    assert len(before.events) == 4  # user, function call, function response, answer

    sidecar.restart()  # kill -9, same data dir; the same service and runner carry on

    after = await svc.get_session(app_name=APP, user_id="ada", session_id="chat")
    assert after is not None
    assert after.events == before.events
    assert after.state == before.state
    second = await run_turn(runner, "chat", "What's my name?")
    assert second[-1].content.parts[0].text == "You are Ada."
    request = model.requests[-1]
    assert "Known name: Ada." in str(request.config.system_instruction)
    texts = [p.text for c in request.contents for p in c.parts or [] if p.text]
    assert texts == ["I'm Ada", "Hello Ada!", "What's my name?"]
    assert any(p.function_response for c in request.contents for p in c.parts or [])
    await svc.close()

    sidecar.restart()
    # A new process: a fresh service and runner; user: and app: state reach a new session.
    async with AgentstateSessionService(url=sidecar.url) as fresh:
        runner = Runner(app_name=APP, agent=agent, session_service=fresh)
        chat = await fresh.get_session(app_name=APP, user_id="ada", session_id="chat")
        assert chat is not None
        assert len(chat.events) == 6
        assert chat.events[:4] == before.events
        assert chat.state == before.state
        await fresh.create_session(app_name=APP, user_id="ada", session_id="next")
        third = await run_turn(runner, "next", "Hi again")
        assert third[-1].content.parts[0].text == "Welcome back, Ada."
        assert "Known name: Ada." in str(model.requests[-1].config.system_instruction)
        nxt = await fresh.get_session(app_name=APP, user_id="ada", session_id="next")
        listed = await fresh.list_sessions(app_name=APP, user_id="ada")
    assert nxt is not None
    assert nxt.state == {"user:name": "Ada", "app:greetings": 1}
    assert [s.id for s in listed.sessions] == ["chat", "next"]
