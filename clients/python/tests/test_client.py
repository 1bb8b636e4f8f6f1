"""The clients against the real sidecar: every endpoint family, both codecs, sync and
async, the Unix socket, every error class, and what is (not) retried."""

from __future__ import annotations

import inspect
import time
import uuid
from pathlib import Path

import httpx
import pytest

import agentstate_client
from _procs import REPO, Mongo, Sidecar, free_port
from agentstate_client import (
    AgentstateError,
    AsyncClient,
    Client,
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


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class CountingTransport(httpx.HTTPTransport):
    """Counts the requests that reach the wire, so retries can be seen."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return super().handle_request(request)


class AsyncCountingTransport(httpx.AsyncHTTPTransport):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await super().handle_async_request(request)


# --- the surface ----------------------------------------------------------------------------


def test_sync_and_async_clients_have_the_same_surface() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(fn)
            for name, fn in vars(cls).items()
            if callable(fn) and not name.startswith("_") and name not in ("close", "aclose")
        }

    sync, aio = public(Client), public(AsyncClient)
    assert sync.keys() == aio.keys()
    for name, sig in sync.items():
        assert list(sig.parameters) == list(aio[name].parameters), name
        fn = getattr(AsyncClient, name)
        # Calls are coroutines; iterators over pages are async generators.
        assert inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn), name


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["msgpack", "json"])
def test_sync_client_round_trips_every_endpoint_family(sidecar: Sidecar, codec: str) -> None:
    a, b = uid("a"), uid("b")
    with Client(sidecar.url, codec=codec) as c:
        assert c.health()
        assert c.ready()
        v1 = c.save_agent(a, "idle", state_data={"n": 1, "nested": [1, "two", None, 2.5]})
        state = c.get_agent(a)
        assert (state.version, state.state_name, state.state_data["nested"]) == (
            v1,
            "idle",
            [1, "two", None, 2.5],
        )
        with pytest.raises(VersionConflict) as conflict:
            c.save_agent(a, "idle", if_match=v1 + 5)
        assert conflict.value.current_version == v1
        with pytest.raises(VersionConflict):
            c.save_agent(a, "idle", if_none_match=True)
        v2 = c.save_agent(a, "busy", if_match=v1, metadata={"k": "v"})
        assert v2 == v1 + 1

        t = c.transition(a, "working", "go", state_data={"step": 1})
        assert t.transition.to_state == "working"
        assert t.version == v2 + 1
        begun = c.begin_transition(a, "done", "finish")
        with pytest.raises(Conflict):
            c.transition(a, "other", "x")
        assert c.get_agent(a).pending_transition is not None
        done = c.complete_transition(a, begun.pending_transition.id, state_data={"ok": True})
        assert done.transition.success
        assert c.get_agent(a).state_name == "done"
        begun = c.begin_transition(a, "x", "try")
        aborted = c.abort_transition(a, begun.pending_transition.id, error="tool failed")
        assert not aborted.transition.success
        log = c.list_transitions(a, after=0, limit=10)
        assert [x.trigger for x in log] == ["go", "finish", "try"]
        assert [x.trigger for x in c.list_transitions(a, after=log[0].seq)] == ["finish", "try"]

        appended = c.append_messages(
            a,
            [
                {"role": "user", "content": "hi"},
                agentstate_client.NewMessage("assistant", "hello", {"m": 1}),
                {"role": "user", "content": "bye"},
            ],
        )
        assert len(appended.seqs) == 3
        msgs = c.list_messages(a)
        assert [m.content for m in msgs] == ["hi", "hello", "bye"]
        assert msgs[1].metadata == {"m": 1}
        assert [m.content for m in c.list_messages(a, after=msgs[0].seq, limit=1)] == ["hello"]
        assert [m.content for m in c.last_messages(a, 2)] == ["hello", "bye"]
        popped = c.pop_last_message(a)
        assert popped.message is not None
        assert popped.message.content == "bye"
        assert [m.content for m in c.list_messages(a)] == ["hi", "hello"]

        cp = c.create_checkpoint(a, label="before-more")
        c.transition(a, "again", "more")
        assert [x.label for x in c.list_checkpoints(a)] == ["before-more"]
        dry = c.replay(a, cp.checkpoint_id)
        assert not dry.applied
        assert dry.transitions_applied == 1
        rolled = c.rollback(a, cp.checkpoint_id)
        assert rolled.transition.trigger == "rollback"
        assert c.get_agent(a).state_name == "done"

        c.clear_messages(a)
        assert c.list_messages(a) == []
        assert c.pop_last_message(a).message is None

        c.save_agent(b, "idle")
        c.append_messages(a, [{"role": "user", "content": "carry me"}])
        transfer_id = uid("tr")
        tr = c.create_transfer(transfer_id, a, b, "handoff", context={"topic": "x"})
        assert tr.messages_copied == 1
        assert tr.context == {"topic": "x"}
        assert c.create_transfer(transfer_id, a, b, "handoff") == tr
        assert c.get_transfer(transfer_id) == tr
        assert [m.content for m in c.list_messages(b)] == ["carry me"]

        results = c.batch(
            [
                {"op": "put", "agent_id": b, "state_name": "batched"},
                {"op": "messages", "agent_id": b, "messages": [{"role": "u", "content": "x"}]},
            ]
        )
        assert [r.agent_id for r in results] == [b, b]

        status = c.status()
        assert status.ready
        assert status.backend in ("sqlite", "mongodb")
        assert "agentstate_requests_total" in c.metrics()
        usage = c.usage(top=1)
        assert usage.backend == status.backend
        assert "agent_states" in [t.name for t in usage.tables]
        assert len(usage.largest) <= 1
        with pytest.raises(Malformed):
            c.usage(top=5000)

        c.delete_agent(a)
        with pytest.raises(NotFound):
            c.get_agent(a)


@pytest.mark.parametrize("codec", ["msgpack", "json"])
async def test_async_client_round_trips(sidecar: Sidecar, codec: str) -> None:
    a = uid("a")
    async with AsyncClient(sidecar.url, codec=codec) as c:
        assert await c.ready()
        v = await c.save_agent(a, "idle", state_data={"x": 1}, if_none_match=True)
        assert (await c.get_agent(a)).state_data == {"x": 1}
        with pytest.raises(VersionConflict) as e:
            await c.save_agent(a, "idle", if_match=v + 1)
        assert e.value.current_version == v
        await c.append_messages(a, [{"role": "user", "content": f"m{i}"} for i in range(5)])
        assert [m.content for m in await c.last_messages(a, 2)] == ["m3", "m4"]
        assert (await c.pop_last_message(a)).message.content == "m4"  # type: ignore[union-attr]
        await c.clear_messages(a)
        assert await c.list_messages(a) == []
        t = await c.transition(a, "b", "go")
        assert (await c.list_transitions(a))[-1].id == t.transition.id
        await c.delete_agent(a)
        with pytest.raises(NotFound):
            await c.get_agent(a)


def test_ids_use_every_allowed_character(sidecar: Sidecar) -> None:
    agent_id = f"user:42.{uuid.uuid4().hex[:6]}_x-Y"
    with Client(sidecar.url) as c:
        c.save_agent(agent_id, "idle")
        assert c.get_agent(agent_id).agent_id == agent_id
        with pytest.raises(Malformed):
            c.get_agent("a/b")  # encoded, so it reaches the agent route and is refused


def test_durability_per_call_and_client_default(sidecar: Sidecar) -> None:
    transport = CountingTransport()
    with Client(sidecar.url, transport=transport, durability="memory") as c:
        a = uid("d")
        c.save_agent(a, "idle")
        c.save_agent(a, "idle", durability="remote")
        c.get_agent(a)
    sent = [r.url.params.get("durability") for r in transport.requests]
    assert sent == ["memory", "remote", None]
    with pytest.raises(ValueError, match="durability"):
        Client(sidecar.url, durability="disk")


def test_settings_come_from_the_environment(
    sidecar: Sidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTSTATE_URL", sidecar.url)
    monkeypatch.setenv("AGENTSTATE_TOKEN", "t" * 20)
    with Client() as c:
        assert c.settings.url == sidecar.url
        assert c.settings.token == "t" * 20
        assert c.health()


# --- errors -----------------------------------------------------------------------------


def test_not_found_malformed_and_too_large(make_sidecar: object) -> None:
    sidecar: Sidecar = make_sidecar("sqlite", "--body-bytes-max", "2048")  # type: ignore[operator]
    with Client(sidecar.url) as c:
        with pytest.raises(NotFound) as nf:
            c.get_agent(uid("nobody"))
        assert nf.value.status == 404
        assert nf.value.code == "not_found"
        with pytest.raises(NotFound):
            c.get_transfer(uid("nope"))
        with pytest.raises(Malformed) as bad:
            c.save_agent("has a space", "idle")
        assert bad.value.status == 400
        with pytest.raises(Malformed):
            c.get_transfer("x" * 129)
        with pytest.raises(TooLarge) as big:
            c.save_agent(uid("a"), "idle", state_data={"blob": "x" * 4096})
        assert big.value.status == 413


def test_validation_failed_names_the_rule(make_sidecar: object, tmp_path: Path) -> None:
    config = tmp_path / "types.toml"
    example = (REPO / "protocol" / "examples" / "agent-types.toml").read_text()
    config.write_text("strict = true\n" + example)
    sidecar: Sidecar = make_sidecar("sqlite", "--config", str(config))  # type: ignore[operator]
    transport = CountingTransport()
    with Client(sidecar.url, transport=transport) as c:
        g = uid("g")
        c.save_agent(g, "idle", agent_type="greeter")
        cases = [
            (lambda: c.save_agent(uid("x"), "idle", agent_type="nobody"), "unknown_agent_type"),
            (lambda: c.save_agent(g, "nowhere", agent_type="greeter"), "unknown_state"),
            (lambda: c.transition(g, "done", "transferred"), "transition_not_allowed"),
            (lambda: c.transition(g, "greeting", "user_message"), "schema_mismatch"),
        ]
        for call, rule in cases:
            before = len(transport.requests)
            with pytest.raises(ValidationFailed) as e:
                call()
            assert (e.value.status, e.value.rule) == (422, rule), e.value.message
            assert len(transport.requests) == before + 1, "a 422 must not be retried"
        c.transition(g, "greeting", "user_message", state_data={"user_name": "ada"})
        assert c.get_agent(g).state_name == "greeting"


def test_conflicts_are_not_retried(sidecar: Sidecar) -> None:
    transport = CountingTransport()
    with Client(sidecar.url, transport=transport, max_retries=5) as c:
        a = uid("a")
        v = c.save_agent(a, "idle")
        before = len(transport.requests)
        with pytest.raises(VersionConflict):
            c.save_agent(a, "idle", if_match=v + 1)
        with pytest.raises(VersionConflict):
            c.save_agent(a, "idle", if_none_match=True)
        assert len(transport.requests) == before + 2
        # The sidecar saw each once too: its own request counter.
        assert '/v1/agents/{id}",status="409"} 2' in c.metrics()


class _ToLoopback(httpx.BaseTransport):
    """Connects to 127.0.0.1 whatever the URL names, keeping its Host header: a name
    that resolves to the sidecar without being one of its names."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(host="127.0.0.1")
        return self.inner.handle_request(request)


def test_a_host_name_the_sidecar_does_not_answer_to_is_forbidden(make_sidecar: object) -> None:
    for allowed, refused in (([], True), (["--allowed-hosts", "agentstate.example"], False)):
        sidecar: Sidecar = make_sidecar("sqlite", *allowed)  # type: ignore[operator]
        port = sidecar.url.rsplit(":", 1)[1]
        url = f"http://agentstate.example:{port}"
        with Client(url, transport=_ToLoopback(), max_retries=0) as c:
            if refused:
                with pytest.raises(Forbidden) as e:
                    c.save_agent(uid("a"), "idle")
                assert (e.value.status, e.value.code) == (403, "host_not_allowed")
                assert "--allowed-hosts" in e.value.message
            else:
                assert c.save_agent(uid("a"), "idle") == 1


def test_unauthorized_without_the_token(make_sidecar: object, tmp_path: Path) -> None:
    token = "s3cret-token-" + uuid.uuid4().hex
    token_file = tmp_path / "token"
    token_file.write_text(token)
    sidecar: Sidecar = make_sidecar("sqlite", "--auth-token-file", str(token_file))  # type: ignore[operator]
    with Client(sidecar.url) as anonymous:
        assert anonymous.ready()  # probes need no token
        with pytest.raises(Unauthorized) as e:
            anonymous.save_agent(uid("a"), "idle")
        assert e.value.status == 401
    with Client(sidecar.url, token="wrong-token-0123456789") as wrong, pytest.raises(Unauthorized):
        wrong.status()
    with Client(sidecar.url, token=token) as c:
        a = uid("a")
        c.save_agent(a, "idle")
        assert c.get_agent(a).state_name == "idle"


async def test_connection_failed_after_bounded_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens
    transport = CountingTransport()
    with Client(url, transport=transport, max_retries=2) as c:
        started = time.monotonic()
        with pytest.raises(ConnectionFailed) as e:
            c.get_agent("a")
        assert e.value.status == 0
        assert isinstance(e.value, AgentstateError)
        assert len(transport.requests) == 3
        assert time.monotonic() - started < 5
    atransport = AsyncCountingTransport()
    async with AsyncClient(url, transport=atransport, max_retries=1) as ac:
        with pytest.raises(ConnectionFailed):
            await ac.save_agent("a", "idle")
        assert len(atransport.requests) == 2


def test_unavailable_when_mongodb_is_down(binary: Path, tmp_path: Path) -> None:
    """An agent the sidecar has never seen needs the backend for its version: with MongoDB
    killed, writes to it get 503 + Retry-After, retried (with the wait) and then raised."""
    mongo = Mongo(force_local=True)  # its own server: this test kills it
    sidecar = Sidecar(
        tmp_path / "data", [*mongo.sidecar_args(), "--backend-timeout-ms", "500"]
    ).start()
    try:
        with Client(sidecar.url) as c:
            c.save_agent(uid("seen"), "idle")
        mongo.kill9()
        transport = CountingTransport()
        with Client(sidecar.url, transport=transport, max_retries=1) as c:
            started = time.monotonic()
            with pytest.raises(Unavailable) as e:
                c.save_agent(uid("unseen"), "idle")
            elapsed = time.monotonic() - started
        assert e.value.status == 503
        assert e.value.code == "unavailable"
        assert e.value.retry_after is not None
        assert e.value.retry_after >= 1
        assert len(transport.requests) == 2, "a 503 is retried"
        assert elapsed >= e.value.retry_after, "Retry-After is honoured"
    finally:
        sidecar.kill9()  # a graceful stop would wait out its grace period for MongoDB
        mongo.close()


# --- Unix socket ------------------------------------------------------------------------


async def test_unix_socket(make_sidecar: object, tmp_path: Path, monkeypatch) -> None:
    socket_path = tmp_path / "agentstate.sock"
    make_sidecar("sqlite", "--unix-socket", str(socket_path))  # type: ignore[operator]
    a = uid("u")
    with Client(uds=str(socket_path)) as c:
        c.save_agent(a, "idle", state_data={"via": "uds"})
    async with AsyncClient(uds=str(socket_path)) as ac:
        assert (await ac.get_agent(a)).state_data == {"via": "uds"}
    monkeypatch.setenv("AGENTSTATE_SOCKET", str(socket_path))
    with Client() as c:
        assert c.settings.uds == str(socket_path)
        assert c.get_agent(a).version == 1
