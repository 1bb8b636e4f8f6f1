"""The sidecar beside a real browser: headless Chromium (Debian's, driven by Playwright)
makes the attacks a web page can make on a listener at 127.0.0.1.

- Pages from another site (``http://localhost:P``) and from the same site
  (``http://127.0.0.1:P``) send every write the OpenAPI description lists, in every form a
  page can send without a preflight (``no-cors`` fetches, ``text/plain`` bodies, forms,
  beacons) and with one (JSON). Nothing changes, and every request that reached the
  sidecar was refused as ``cross_origin``.
- Those pages cannot read any route: CORS fetches fail, ``no-cors`` ones are opaque.
- A DNS-rebinding page (a name the browser resolves to the sidecar, so the page is
  same-origin with it) reads only ``host_not_allowed`` refusals and changes nothing.
- Even the sidecar's own origin cannot post a body that does not say it is JSON: 415.
- Afterwards the SDK and curl work as before.

The guard is ``sidecar/src/api/guard.rs``; ``tests/browser_guard.rs`` makes the same
requests without a browser. Chromium comes from apt (``run-tests.sh`` installs it when
run as root); Playwright's own browser download is not used.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, Page

from _browser import blank_pages, chromium
from _procs import REPO, Sidecar
from agentstate_client import Blob, Client, NotFound, PendingWriteValue, Typed

UNSAFE = ("POST", "PUT", "PATCH", "DELETE")
ABSENT = "(not found)"
T = TypeVar("T")
SECRET = f"s3cret-{uuid.uuid4().hex}"

# The state the tests create, and what the attacks would create if they got through.
AGENT, OTHER, PENDING_COMPLETE, PENDING_ABORT = "a", "b", "p1", "p2"
# Its pending transition the inspector would abort.
PENDING_INSPECTOR = "p3"
THREAD, TRANSFER, RUN = "t", "tr", "run-1"
CREATED_AGENTS = ("pwned", "pwned-thread")
CREATED_TRANSFER = "pwned-transfer"

# Headless Chromium as root in a container cannot start its sandbox; the pages it runs
# are the tests' own.
CHROMIUM_ARGS = ["--host-resolver-rules=MAP rebind.test 127.0.0.1"]
REFUSALS_WAIT_S = 10.0


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium(CHROMIUM_ARGS) as b:
        yield b


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[int]:
    """The port of a web server serving pages that are not the sidecar's."""
    with blank_pages() as port:
        yield port


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def seeded(make_sidecar: Callable[..., Sidecar]) -> tuple[Sidecar, Seeded]:
    """A sidecar on the embedded store (the guard is before any backend) holding the
    state of ``seed``."""
    sidecar = make_sidecar("sqlite", "--ui-writes")
    with Client(sidecar.url) as c:
        return sidecar, seed(c)


# --- state ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    checkpoint_id: str
    tid_complete: str
    tid_abort: str
    tid_inspector: str


