"""``AgentstateSessionService``: Google ADK sessions kept in the agentstate sidecar.

Where things live (agent ids: :mod:`agentstate_client.adk._ids`):

- a session is one agent: ``state_data`` holds its names, its own state, its
  ``last_update_time`` and how many events (and messages) it has; its conversation holds
  the events, each whole as ADK's JSON (:mod:`agentstate_client.adk._events`).
- ``user:`` state is in one agent per (app, user), with the ids of the user's sessions.
- ``app:`` state is in one agent per app, whose conversation lists the app's users
  (one message per user, appended once), for ``list_sessions`` without a user.
- ``temp:`` state is never stored: it lives in the in-memory session of the current
  invocation only, exactly as in ADK's own services.

States are stored as JSON text (``state`` in ``state_data``), not as sidecar documents:
a sidecar document cannot hold every JSON value (``$``-prefixed keys, integers beyond
64 bits, nesting beyond 64), and ADK state may.

Every change is one ``POST /v1/batch``, all or nothing: an event's messages, the
session's new state and counts, and the user's and app's new state are applied together
or not at all, across ``kill -9``. Each batch names the versions it read (``if_match``),
so a change never overwrites another made since its read; a conflict on the user or app
agent (another session of the same user or app wrote first) is re-read and retried, a
bounded number of times. A session carries the version it was read at, and an append to
a session stored since then is refused with ADK's ``StaleSessionError``, as ADK's
``DatabaseSessionService`` refuses it.

Limits: a user's session ids are one list in one document, so a user has at most about
100,000 sessions with UUID ids under the sidecar's default 4 MiB body; an event's JSON
is at most about that body size (it is cut into messages of ``message_bytes_max``, sent
in one batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events import Event
from google.adk.sessions import BaseSessionService, Session, State
from google.adk.sessions.base_session_service import GetSessionConfig, ListSessionsResponse
from pydantic_core import to_jsonable_python
from typing_extensions import override

from agentstate_client._api import PAGE_LIMIT_MAX
from agentstate_client.adk import _events, _ids
from agentstate_client.async_client import AsyncClient
from agentstate_client.errors import ConnectionFailed, NotFound, VersionConflict
from agentstate_client.models import BatchResult

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Sidecar state name of every agent this service writes (they take no transitions).
STATE_NAME = "active"
#: Tries of a change whose user or app agent another writer changed first.
CONFLICT_TRIES_MAX = 16
#: First and largest wait between those tries (full jitter).
CONFLICT_BACKOFF_S = 0.005
CONFLICT_BACKOFF_MAX_S = 0.25
#: Agents read at once by ``list_sessions``.
READS_IN_FLIGHT_MAX = 16

#: ADK's ``DatabaseSessionService`` wording, so that callers matching on it keep working.
STALE_SESSION_MESSAGE = (
    "The session has been modified in storage since it was loaded. "
    "Please reload the session before appending more events."
)

_KIND_APP = "adk_app"
_KIND_USER = "adk_user"
_KIND_SESSION = "adk_session"


@dataclass(frozen=True)
class _Read:
    """One agent as read: its version (for ``if_match``) and its ``state_data``."""

    agent_id: str
    version: int
    data: dict[str, Any]

    def state(self) -> dict[str, Any]:
        """The ADK state kept as JSON text."""
        text = self.data.get("state")
        return json.loads(text) if isinstance(text, str) and text else {}


class AgentstateSessionService(BaseSessionService):
    """ADK's ``BaseSessionService`` on the agentstate sidecar.

    ``Runner(agent=..., app_name=..., session_service=AgentstateSessionService())`` keeps
    every session, its events and its ``app:``/``user:`` state in the sidecar, where it
    survives a crash of the process (and of the sidecar: every acknowledged write is in
    its write-ahead log).

    Args:
        url, token, uds: Where the sidecar is (defaults from ``AGENTSTATE_URL``,
            ``AGENTSTATE_TOKEN``, ``AGENTSTATE_SOCKET``).
        client: An :class:`AsyncClient` to use instead (not closed by the service).
        durability: ``local`` / ``remote`` / ``memory`` for every write.
        message_bytes_max: The sidecar's ``--message-bytes-max``: an event's JSON is
            stored in chunks of at most this many bytes.
    """

    def __init__(
        self,
        *,
        url: str | None = None,
        token: str | None = None,
        uds: str | None = None,
        client: AsyncClient | None = None,
        durability: str | None = None,
        message_bytes_max: int = _events.MESSAGE_BYTES_MAX,
    ) -> None:
        if message_bytes_max < 4:
            raise ValueError("message_bytes_max must be at least 4 (one UTF-8 character)")
        self.durability = durability
        self.message_bytes_max = message_bytes_max
        self._owns_client = client is None
        self.client = client if client is not None else AsyncClient(url, token=token, uds=uds)
        #: One lock per session being appended to: appends through one service to one
        #: session go one at a time, as in ADK's database service (otherwise the second
        #: of two concurrent appends on one ``Session`` would find it stale). Entries go
        #: when no task holds their lock.
        self._append_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def close(self) -> None:
        """Close the client if the service made it."""
        if self._owns_client:
            await self.client.aclose()

    async def __aenter__(self) -> AgentstateSessionService:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # --- BaseSessionService ----------------------------------------------------------------

    @override
    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create a session; ``app:``/``user:`` keys of ``state`` go to the app's and the
        user's state, ``temp:`` keys are dropped. ``AlreadyExistsError`` if the id is taken.
        """
        session_id = session_id.strip() if session_id else None  # as InMemorySessionService
        session_id = session_id or str(uuid.uuid4())
        deltas = _split_delta(state or {})
        app_id = _ids.app_agent(app_name)
        session_agent_id = _ids.session_agent(app_name, user_id, session_id)

        async def attempt() -> Session:
            app, user = await asyncio.gather(
                self._ensure_app(app_name), self._ensure_user(app_name, user_id)
            )
            if session_id in user.data.get("sessions", []):
                raise AlreadyExistsError(f"Session with id {session_id} already exists.")
            app_state = app.state() | deltas["app"]
            user_state = user.state() | deltas["user"]
            now = time.time()
            operations: list[dict[str, Any]] = []
            if deltas["app"]:
                operations.append(self._put(app, state=app_state))
            if not user.data.get("listed"):
                # The user's first session: the app's user index gets the user, once (the
                # flag changes in the same batch, under the user agent's if_match).
                operations.append(
                    {
                        "op": "messages",
                        "agent_id": app_id,
                        "messages": [{"role": "user", "content": user_id}],
                    }
                )
            operations.append(
                self._put(
                    user,
                    state=user_state,
                    sessions=[*user.data.get("sessions", []), session_id],
                    listed=True,
                )
            )
            operations.append(
                {
                    "op": "put",
                    "agent_id": session_agent_id,
                    "state_name": STATE_NAME,
                    "state_data": {
                        "kind": _KIND_SESSION,
                        "app_name": app_name,
                        "user_id": user_id,
                        "session_id": session_id,
                        "state": _dump(deltas["session"]),
                        "last_update_time": now,
                        "event_count": 0,
                        "message_count": 0,
                        "last_event_id": None,
                    },
                }
            )
            results = await self.client.batch(operations, durability=self.durability)
            session = Session(
                id=session_id,
                app_name=app_name,
                user_id=user_id,
                state=_merge(app_state, user_state, deltas["session"]),
                last_update_time=now,
            )
            session._storage_update_marker = str(_version_of(results, session_agent_id))
            return session

        return await _retry_on_conflict(attempt)

    @override
    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        """The session with its merged state and its events (the latest
        ``config.num_recent_events``, those from ``config.after_timestamp`` on), or None.
        """
        session_id = session_id.strip() if session_id else session_id
        stored, app, user = await asyncio.gather(
            self._read_session(app_name, user_id, session_id),
            self._read(_ids.app_agent(app_name), _KIND_APP, app_name=app_name),
            self._read(
                _ids.user_agent(app_name, user_id), _KIND_USER, app_name=app_name, user_id=user_id
            ),
        )
        if stored is None:
            return None
        recent = config.num_recent_events if config else None
        try:
            events = await _events.read_events(
                self.client,
                stored.agent_id,
                event_count=int(stored.data.get("event_count", 0)),
                message_count=int(stored.data.get("message_count", 0)),
                recent=recent,
            )
        except NotFound:  # deleted since it was read
            return None
        if config and config.after_timestamp is not None:
            events = _from_timestamp(events, config.after_timestamp)
        session = Session(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=_merge(app.state() if app else {}, user.state() if user else {}, stored.state()),
            events=events,
            last_update_time=float(stored.data.get("last_update_time", 0.0)),
        )
        session._storage_update_marker = str(stored.version)
        return session

    @override
    async def list_sessions(
        self, *, app_name: str, user_id: str | None = None
    ) -> ListSessionsResponse:
        """The sessions of a user (or of every user of the app), without events, oldest
        update first."""
        app = await self._read(_ids.app_agent(app_name), _KIND_APP, app_name=app_name)
        if app is None:
            return ListSessionsResponse()
        users = [user_id] if user_id is not None else await self._app_users(app.agent_id)
        limit = asyncio.Semaphore(READS_IN_FLIGHT_MAX)

        async def bounded(read: Awaitable[T]) -> T:
            async with limit:
                return await read

        user_reads = await asyncio.gather(
            *(
                bounded(
                    self._read(
                        _ids.user_agent(app_name, u), _KIND_USER, app_name=app_name, user_id=u
                    )
                )
                for u in users
            )
        )
        wanted = [
            (u, sid)
            for u, read in zip(users, user_reads, strict=True)
            if read is not None
            for sid in read.data.get("sessions", [])
        ]
        session_reads = await asyncio.gather(
            *(bounded(self._read_session(app_name, u, sid)) for u, sid in wanted)
        )
        user_states = {
            u: read.state() for u, read in zip(users, user_reads, strict=True) if read is not None
        }
        app_state = app.state()
        sessions = [
            Session(
                id=sid,
                app_name=app_name,
                user_id=u,
                state=_merge(app_state, user_states[u], read.state()),
                last_update_time=float(read.data.get("last_update_time", 0.0)),
            )
            for (u, sid), read in zip(wanted, session_reads, strict=True)
            if read is not None  # deleted since the user's list was read
        ]
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    @override
    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session and its events (nothing if there is none); the app's and the
        user's state stay."""
        session_id = session_id.strip() if session_id else session_id

        async def attempt() -> None:
            user = await self._read(
                _ids.user_agent(app_name, user_id), _KIND_USER, app_name=app_name, user_id=user_id
            )
            sessions = user.data.get("sessions", []) if user else []
            if user is None or session_id not in sessions:
                return
            await self.client.batch(
                [
                    self._put(user, sessions=[s for s in sessions if s != session_id]),
                    {
                        "op": "delete",
                        "agent_id": _ids.session_agent(app_name, user_id, session_id),
                    },
                ],
                durability=self.durability,
            )

        await _retry_on_conflict(attempt)

    @override
    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """The user's state without the ``user:`` prefix ({} if none)."""
        user = await self._read(
            _ids.user_agent(app_name, user_id), _KIND_USER, app_name=app_name, user_id=user_id
        )
        return user.state() if user else {}

    @override
    async def append_event(self, session: Session, event: Event) -> Event:
        """Store ``event`` with its state delta, atomically, and apply it to ``session``.

        Raises ``SessionNotFoundError`` if the session is not stored, and
        ``StaleSessionError`` if it was stored since ``session`` was read. An event equal
        to the latest stored one is not stored again (a retry whose first try landed).
        """
        if event.partial:
            return event
        lock = self._append_locks.setdefault(
            _ids.session_agent(session.app_name, session.user_id, session.id), asyncio.Lock()
        )
        async with lock:
            # temp: keys reach the in-memory session (later agents of this invocation read
            # them), never the store: the event's delta loses them before it is written.
            self._apply_temp_state(session, event)
            event = self._trim_temp_delta_state(event)
            version = await self._store_event(session, event)
            session.last_update_time = event.timestamp
            session._storage_update_marker = str(version)
            if session.events and session.events[-1] == event:
                return event  # delivered again: the session has it already
            return self._commit_event_to_session(session, event)

    # --- storing an event --------------------------------------------------------------------

    async def _store_event(self, session: Session, event: Event) -> int:
        """One batch: the event's messages, the session's state and counts, and the
        user's and app's state. Returns the session agent's new version."""
        delta = event.actions.state_delta if event.actions and event.actions.state_delta else {}
        deltas = _split_delta(delta)
        app_name, user_id = session.app_name, session.user_id

        async def attempt() -> int:
            stored, app, user = await asyncio.gather(
                self._read_session(app_name, user_id, session.id),
                self._ensure_app(app_name) if deltas["app"] else _none(),
                self._ensure_user(app_name, user_id) if deltas["user"] else _none(),
            )
            if stored is None:
                raise SessionNotFoundError(f"Session {session.id} not found.")
            if stored.data.get("last_event_id") == event.id and await self._is_latest(
                stored, event
            ):
                # Delivered again (a retry after an answer was lost): stored once, as
                # InMemorySessionService does for an event equal to a stored one.
                return stored.version
            _check_not_stale(session, stored)
            event_count = int(stored.data.get("event_count", 0))
            message_count = int(stored.data.get("message_count", 0))
            messages = _events.event_messages(
                event,
                event_index=event_count + 1,
                first_message_index=message_count + 1,
                message_bytes_max=self.message_bytes_max,
            )
            operations = [
                self._put(
                    stored,
                    state=stored.state() | deltas["session"],
                    last_update_time=event.timestamp,
                    event_count=event_count + 1,
                    message_count=message_count + len(messages),
                    last_event_id=event.id,
                ),
                *_events.message_operations(stored.agent_id, messages),
            ]
            if user is not None:
                operations.append(self._put(user, state=user.state() | deltas["user"]))
            if app is not None:
                operations.append(self._put(app, state=app.state() | deltas["app"]))
            try:
                results = await self.client.batch(operations, durability=self.durability)
            except ConnectionFailed:
                # The batch may have been applied with its answer lost (a kill -9 of the
                # sidecar just after its WAL write): the stored session says which.
                after = await self._read_session(app_name, user_id, session.id)
                landed = (
                    after is not None
                    and after.data.get("last_event_id") == event.id
                    and stored.data.get("last_event_id") != event.id
                )
                if landed and after is not None:
                    return after.version
                raise
            return _version_of(results, stored.agent_id)

        return await _retry_on_conflict(attempt)

    async def _is_latest(self, stored: _Read, event: Event) -> bool:
        """Whether ``event`` equals the session's latest stored event."""
        latest = await _events.read_events(
            self.client,
            stored.agent_id,
            event_count=int(stored.data.get("event_count", 0)),
            message_count=int(stored.data.get("message_count", 0)),
            recent=1,
        )
        return latest == [event]

    # --- reading and writing agents --------------------------------------------------------

    async def _read(self, agent_id: str, kind: str, **names: str) -> _Read | None:
        """The agent, or None; an agent holding something else under this id (a hash
        collision, or another program's agent) is an error, never overwritten."""
        try:
            agent = await self.client.get_agent(agent_id)
        except NotFound:
            return None
        data = dict(agent.state_data) if isinstance(agent.state_data, dict) else {}
        if data.get("kind") != kind or any(data.get(k) != v for k, v in names.items()):
            raise ValueError(
                f"sidecar agent {agent_id} does not hold the {kind} of {names}; "
                f"it holds kind {data.get('kind')!r}"
            )
        return _Read(agent_id, agent.version, data)

    async def _read_session(self, app_name: str, user_id: str, session_id: str) -> _Read | None:
        return await self._read(
            _ids.session_agent(app_name, user_id, session_id),
            _KIND_SESSION,
            app_name=app_name,
            user_id=user_id,
            session_id=session_id,
        )

    async def _ensure(self, agent_id: str, kind: str, names: dict[str, str]) -> _Read:
        """The agent, created empty first if it does not exist. Created outside any batch
        because a batch cannot say "only if absent": two first writers must not both
        believe they created it."""
        for _ in range(CONFLICT_TRIES_MAX):
            found = await self._read(agent_id, kind, **names)
            if found is not None:
                return found
            with contextlib.suppress(VersionConflict):  # created meanwhile: read theirs
                await self.client.save_agent(
                    agent_id,
                    STATE_NAME,
                    state_data={"kind": kind, **names, "state": _dump({})},
                    if_none_match=True,
                    durability=self.durability,
                )
        raise VersionConflict(
            "version_conflict",
            f"{agent_id} was deleted each time it was created ({CONFLICT_TRIES_MAX} times)",
            409,
        )

    async def _ensure_app(self, app_name: str) -> _Read:
        return await self._ensure(_ids.app_agent(app_name), _KIND_APP, {"app_name": app_name})

    async def _ensure_user(self, app_name: str, user_id: str) -> _Read:
        return await self._ensure(
            _ids.user_agent(app_name, user_id),
            _KIND_USER,
            {"app_name": app_name, "user_id": user_id},
        )

    def _put(
        self, read: _Read, *, state: dict[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """A batch ``put`` of ``read``'s agent with fields replaced, only if it is still at
        the version read."""
        data = dict(read.data)
        data.update(fields)
        if state is not None:
            data["state"] = _dump(state)
        return {
            "op": "put",
            "agent_id": read.agent_id,
            "if_match": read.version,
            "state_name": STATE_NAME,
            "state_data": data,
        }

    async def _app_users(self, app_agent_id: str) -> list[str]:
        """The app's users, in the order of their first session."""
        users: dict[str, None] = {}
        after = 0
        while True:
            page = await self.client.list_messages(app_agent_id, after=after, limit=PAGE_LIMIT_MAX)
            users.update((m.content, None) for m in page)
            if len(page) < PAGE_LIMIT_MAX:
                return list(users)
            after = page[-1].seq


# --- helpers -----------------------------------------------------------------------------


def _split_delta(delta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A state (delta) by scope, as ADK's services split it: ``app:`` and ``user:`` keys
    without their prefix, ``temp:`` keys dropped, the rest the session's; values in their
    JSON form (what ADK's database service stores)."""
    out: dict[str, dict[str, Any]] = {"app": {}, "user": {}, "session": {}}
    for key, value in delta.items():
        if key.startswith(State.APP_PREFIX):
            out["app"][key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            out["user"][key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            out["session"][key] = value
    try:
        return to_jsonable_python(out)
    except Exception:  # as ADK's make_json_safe_state: keep the rest, say what was lost
        logger.warning(
            "session state has values with no JSON form (callables?): stored as their repr",
            exc_info=True,
        )
        return to_jsonable_python(out, serialize_unknown=True)


def _dump(state: dict[str, Any]) -> str:
    return json.dumps(state, ensure_ascii=False, separators=(",", ":"))


def _merge(
    app_state: dict[str, Any], user_state: dict[str, Any], session_state: dict[str, Any]
) -> dict[str, Any]:
    """The state a session shows: its own, with ``app:`` and ``user:`` keys added."""
    merged = dict(session_state)
    merged.update((State.APP_PREFIX + k, v) for k, v in app_state.items())
    merged.update((State.USER_PREFIX + k, v) for k, v in user_state.items())
    return merged


def _from_timestamp(events: list[Event], after_timestamp: float) -> list[Event]:
    """``InMemorySessionService``'s cut: the events after the last one older than
    ``after_timestamp``."""
    i = len(events) - 1
    while i >= 0 and events[i].timestamp >= after_timestamp:
        i -= 1
    return events[i + 1 :]


def _check_not_stale(session: Session, stored: _Read) -> None:
    """ADK's ``DatabaseSessionService`` check: a session read by this service carries the
    version it was read at, which must still be the stored one. One without (built by
    hand, or by another service) is stale only if the store has moved past it: a later
    update whose latest event is not the session's latest."""
    marker = session._storage_update_marker
    if marker is not None:
        if marker != str(stored.version):
            raise StaleSessionError(STALE_SESSION_MESSAGE)
        return
    if float(stored.data.get("last_update_time", 0.0)) > session.last_update_time:
        latest = session.events[-1].id if session.events else None
        if latest != stored.data.get("last_event_id"):
            raise StaleSessionError(STALE_SESSION_MESSAGE)


def _version_of(results: Iterable[BatchResult], agent_id: str) -> int:
    """The agent's version after the batch (its last operation's)."""
    versions = [r.version for r in results if r.agent_id == agent_id]
    return versions[-1]


async def _none() -> None:
    return None


async def _retry_on_conflict(attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()`` again after a ``VersionConflict`` (it re-reads what it writes; a
    stale session raises from inside it), at most ``CONFLICT_TRIES_MAX`` times."""
    for tries in range(1, CONFLICT_TRIES_MAX + 1):
        try:
            return await attempt()
        except VersionConflict:
            if tries == CONFLICT_TRIES_MAX:
                raise
            wait_s = min(CONFLICT_BACKOFF_MAX_S, CONFLICT_BACKOFF_S * 2**tries)
            await asyncio.sleep(random.uniform(0, wait_s))
    raise AssertionError("unreachable: the last try returns or raises")