def seed(c: Client) -> Seeded:
    """Agents with a log, a conversation and a checkpoint, three with a pending transition,
    a transfer, and a thread with two checkpoints, blobs and writes."""
    c.save_agent(AGENT, "idle", state_data={"secret": SECRET}, metadata={"owner": "tests"})
    c.append_messages(
        AGENT,
        [
            {"role": "user", "content": f"my password is {SECRET}"},
            {"role": "assistant", "content": "noted"},
        ],
    )
    c.transition(AGENT, "working", "start", state_data={"secret": SECRET, "step": 1})
    checkpoint = c.create_checkpoint(AGENT, label="seed")
    c.transition(AGENT, "waiting", "ask", state_data={"secret": SECRET, "step": 2})
    c.save_agent(OTHER, "idle")
    c.create_transfer(TRANSFER, AGENT, OTHER, "handoff", context={"secret": SECRET})
    tids = []
    for agent in (PENDING_COMPLETE, PENDING_ABORT, PENDING_INSPECTOR):
        c.save_agent(agent, "idle")
        tids.append(c.begin_transition(agent, "done", "finish").pending_transition.id)
    c.put_checkpoint(
        THREAD,
        "cp-1",
        Typed("json", b'{"v": 1}'),
        metadata={"run_id": RUN, "secret": SECRET, "step": 0},
        channel_versions={"messages": "1"},
        blobs=[Blob("messages", "1", Typed("json", b'["hi"]'))],
    )
    c.put_checkpoint(
        THREAD,
        "cp-2",
        Typed("json", b'{"v": 2}'),
        parent_checkpoint_id="cp-1",
        metadata={"run_id": RUN, "secret": SECRET, "step": 1},
        channel_versions={"messages": "2"},
        blobs=[Blob("messages", "2", Typed("json", b'["hi", "there"]'))],
    )
    c.put_writes(THREAD, "cp-2", "task-1", [PendingWriteValue(0, "messages", Typed("json", b"1"))])
    return Seeded(checkpoint.checkpoint_id, *tids)


def read(lookup: Callable[[], T]) -> T | str:
    """What ``lookup`` reads, or ``ABSENT``."""
    try:
        return lookup()
    except NotFound:
        return ABSENT


def exists(lookup: Callable[[], object]) -> bool:
    return read(lookup) != ABSENT


def snapshot(c: Client) -> dict[str, object]:
    """Everything the attacks could change, read through the SDK (what is gone reads as
    ``ABSENT``, so a diff shows it); the WAL's last LSN moves with any write at all."""
    snap: dict[str, object] = {"wal_last_lsn": c.status().wal_last_lsn}
    for agent in (AGENT, OTHER, PENDING_COMPLETE, PENDING_ABORT, PENDING_INSPECTOR, THREAD):
        snap[agent] = (
            read(lambda a=agent: c.get_agent(a)),
            c.list_transitions(agent, limit=1000),
            c.list_messages(agent, limit=1000),
            c.list_checkpoints(agent),
        )
    snap["thread"] = (
        read(lambda: c.get_checkpoint(THREAD)),
        read(lambda: c.get_checkpoint(THREAD, checkpoint_id="cp-1")),
        c.search_checkpoints(thread_id=THREAD),
        read(lambda: c.delta_history(THREAD, ["messages"])),
    )
    snap["transfer"] = c.get_transfer(TRANSFER)
    snap["created"] = [
        *(exists(lambda a=agent: c.get_agent(a)) for agent in CREATED_AGENTS),
        exists(lambda: c.get_checkpoint("pwned-thread")),
        exists(lambda: c.get_transfer(CREATED_TRANSFER)),
    ]
    return snap


def assert_seeded(snap: dict[str, object]) -> None:
    """The snapshot holds real state, so that "unchanged" means something."""
    state, transitions, messages, checkpoints = snap[AGENT]  # type: ignore[misc]
    assert state.state_data["secret"] == SECRET
    assert [t.trigger for t in transitions] == ["start", "ask", "handoff"]
    assert [m.content for m in messages] == [f"my password is {SECRET}", "noted"]
    assert [cp.label for cp in checkpoints] == ["seed"]
    for agent in (PENDING_COMPLETE, PENDING_ABORT, PENDING_INSPECTOR):
        assert snap[agent][0].pending_transition is not None  # type: ignore[index]
    latest, _, found, _ = snap["thread"]  # type: ignore[misc]
    assert latest.checkpoint_id == "cp-2"
    assert [t.checkpoint_id for t in found] == ["cp-2", "cp-1"]
    assert len(latest.writes) == 1
    assert snap["created"] == [False] * 4
    assert snap["wal_last_lsn"] > 0


def refused(c: Client, reason: str) -> float:
    key = f'agentstate_requests_refused_total{{reason="{reason}"}} '
    for line in c.metrics().splitlines():
        if line.startswith(key):
            return float(line[len(key) :])
    return 0.0


def wait_for_refusals(c: Client, reason: str, at_least: float) -> float:
    """The counter once it reaches ``at_least`` (beacons and forms arrive on their own
    time), or as it is after ``REFUSALS_WAIT_S``."""
    deadline = time.monotonic() + REFUSALS_WAIT_S
    while (count := refused(c, reason)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


# --- the routes -------------------------------------------------------------------------


def described_routes() -> list[tuple[str, str]]:
    """Every (method, path template) of ``sidecar/openapi.json``."""
    doc = json.loads((REPO / "sidecar" / "openapi.json").read_text())
    routes = [
        (method.upper(), path)
        for path, ops in doc["paths"].items()
        for method in ops
        if method.upper() in ("GET", *UNSAFE)
    ]
    assert len(routes) > 30, routes
    return routes


def reads() -> list[str]:
    """Every GET path, ids filled with the seeded state's."""
    fill = {
        "/v1/transfers/{id}": TRANSFER,
        "/v1/threads/{id}/checkpoint": THREAD,
        "/v1/threads/{id}/history": THREAD,
        "/v1/threads/{id}/view": THREAD,
    }
    return [
        path.replace("{id}", fill.get(path, AGENT))
        for method, path in described_routes()
        if method == "GET"
    ]


def writes(s: Seeded) -> list[dict[str, Any]]:
    """Every unsafe route, with a body that would change the seeded state (or, for the
    searches, read it), in an order in which each succeeds when sent by curl."""
    thread = f"/v1/threads/{THREAD}"
    agent = f"/v1/agents/{AGENT}"
    blob = {"type": "json", "data": "WyJwd25lZCJd"}  # ["pwned"]
    table: dict[tuple[str, str], tuple[str, Any]] = {
        # The inspector's writes (the seeded sidecar runs with --ui-writes).
        ("POST", "/v1/inspector/agents/{id}/rollback"): (
            f"/v1/inspector/agents/{AGENT}/rollback",
            {"checkpoint_id": s.checkpoint_id, "reason": "pwned"},
        ),
        ("POST", "/v1/inspector/agents/{id}/transitions/{tid}/abort"): (
            f"/v1/inspector/agents/{PENDING_INSPECTOR}/transitions/{s.tid_inspector}/abort",
            {"reason": "pwned"},
        ),
        ("POST", "/v1/inspector/threads/{id}/fork"): (
            f"/v1/inspector/threads/{THREAD}/fork",
            {"checkpoint_id": "cp-1", "reason": "pwned"},
        ),
        ("PUT", "/v1/agents/{id}"): (agent, {"state_name": "pwned", "state_data": {"p": 1}}),
        ("POST", "/v1/agents/{id}/transitions"): (
            f"{agent}/transitions",
            {"to_state": "pwned", "trigger": "pwn"},
        ),
        ("POST", "/v1/agents/{id}/transitions/{tid}/complete"): (
            f"/v1/agents/{PENDING_COMPLETE}/transitions/{s.tid_complete}/complete",
            {"state_data": {"p": 1}},
        ),
        ("POST", "/v1/agents/{id}/transitions/{tid}/abort"): (
            f"/v1/agents/{PENDING_ABORT}/transitions/{s.tid_abort}/abort",
            {"error": "pwned"},
        ),
        ("POST", "/v1/agents/{id}/messages"): (
            f"{agent}/messages",
            {"messages": [{"role": "user", "content": "pwned"}]},
        ),
        ("DELETE", "/v1/agents/{id}/messages/last"): (f"{agent}/messages/last", None),
        ("DELETE", "/v1/agents/{id}/messages"): (f"{agent}/messages", None),
        ("POST", "/v1/agents/{id}/checkpoints"): (f"{agent}/checkpoints", {"label": "pwned"}),
        ("POST", "/v1/agents/{id}/rollback"): (
            f"{agent}/rollback",
            {"checkpoint_id": s.checkpoint_id},
        ),
        ("POST", "/v1/agents/{id}/replay"): (
            f"{agent}/replay",
            {"checkpoint_id": s.checkpoint_id, "apply": True},
        ),
        ("POST", "/v1/transfers"): (
            "/v1/transfers",
            {
                "transfer_id": CREATED_TRANSFER,
                "from_agent": AGENT,
                "to_agent": OTHER,
                "trigger": "pwn",
            },
        ),
        ("POST", "/v1/batch"): (
            "/v1/batch",
            {
                "operations": [
                    {"op": "put", "agent_id": "pwned", "state_name": "pwned"},
                    {"op": "put", "agent_id": OTHER, "state_name": "pwned"},
                ]
            },
        ),
        ("POST", "/v1/threads/{id}/checkpoints"): (
            f"{thread}/checkpoints",
            {
                "checkpoint_id": "cp-3",
                "parent_checkpoint_id": "cp-2",
                "checkpoint": blob,
                "metadata": {"run_id": "pwned"},
                "channel_versions": {"messages": "3"},
                "blobs": [{"channel": "messages", "version": "3", "value": blob}],
            },
        ),
        ("POST", "/v1/threads/{id}/writes"): (
            f"{thread}/writes",
            {
                "checkpoint_id": "cp-2",
                "task_id": "pwned",
                "writes": [{"idx": 0, "channel": "messages", "value": blob}],
            },
        ),
        ("POST", "/v1/threads/{id}/copy"): (
            f"{thread}/copy",
            {"target_thread_id": "pwned-thread"},
        ),
        ("POST", "/v1/threads/{id}/delta_history"): (
            f"{thread}/delta_history",
            {"channels": ["messages"]},
        ),
        ("POST", "/v1/checkpoints/search"): ("/v1/checkpoints/search", {"thread_id": THREAD}),
        ("POST", "/v1/checkpoints/delete_for_runs"): (
            "/v1/checkpoints/delete_for_runs",
            {"run_ids": [RUN]},
        ),
        ("POST", "/v1/checkpoints/prune"): (
            "/v1/checkpoints/prune",
            {"thread_ids": [THREAD], "strategy": "delete"},
        ),
        ("DELETE", "/v1/threads/{id}"): (thread, None),
        ("POST", "/v1/agents/{id}/transitions/begin"): (
            f"{agent}/transitions/begin",
            {"to_state": "pwned", "trigger": "pwn"},
        ),
        ("DELETE", "/v1/agents/{id}"): (agent, None),
    }
    described = {(m, p) for m, p in described_routes() if m in UNSAFE}
    assert set(table) == described, (
        "the unsafe routes of openapi.json and this table differ: "
        f"missing here {sorted(described - set(table))}, gone {sorted(set(table) - described)}"
    )
    return [
        {"method": method, "path": path, "body": None if body is None else json.dumps(body)}
        for (method, _), (path, body) in table.items()
    ]


# --- what the pages run -----------------------------------------------------------------

# Every way a page can send a write: fetches in every mode, a text/plain form (the
# classic CSRF, its body made to be JSON text) into an iframe, and a beacon.
SEND_WRITES = """
async ({base, writes}) => {
  const out = [];
  let sinks = 0;
  const formPost = (url, json) => new Promise((resolve) => {
    const sink = document.createElement('iframe');
    sink.name = `sink${sinks++}`;
    document.body.append(sink);
    sink.addEventListener('load', () => resolve('loaded'), {once: true});
    const form = document.createElement('form');
    form.method = 'POST';
    form.action = url;
    form.enctype = 'text/plain';
    form.target = sink.name;
    const field = document.createElement('input');
    field.type = 'hidden';
    field.name = json.slice(0, -1) + ',"_":"';
    field.value = '"}';
    form.append(field);
    document.body.append(form);
    form.submit();
  });
  for (const w of writes) {
    const url = base + w.path;
    const body = w.body ?? undefined;
    const kinds = {
      'no-cors Blob': {mode: 'no-cors', body: body && new Blob([body])},
      'no-cors text': {mode: 'no-cors', body},
      // no-cors drops a content-type no form could send: this goes as text/plain too.
      'no-cors claiming JSON': {
        mode: 'no-cors', body, headers: {'content-type': 'application/json'},
      },
      'cors text/plain': {mode: 'cors', body},
      'cors JSON': {mode: 'cors', body, headers: {'content-type': 'application/json'}},
    };
    for (const [kind, init] of Object.entries(kinds)) {
      const row = {kind, method: w.method, path: w.path};
      try {
        const r = await fetch(url, {method: w.method, ...init});
        row.outcome = `${r.type} ${r.status}`;
        row.text = await r.text();
      } catch (e) {
        row.outcome = e.name;
      }
      out.push(row);
    }
    if (w.method === 'POST') {
      out.push({kind: 'form', method: w.method, path: w.path,
                outcome: await formPost(url, body)});
      out.push({kind: 'beacon', method: w.method, path: w.path,
                outcome: navigator.sendBeacon(url, body) ? 'queued' : 'not queued'});
    }
  }
  return out;
}
"""

READ_ALL = """
async ({base, paths}) => {
  const out = [];
  for (const path of paths) {
    for (const mode of ['cors', 'no-cors']) {
      const row = {mode, path};
      try {
        const r = await fetch(base + path, {mode});
        row.outcome = `${r.type} ${r.status}`;
        row.text = await r.text();
      } catch (e) {
        row.outcome = e.name;
      }
      out.push(row);
    }
  }
  return out;
}
"""

# Same-origin requests: the page reads every answer.
SAME_ORIGIN = """
async ({reads, writes}) => {
  const out = [];
  const send = async (row, init) => {
    const r = await fetch(row.path, init);
    out.push({...row, status: r.status, text: await r.text()});
  };
  for (const path of reads) {
    await send({kind: 'read', method: 'GET', path}, {});
  }
  for (const w of writes) {
    const body = w.body ?? undefined;
    await send({kind: 'JSON', ...w}, {
      method: w.method, body, headers: {'content-type': 'application/json'},
    });
    await send({kind: 'text', ...w}, {method: w.method, body});
    await send({kind: 'Blob', ...w}, {method: w.method, body: body && new Blob([body])});
  }
  return out;
}
"""


def error_code(text: str) -> str | None:
    try:
        return str(json.loads(text)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None


# --- the SDK and curl after the attacks ---------------------------------------------------


def assert_sdk_and_curl_still_work(sidecar: Sidecar) -> None:
    with Client(sidecar.url) as c:
        version = c.save_agent("after-sdk", "fine", state_data={"ok": True})
        loaded = c.get_agent("after-sdk")
        assert (loaded.version, loaded.state_data) == (version, {"ok": True})
    curl = shutil.which("curl")
    if curl is None:
        pytest.fail("curl is missing: install it (apt-get install curl)", pytrace=False)
    done = subprocess.run(
        [
            curl,
            "-s",
            "-X",
            "PUT",
            f"{sidecar.url}/v1/agents/after-curl",
            "-H",
            "content-type: application/json",
            "-d",
            '{"state_name": "curled", "state_data": {"by": "curl"}}',
            "-w",
            "\n%{http_code}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done
    body, status = done.stdout.rsplit("\n", 1)
    assert (status, json.loads(body)) == ("200", {"version": 1}), done.stdout
    with Client(sidecar.url) as c:
        curled = c.get_agent("after-curl")
        assert (curled.state_name, curled.state_data) == ("curled", {"by": "curl"})


# --- the tests --------------------------------------------------------------------------

ORIGINS = {"cross-site": "http://localhost:{port}", "same-site": "http://127.0.0.1:{port}"}


@pytest.mark.parametrize("site", list(ORIGINS))
def test_a_page_from_another_origin_changes_nothing(
    seeded: tuple[Sidecar, Seeded], page: Page, elsewhere: int, site: str
) -> None:
    sidecar, s = seeded
    attacks = writes(s)
    with Client(sidecar.url) as c:
        before = snapshot(c)
        assert_seeded(before)
        refused_before = refused(c, "cross_origin")

    page.goto(ORIGINS[site].format(port=elsewhere) + "/attack")
    rows = page.evaluate(SEND_WRITES, {"base": sidecar.url, "writes": attacks})

    # What the page saw: no CORS answer ever, and no-cors ones opaque.
    for row in rows:
        what = f"{row['kind']} {row['method']} {row['path']}"
        if row["kind"].startswith("cors"):
            assert row["outcome"] == "TypeError", what
        elif row["kind"].startswith("no-cors"):
            # no-cors takes only GET, HEAD and POST: fetch throws for the others.
            want = "opaque 0" if row["method"] == "POST" else "TypeError"
            assert (row["outcome"], row.get("text", "")) == (want, ""), what
        else:
            assert row["outcome"] in ("loaded", "queued"), what
    # What the browser sends without asking first (anything else is a preflight, which
    # fails): per POST route, three no-cors fetches, a text/plain one, a form, a beacon.
    sent = 6 * sum(1 for w in attacks if w["method"] == "POST")
    assert sent > 0

    with Client(sidecar.url) as c:
        counted = wait_for_refusals(c, "cross_origin", refused_before + sent)
        assert snapshot(c) == before
        assert counted - refused_before == sent
    assert_sdk_and_curl_still_work(sidecar)


@pytest.mark.parametrize("site", list(ORIGINS))
def test_a_page_from_another_origin_reads_nothing(
    seeded: tuple[Sidecar, Seeded], page: Page, elsewhere: int, site: str
) -> None:
    sidecar, _ = seeded
    paths = reads()
    for must in (f"/v1/agents/{AGENT}", f"/v1/agents/{AGENT}/messages", "/v1/status"):
        assert must in paths
    # The answers hold the secret: it is the browser, told nothing by the sidecar,
    # that keeps them from the page.
    origin = ORIGINS[site].format(port=elsewhere)
    for path in paths:
        r = httpx.get(sidecar.url + path, headers={"origin": origin})
        assert r.status_code == 200, (path, r.text)
        assert not [h for h in r.headers if h.lower().startswith("access-control-")], path
    assert SECRET in httpx.get(f"{sidecar.url}/v1/agents/{AGENT}/messages").text
    preflight = httpx.request(
        "OPTIONS",
        f"{sidecar.url}/v1/agents/{AGENT}",
        headers={"origin": origin, "access-control-request-method": "PUT"},
    )
    assert not [h for h in preflight.headers if h.lower().startswith("access-control-")]

    page.goto(origin + "/read")
    rows = page.evaluate(READ_ALL, {"base": sidecar.url, "paths": paths})
    assert len(rows) == 2 * len(paths)
    for row in rows:
        want = ("TypeError", None) if row["mode"] == "cors" else ("opaque 0", "")
        assert (row["outcome"], row.get("text")) == want, row


def test_a_dns_rebinding_page_reads_and_changes_nothing(
    seeded: tuple[Sidecar, Seeded], page: Page
) -> None:
    sidecar, s = seeded
    paths = reads()
    attacks = writes(s)
    leaky = [p for p in paths if SECRET in httpx.get(sidecar.url + p).text]
    assert f"/v1/agents/{AGENT}" in leaky, leaky
    with Client(sidecar.url) as c:
        before = snapshot(c)
        assert_seeded(before)
        refused_before = refused(c, "host")

    # rebind.test resolves to 127.0.0.1: the page's origin is the sidecar's address
    # under the attacker's name, so its requests are same-origin, carry that Origin, and
    # (a name that is not potentially trustworthy) no Sec-Fetch-Site.
    port = sidecar.url.rsplit(":", 1)[1]
    landing = page.goto(f"http://rebind.test:{port}/healthz")
    assert landing is not None
    assert landing.status == 403
    assert "host_not_allowed" in page.content()
    rows = page.evaluate(SAME_ORIGIN, {"reads": paths, "writes": attacks})

    assert len(rows) == len(paths) + 3 * len(attacks)
    for row in rows:
        what = f"{row['kind']} {row['method']} {row['path']}: {row['text'][:200]}"
        assert (row["status"], error_code(row["text"])) == (403, "host_not_allowed"), what
        assert SECRET not in row["text"], what
        assert '"state_name"' not in row["text"], what

    with Client(sidecar.url) as c:
        # Each row, the landing page, and whatever the browser fetches for the page on
        # its own (Chromium asks for /favicon.ico).
        assert refused(c, "host") - refused_before >= len(rows) + 1
        assert snapshot(c) == before
    assert_sdk_and_curl_still_work(sidecar)


def test_the_sidecars_own_origin_cannot_post_a_body_that_is_not_json(
    seeded: tuple[Sidecar, Seeded], page: Page
) -> None:
    """A page on the sidecar's own origin (the plain-text answer of /healthz) passes the
    origin check (Sec-Fetch-Site: same-origin); a body without a JSON or MessagePack type
    is still refused, before anything is decoded. Its JSON requests (and bodiless
    DELETEs) would be carried out: the sidecar serves no page that could send them."""
    sidecar, s = seeded
    with_body = [w for w in writes(s) if w["body"] is not None]
    with Client(sidecar.url) as c:
        before = snapshot(c)
        assert_seeded(before)
        refused_before = refused(c, "media_type")

    page.goto(f"{sidecar.url}/healthz")
    sent = page.evaluate(
        """
        async (writes) => {
          const out = [];
          for (const w of writes) {
            for (const [kind, body] of [['text', w.body], ['Blob', new Blob([w.body])]]) {
              const r = await fetch(w.path, {method: w.method, body});
              out.push({kind, ...w, status: r.status, text: await r.text()});
            }
          }
          return out;
        }
        """,
        with_body,
    )
    assert len(sent) == 2 * len(with_body)
    for row in sent:
        what = f"{row['kind']} {row['method']} {row['path']}: {row['text'][:200]}"
        assert (row["status"], error_code(row["text"])) == (415, "unsupported_media_type"), what

    with Client(sidecar.url) as c:
        assert refused(c, "media_type") - refused_before == len(sent)
        assert snapshot(c) == before


def test_the_attacks_would_change_everything_if_they_got_through(
    seeded: tuple[Sidecar, Seeded],
) -> None:
    """The writes the pages send are ones the sidecar carries out for curl and the SDKs
    (no Origin, no Sec-Fetch-Site): a page that got one through would change state."""
    sidecar, s = seeded
    with Client(sidecar.url) as c:
        before = snapshot(c)
    with httpx.Client(base_url=sidecar.url) as http:
        for w in writes(s):
            r = http.request(
                w["method"],
                w["path"],
                content=w["body"],
                headers={"content-type": "application/json"} if w["body"] else {},
            )
            assert r.is_success, (w, r.status_code, r.text)
    with Client(sidecar.url) as c:
        assert c.status().wal_last_lsn > before["wal_last_lsn"]  # type: ignore[operator]
        assert not exists(lambda: c.get_agent(AGENT))
        assert not exists(lambda: c.get_checkpoint(THREAD))
        assert c.get_agent(OTHER).state_name == "pwned"
        assert c.get_agent(PENDING_COMPLETE).pending_transition is None
        assert c.get_agent(PENDING_ABORT).pending_transition is None
        assert c.get_agent(PENDING_INSPECTOR).pending_transition is None
        for agent in CREATED_AGENTS:
            assert exists(lambda a=agent: c.get_agent(a)), agent
        assert exists(lambda: c.get_transfer(CREATED_TRANSFER))
