"""The web inspector (``/ui``) in a real browser, against the real sidecar binary.

Headless Chromium (Debian's, driven by Playwright, as in ``test_browser.py``) opens the
pages an operator uses, on state made by the Python client and by LangGraph:

- the example agents' conversation (``protocol/examples/agent-types.toml``): hostile
  message text shown as text, the transfer to the haiku agent in both timelines and in
  the transfers (lineage) page, no Content Security Policy violation;
- a refused transition: failed in the timeline with its rule and rejected payload, and the
  only agent the "failed transitions only" filter finds;
- a rollback through the dialog (preview diff, reason, confirm) with ``--ui-writes``, seen
  through the API; without the flag no write button is offered;
- a LangGraph thread forked in the thread page, then continued by LangGraph from the fork;
- 1,050 agents paged through with Next and Previous, and filters in a shared URL;
- another origin's page can neither write through ``/v1/inspector/...``, nor read the
  API, nor frame ``/ui``;
- the bearer token asked for, refused when wrong, and kept out of cookies and storage.

``AGENTSTATE_SCREENSHOTS=1`` also writes screenshots of the main pages to
``docs/inspector/``; without it the same pages are checked and nothing is written.
"""

from __future__ import annotations

import operator
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from playwright.sync_api import Browser, ConsoleMessage, Page, expect
from typing_extensions import TypedDict

from _browser import blank_pages, chromium
from _procs import REPO, Sidecar
from agentstate_client import Blob, Client, Typed, ValidationFailed
from agentstate_client.langgraph import AgentstateSaver

MakeSidecar = Callable[..., Sidecar]

CONFIG = REPO / "protocol" / "examples" / "agent-types.toml"
SHOTS_DIR = REPO / "docs" / "inspector"
SHOTS = os.environ.get("AGENTSTATE_SCREENSHOTS") == "1"
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 10_000
# The page size the agents list asks for: the UI sends no `limit` unless the URL has
# one, so the sidecar's default (100, `components.parameters.Limit` in openapi.json).
UI_PAGE_SIZE = 100

# Hostile text a message (or a context) may hold: shown as text, never run.
EVIL_IMG = "<img src=x onerror=window.__pwned=1>"
EVIL_SCRIPT = "<script>window.__pwned=2</script>"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- the browser ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=TIMEOUT_MS)
    with chromium() as b:
        yield b


# Records what the page's own Content Security Policy refused (before any page script).
RECORD_CSP = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""


@dataclass
class Ui:
    """A browser page on a sidecar's inspector, with what its console said."""

    page: Page
    base: str
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, route: str) -> None:
        """Open ``/ui#<route>`` (a new load only if the page is not on ``/ui`` yet)."""
        self.page.goto(f"{self.base}/ui#{route}")

    def rows(self, testid: str, attr: str) -> list[str]:
        """``attr`` of every element with ``data-testid=testid``, in document order."""
        return self.page.locator(f"[data-testid={testid}]").evaluate_all(
            f"rs => rs.map(r => r.getAttribute('{attr}'))"
        )

    def assert_clean(self) -> None:
        """No script error, and nothing refused by the Content Security Policy."""
        assert self.errors == [], self.errors
        csp = [m for m in self.console if "content security policy" in m.lower()]
        assert csp == [], csp
        assert self.page.evaluate("window.__cspViolations") == []


@pytest.fixture
def open_ui(browser: Browser) -> Iterator[Callable[[Sidecar], Ui]]:
    """``open_ui(sidecar)``: a fresh browser context (no cookies, no storage) on it."""
    contexts = []

    def make(sidecar: Sidecar) -> Ui:
        context = browser.new_context(viewport=VIEWPORT)
        contexts.append(context)
        context.add_init_script(RECORD_CSP)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        ui = Ui(page, sidecar.url)

        def on_console(m: ConsoleMessage) -> None:
            ui.console.append(f"{m.type}: {m.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda e: ui.errors.append(str(e)))
        return ui

    yield make
    for context in contexts:
        context.close()


def agent_ids(page: Page) -> list[str]:
    """The agent ids of the agents list's rows, in order."""
    return page.locator("[data-testid=agent-row]").evaluate_all(
        "rs => rs.map(r => r.getAttribute('data-agent-id'))"
    )


def example_sidecar(make_sidecar: MakeSidecar, *args: str, backend: str = "sqlite") -> Sidecar:
    """A sidecar with the example agent types, on the embedded store unless told."""
    return make_sidecar(backend, "--config", str(CONFIG), *args)


def transitions_json(sidecar: Sidecar, agent: str) -> list[dict[str, Any]]:
    """The transition log as the wire has it (with the operator's ``reason``)."""
    r = httpx.get(f"{sidecar.url}/v1/agents/{agent}/transitions", params={"limit": 1000})
    r.raise_for_status()
    return list(r.json()["transitions"])


# --- state ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    greeter: str
    haiku: str
    transfer: str
    messages: list[str]


def converse(c: Client) -> Conversation:
    """A greeter greets (hostile text among the messages) and hands over to a haiku
    agent, created by the transfer in its initial state and moved on ``request``."""
    greeter, haiku, transfer = uid("greeter"), uid("haiku"), uid("handoff")
    c.save_agent(greeter, "idle", agent_type="greeter", metadata={"owner": EVIL_IMG})
    c.transition(greeter, "greeting", "user_message", state_data={"user_name": "Ada"})
    messages = [
        "Hello! I would like a haiku, please.",
        "Nice to meet you, Ada. What should it be about?",
        EVIL_IMG,
        EVIL_SCRIPT,
    ]
    roles = ["user", "assistant", "user", "user"]
    c.append_messages(
        greeter, [{"role": r, "content": m} for r, m in zip(roles, messages, strict=True)]
    )
    c.transition(
        greeter, "greeting", "user_message", state_data={"user_name": "Ada", "topic": "autumn"}
    )
    c.create_transfer(
        transfer,
        greeter,
        haiku,
        "handoff",
        to_agent_type="haiku",
        to_trigger="request",
        context={"topic": "autumn", "note": EVIL_IMG},
    )
    return Conversation(greeter, haiku, transfer, messages)


class ChatState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    turns: Annotated[list[str], operator.add]


def chat_graph(saver: AgentstateSaver) -> Any:
    """One node, no LLM: answers the last message."""

    def answer(state: ChatState) -> dict[str, Any]:
        last = state["messages"][-1].content
        return {"messages": [AIMessage(content=f"answer to {last}")], "turns": [str(last)]}

    builder = StateGraph(ChatState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    return builder.compile(checkpointer=saver)


QUESTIONS = ["first question", "second question", "third question"]


def contents(values: dict[str, Any]) -> list[str]:
    return [str(m.content) for m in values.get("messages", [])]


def checkpoint_id(config: Any) -> str:
    return str(config["configurable"]["checkpoint_id"])


def run_three_steps(graph: Any, config: dict[str, Any]) -> str:
    """Three turns on the thread; returns the checkpoint ending the first one."""
    for q in QUESTIONS:
        graph.invoke({"messages": [HumanMessage(q)]}, config)
    history = list(graph.get_state_history(config))
    assert contents(history[0].values) == [x for q in QUESTIONS for x in (q, f"answer to {q}")]
    first = [
        s
        for s in history
        if contents(s.values) == ["first question", "answer to first question"] and not s.next
    ]
    assert len(first) == 1, [contents(s.values) for s in history]
    return checkpoint_id(first[0].config)


# --- 1. the example agents' conversation ------------------------------------------------


def test_conversation_shows_hostile_text_as_text_and_the_transfer(
    make_sidecar: MakeSidecar, open_ui: Callable[[Sidecar], Ui]
) -> None:
    sidecar = example_sidecar(make_sidecar)
    with Client(sidecar.url) as c:
        conv = converse(c)
        assert c.get_agent(conv.greeter).state_name == "transferring"
        assert c.get_agent(conv.haiku).state_name == "composing"
    ui = open_ui(sidecar)
    page = ui.page

    ui.open(f"/agent/{conv.greeter}")
    expect(page.locator("#summary-state")).to_have_text("transferring")
    expect(page.locator("#summary-type")).to_have_text("greeter")
    messages = page.locator("[data-testid=timeline-entry][data-kind=message]")
    expect(messages).to_have_count(4)
    # Compact view: each message's text, literally.
    expect(messages.locator(".content")).to_have_text(conv.messages)
    expect(page.get_by_text(EVIL_IMG, exact=True)).to_be_visible()
    expect(page.get_by_text(EVIL_SCRIPT, exact=True)).to_be_visible()
    out = page.locator("[data-testid=timeline-entry][data-kind=transfer]")
    expect(out).to_have_count(1)
    expect(out).to_have_attribute("data-direction", "out")
    expect(out.locator(".entry-line [data-testid=agent-link]")).to_have_text(conv.haiku)
    # Detailed view: the whole text of each message, in a <pre>.
    page.check("#view-detailed")
    expect(messages.locator("pre.message-text")).to_have_text(conv.messages)
    expect(page.locator("[data-testid=state-data]")).to_contain_text('"topic": "autumn"')
    # The hostile text made no element and ran nothing.
    assert page.locator("img").count() == 0
    assert page.evaluate("document.scripts.length") == 1  # app.js
    assert page.evaluate("typeof window.__pwned") == "undefined"

    # The haiku agent: the transfer in, the copied conversation, its own state.
    out.locator(".entry-line [data-testid=agent-link]").click()
    expect(page.locator("#summary-state")).to_have_text("composing")
    into = page.locator("[data-testid=timeline-entry][data-kind=transfer]")
    expect(into).to_have_attribute("data-direction", "in")
    expect(into.locator(".entry-line [data-testid=agent-link]")).to_have_text(conv.greeter)
    copied = page.locator("[data-testid=timeline-entry][data-kind=message] .content")
    expect(copied).to_have_text(conv.messages)

    # The lineage page: the transfer from the greeter to the haiku agent.
    ui.open(f"/transfers?agent={conv.greeter}")
    row = page.locator(f"[data-testid=transfer-row][data-transfer-id='{conv.transfer}']")
    expect(row).to_have_count(1)
    expect(page.locator("[data-testid=transfer-row]")).to_have_count(1)
    expect(row.locator(".lineage [data-testid=agent-link]")).to_have_text(
        [conv.greeter, conv.haiku]
    )
    expect(row).to_contain_text("handoff")
    expect(row).to_contain_text("(then request)")
    row.locator("summary").click()
    expect(row.locator("pre")).to_contain_text(EVIL_IMG)
    ui.open(f"/transfers?agent={conv.haiku}")
    expect(page.locator("[data-testid=transfer-row]")).to_have_count(1)
    expect(page.locator("[data-testid=transfer-row] .badge")).to_have_text("in")

    assert page.locator("img").count() == 0
    assert page.evaluate("typeof window.__pwned") == "undefined"
    ui.assert_clean()


# --- 2. a refused transition -------------------------------------------------------------


def test_a_refused_transition_is_shown_failed_and_found_by_the_filter(
    backend: str, make_sidecar: MakeSidecar, open_ui: Callable[[Sidecar], Ui]
) -> None:
    sidecar = example_sidecar(make_sidecar, backend=backend)
    prefix = uid("fail")
    bad, good, other = f"{prefix}-bad", f"{prefix}-good", f"{prefix}-other"
    payload = {"user_name": "Mallory", "note": EVIL_IMG}
    with Client(sidecar.url) as c:
        for agent in (bad, good, other):
            c.save_agent(agent, "idle", agent_type="greeter")
        c.transition(good, "greeting", "user_message", state_data={"user_name": "Ada"})
        with pytest.raises(ValidationFailed) as refused:
            c.transition(bad, "done", "teleport", state_data=payload)
        assert refused.value.rule == "transition_not_allowed"
        log = c.list_transitions(bad)
        assert [(t.success, t.trigger, t.state_data) for t in log] == [(False, "teleport", payload)]
        assert log[0].error is not None
        error = log[0].error
    assert error.startswith("transition_not_allowed")
    ui = open_ui(sidecar)
    page = ui.page

    ui.open(f"/agent/{bad}")
    entry = page.locator("[data-testid=timeline-entry][data-failed=true]")
    expect(entry).to_have_count(1)
    expect(page.locator("[data-testid=timeline-entry]")).to_have_count(1)
    expect(entry).to_have_attribute("data-kind", "transition")
    expect(entry.locator(".badge")).to_have_text("refused")
    expect(entry).to_contain_text("teleport")
    expect(entry.locator(".error-text")).to_contain_text("transition_not_allowed")
    expect(page.locator("#summary-state")).to_have_text("idle")
    page.check("#view-detailed")
    expect(entry).to_contain_text(error)  # the rule and the whole message
    rejected = entry.locator("[data-testid=rejected-payload]")
    expect(rejected).to_contain_text("Rejected payload")
    expect(rejected).to_contain_text("done")
    expect(rejected).to_contain_text("teleport")
    expect(rejected.locator("pre")).to_contain_text('"user_name": "Mallory"')
    expect(rejected.locator("pre")).to_contain_text(EVIL_IMG)
    # The "refused transitions" kind of entries shows it too; "messages" shows nothing.
    page.select_option("#timeline-kind", "failed")
    expect(page.locator("[data-testid=timeline-entry]")).to_have_count(1)
    page.select_option("#timeline-kind", "message")
    expect(page.locator("[data-testid=timeline-entry]")).to_have_count(0)

    # The agents list: three with the prefix; "failed transitions only" finds one.
    ui.open(f"/agents?prefix={prefix}")
    expect(page.locator("[data-testid=agent-row]")).to_have_count(3)
    page.check("#f-failed")
    page.click("#f-apply")
    expect(page.locator("[data-testid=agent-row]")).to_have_count(1)
    assert agent_ids(page) == [bad]
    query = parse_qs(urlsplit(page.url).fragment.split("?", 1)[1])
    assert query == {"prefix": [prefix], "failed": ["1"]}
    assert page.locator("img").count() == 0
    ui.assert_clean()


# --- 3. rollback through the UI, and no write buttons without --ui-writes ----------------


def test_rollback_through_the_dialog_is_logged_with_the_reason(
    make_sidecar: MakeSidecar, open_ui: Callable[[Sidecar], Ui]
) -> None:
    sidecar = example_sidecar(make_sidecar, "--ui-writes")
    agent = uid("greeter")
    before = {"user_name": "Ada"}
    with Client(sidecar.url) as c:
        c.save_agent(agent, "idle", agent_type="greeter")
        c.transition(agent, "greeting", "user_message", state_data=before)
        checkpoint = c.create_checkpoint(agent, label="greeted").checkpoint_id
        c.transition(
            agent, "greeting", "user_message", state_data={"user_name": "Eve", "mood": "odd"}
        )
        assert c.get_agent(agent).version == 3
    ui = open_ui(sidecar)
    page = ui.page

    ui.open(f"/agent/{agent}")
    expect(page.locator("#writes-note")).to_be_hidden()
    expect(page.locator("#summary-version")).to_have_text("3")
    # The compare panel: the checkpoint against the current state.
    expect(page.locator("#diff-a")).to_have_value(checkpoint)
    diff_rows = page.locator("#diff-output [data-testid=diff-row]")
    expect(diff_rows).to_have_count(2)
    assert ui.rows("diff-row", "data-path") == ["state_data.mood", "state_data.user_name"]

    page.click(f"[data-testid=rollback-button][data-checkpoint-id='{checkpoint}']")
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_have_attribute("data-action", "rollback")
    preview = page.locator("#dialog-preview [data-testid=diff-row]")
    expect(preview).to_have_count(2)
    expect(page.locator("#dialog-preview [data-op=removed]")).to_have_attribute(
        "data-path", "state_data.mood"
    )
    changed = page.locator("#dialog-preview [data-op=changed]")
    expect(changed).to_have_attribute("data-path", "state_data.user_name")
    expect(changed).to_contain_text('"Eve"')
    expect(changed).to_contain_text('"Ada"')
    expect(page.locator("#confirm-button")).to_be_disabled()  # no reason yet
    page.fill("#reason-input", "   ")
    expect(page.locator("#confirm-button")).to_be_disabled()  # a blank one is none
    reason = f"Eve's edit was a mistake ({uuid.uuid4().hex[:6]}) <b>!</b>"
    page.fill("#reason-input", reason)
    page.click("#confirm-button")
    expect(dialog).to_be_hidden()
    expect(page.locator("#notice")).to_contain_text(f"Rolled {agent} back")
    expect(page.locator("#summary-version")).to_have_text("4")
    rolled = page.locator("[data-testid=timeline-entry][data-rollback=true]")
    expect(rolled).to_have_count(1)
    expect(rolled.locator(".reason")).to_have_text(f" — reason: {reason}")

    with Client(sidecar.url) as c:
        now = c.get_agent(agent)
        assert (now.state_name, now.state_data, now.version) == ("greeting", before, 4)
    last = transitions_json(sidecar, agent)[-1]
    assert (last["trigger"], last["reason"], last["success"]) == ("rollback", reason, True)
    assert (last["to_state"], last["state_data"]) == ("greeting", before)
    ui.assert_clean()


def test_without_ui_writes_no_write_is_offered(
    make_sidecar: MakeSidecar, open_ui: Callable[[Sidecar], Ui]
) -> None:
    sidecar = example_sidecar(make_sidecar)
    agent, thread = uid("greeter"), uid("thread")
    with Client(sidecar.url) as c:
        c.save_agent(agent, "idle", agent_type="greeter")
        c.transition(agent, "greeting", "user_message", state_data={"user_name": "Ada"})
        checkpoint = c.create_checkpoint(agent, label="greeted").checkpoint_id
        pending = c.begin_transition(agent, "transferring", "handoff").pending_transition
        assert pending is not None
        version = c.get_agent(agent).version
        c.put_checkpoint(
            thread,
            "cp-1",
            Typed("json", b'{"v": 1}'),
            metadata={"step": 0, "source": "loop"},
            channel_versions={"notes": "1"},
            blobs=[Blob("notes", "1", Typed("json", b'["read me"]'))],
        )
    # The sidecar refuses these writes whatever the page shows.
    for path, body in (
        (f"/v1/inspector/agents/{agent}/rollback", {"checkpoint_id": checkpoint, "reason": "r"}),
        (f"/v1/inspector/agents/{agent}/transitions/{pending.id}/abort", {"reason": "r"}),
        (f"/v1/inspector/threads/{thread}/fork", {"checkpoint_id": "cp-1", "reason": "r"}),
    ):
        r = httpx.post(sidecar.url + path, json=body)
        assert (r.status_code, r.json()["error"]["code"]) == (403, "ui_writes_disabled"), path
    ui = open_ui(sidecar)
    page = ui.page

    ui.open(f"/agent/{agent}")
    note = page.locator("#writes-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("Read-only")
    expect(note).to_contain_text("--ui-writes")
    expect(page.locator("[data-testid=checkpoint-row]")).to_have_count(1)
    expect(page.locator("[data-testid=compare-button]")).to_have_count(1)
    expect(page.locator("#pending-transition")).to_be_visible()
    expect(page.locator("#pending-transition")).to_contain_text(pending.id)
    expect(page.locator("[data-testid=rollback-button]")).to_have_count(0)
    expect(page.locator("#abort-button")).to_have_count(0)

    ui.open(f"/thread/{thread}")
    expect(page.locator("[data-testid=channel-row][data-channel=notes]")).to_contain_text("read me")
    expect(note).to_be_visible()
    expect(page.locator("#fork-button")).to_have_count(0)
    with Client(sidecar.url) as c:
        after = c.get_agent(agent)
        assert after.version == version
        assert after.pending_transition == pending
        assert len(c.search_checkpoints(thread_id=thread)) == 1
    ui.assert_clean()


# --- 4. a LangGraph thread forked in the UI, continued by LangGraph ----------------------


def test_a_thread_forked_in_the_ui_is_continued_by_langgraph(
    make_sidecar: MakeSidecar, open_ui: Callable[[Sidecar], Ui]
) -> None:
    sidecar = example_sidecar(make_sidecar, "--ui-writes")
    thread = uid("chat")
    config: dict[str, Any] = {"configurable": {"thread_id": thread}}
    with AgentstateSaver(sidecar.url) as saver:
        graph = chat_graph(saver)
        first = run_three_steps(graph, config)
        count = len(list(graph.get_state_history(config)))
        assert count == 3 * len(QUESTIONS)  # input, its message, the answer; per turn

        ui = open_ui(sidecar)
        page = ui.page
        ui.open(f"/thread/{thread}")
        nodes = page.locator("[data-testid=checkpoint-node]")
        expect(nodes).to_have_count(count)
        latest = page.locator("[data-testid=channel-row][data-channel=messages]")
        expect(latest).to_contain_text('"content": "answer to third question"')

        page.click(f"[data-testid=checkpoint-node][data-checkpoint-id='{first}']")
        expect(
            page.locator(f"[data-testid=checkpoint-node][data-checkpoint-id='{first}']")
        ).to_have_attribute("aria-current", "true")
        expect(page.locator("#checkpoint-view h3").first).to_contain_text(first)
        # Channel values decoded from LangGraph's MessagePack: the messages as text.
        messages = page.locator("#channels-table [data-channel=messages]")
        expect(messages).to_contain_text('"content": "first question"')
        expect(messages).to_contain_text('"content": "answer to first question"')
        expect(messages).not_to_contain_text("second question")
        expect(messages.locator(".raw-bytes")).to_have_count(0)
        expect(page.locator("#channels-table [data-channel=turns]")).to_contain_text(
            '"first question"'
        )

        page.click("#fork-button")
        expect(page.locator("#confirm-dialog")).to_have_attribute("data-action", "fork")
        expect(page.locator("#dialog-preview")).to_contain_text("answer to first question")
        reason = "retry from the first answer"
        page.fill("#reason-input", reason)
        page.click("#confirm-button")
        expect(page.locator("#notice")).to_contain_text(f"Forked {thread} from {first}")
        expect(nodes).to_have_count(count + 1)
        fork = parse_qs(urlsplit(page.url).fragment.split("?", 1)[1])["checkpoint"][0]
        assert fork != first
        expect(page.locator(f"[data-checkpoint-id='{fork}'][aria-current=true]")).to_be_visible()

        # LangGraph goes on from the latest checkpoint of the thread: the fork.
        result = graph.invoke({"messages": [HumanMessage("after the fork")]}, config)
        assert contents(result) == [
            "first question",
            "answer to first question",
            "after the fork",
            "answer to after the fork",
        ]
        assert result["turns"] == ["first question", "after the fork"]
        history = list(graph.get_state_history(config))
        assert contents(history[0].values) == contents(result)
        forks = [s for s in history if s.metadata and s.metadata.get("source") == "fork"]
        assert len(forks) == 1
        (forked,) = forks
        assert checkpoint_id(forked.config) == fork
        assert forked.parent_config is not None
        assert checkpoint_id(forked.parent_config) == first
        assert forked.metadata is not None
        assert forked.metadata.get("fork_reason") == reason
        assert contents(forked.values) == ["first question", "answer to first question"]
        # The new turn's checkpoints descend from the fork.
        new = [s for s in history if s.parent_config and checkpoint_id(s.parent_config) == fork]
        assert len(new) == 1

    # The tree shows the first checkpoint as a fork point (the second turn, the fork).
    ui.open(f"/thread/{thread}")
    page.reload()
    point = page.locator(f"[data-testid=checkpoint-node][data-checkpoint-id='{first}']")
    expect(point).to_have_attribute("data-fork", "true")
    expect(nodes).to_have_count(len(history))
    expect(latest).to_contain_text('"content": "answer to after the fork"')
    ui.assert_clean()


# --- 5. lists paged past 1,000 agents ----------------------------------------------------


def test_agents_paged_past_a_thousand_and_filters_in_the_url(
    backend: str, make_sidecar: MakeSidecar, open_ui: Callable[[Sidecar], Ui]
) -> None:
    sidecar = example_sidecar(make_sidecar, backend=backend)
    prefix = uid("pg")
    ids = [f"{prefix}-{i:04d}" for i in range(1050)]
    busy = [a for i, a in enumerate(ids) if i % 20 == 0]
    with Client(sidecar.url) as c:
        ops = [
            {"op": "put", "agent_id": a, "state_name": "busy" if i % 20 == 0 else "idle"}
            for i, a in enumerate(ids)
        ]
        for i in range(0, len(ops), 100):
            c.batch(ops[i : i + 100])
        # Neighbours the prefix must leave out, before and after in id order.
        c.save_agent("pg-0-before", "busy")
        c.save_agent("pg-zzz-after", "busy")
    ui = open_ui(sidecar)
    page = ui.page
    asked: list[dict[str, list[str]]] = []

    def on_request(url: str) -> None:
        parts = urlsplit(url)
        if parts.path == "/v1/agents":
            asked.append(parse_qs(parts.query))

    page.on("request", lambda r: on_request(r.url))

    ui.open(f"/agents?prefix={prefix}")
    caption = page.locator("#agents-table caption")
    pages: list[list[str]] = []
    while True:
        n = len(pages) + 1
        expect(caption).to_contain_text(f"Agents, page {n} (")
        expect(page.locator("#page-number")).to_have_text(f"Page {n}")
        pages.append(agent_ids(page))
        if page.locator("#page-next").is_disabled():
            break
        assert n < 20, "Next never ends"
        page.click("#page-next")
    # The UI leaves the page size to the sidecar's default.
    assert asked, "the agents list was not requested"
    assert all("limit" not in q and q["prefix"] == [prefix] for q in asked), asked
    assert [len(p) for p in pages] == [UI_PAGE_SIZE] * 10 + [50]
    assert [a for p in pages for a in p] == ids

    page.click("#page-prev")
    expect(caption).to_contain_text("Agents, page 10 (")
    assert agent_ids(page) == pages[9]
    expect(page.locator("#page-next")).to_be_enabled()
    # The page is in the URL (the cursors): opened anew, it shows the same rows.
    shared = ui.page.context.new_page()
    shared.goto(page.url)
    expect(shared.locator("#agents-table caption")).to_contain_text("Agents, page 10 (")
    assert agent_ids(shared) == pages[9]
    shared.close()

    # A filter in the URL is applied on load, and shown in the form.
    fresh = ui.page.context.new_page()
    fresh.goto(f"{sidecar.url}/ui#/agents?state=busy&prefix={prefix}")
    expect(fresh.locator("#agents-table caption")).to_contain_text(
        f"Agents, page 1 ({len(busy)} shown)"
    )
    assert agent_ids(fresh) == busy
    expect(fresh.locator("#f-state")).to_have_value("busy")
    expect(fresh.locator("#f-prefix")).to_have_value(prefix)
    expect(fresh.locator("#page-next")).to_be_disabled()
    assert fresh.evaluate("window.__cspViolations") == []
    fresh.close()
    ui.assert_clean()


# --- 6. another origin's page against the inspector --------------------------------------


@pytest.fixture
def elsewhere() -> Iterator[int]:
    with blank_pages() as port:
        yield port


ATTACK = """
async ({base, writes}) => {
  const out = [];
  for (const w of writes) {
    const kinds = {
      'cors JSON': {mode: 'cors', headers: {'content-type': 'application/json'}},
      'cors text/plain': {mode: 'cors'},
      'no-cors': {mode: 'no-cors'},
    };
    for (const [kind, init] of Object.entries(kinds)) {
      try {
        const r = await fetch(base + w.path, {method: 'POST', body: w.body, ...init});
        out.push(`${kind} ${w.path}: ${r.type} ${r.status}`);
      } catch (e) {
        out.push(`${kind} ${w.path}: ${e.name}`);
      }
    }
  }
  for (const path of ['/v1/agents', '/v1/inspector', '/ui/app.js']) {
    try {
      const r = await fetch(base + path);
      out.push(`read ${path}: ${r.type} ${r.status} ${await r.text()}`);
    } catch (e) {
      out.push(`read ${path}: ${e.name}`);
    }
  }
  return out;
}
"""

FRAME = """
async (src) => {
  const frame = document.createElement('iframe');
  frame.src = src;
  const loaded = new Promise((resolve) => frame.addEventListener('load', resolve, {once: true}));
  document.body.append(frame);
  await loaded;
  let doc;
  try { doc = frame.contentDocument === null ? 'null' : 'readable'; } catch (e) { doc = e.name; }
  return doc;
}
"""


# What Chromium says when it refuses to frame a page.
FRAMING = ("frame-ancestors", "X-Frame-Options")


def eventually(page: Page, check: Callable[[], bool], what: object) -> None:
    """Wait for ``check()`` while Playwright delivers the page's events."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not check():
        assert time.monotonic() < deadline, what
        page.wait_for_timeout(50)


def refused_cross_origin(sidecar: Sidecar) -> float:
    key = 'agentstate_requests_refused_total{reason="cross_origin"} '
    for line in httpx.get(f"{sidecar.url}/metrics").text.splitlines():
        if line.startswith(key):
            return float(line[len(key) :])
    return 0.0


def inspector_targets(c: Client, agent: str, thread: str) -> tuple[Any, ...]:
    """What the inspector's writes would change, and the WAL's last LSN (any write)."""
    return (
        c.get_agent(agent),
        c.list_transitions(agent),
        c.search_checkpoints(thread_id=thread),
        c.status().wal_last_lsn,
    )


def test_another_origin_cannot_write_read_or_frame_the_inspector(
    make_sidecar: MakeSidecar, browser: Browser, elsewhere: int
) -> None:
    sidecar = example_sidecar(make_sidecar, "--ui-writes")
    agent, thread = uid("greeter"), uid("thread")
    with Client(sidecar.url) as c:
        c.save_agent(agent, "idle", agent_type="greeter")
        c.transition(agent, "greeting", "user_message", state_data={"user_name": "Ada"})
        checkpoint = c.create_checkpoint(agent).checkpoint_id
        c.transition(agent, "greeting", "user_message", state_data={"user_name": "Eve"})
        pending = c.begin_transition(agent, "transferring", "handoff").pending_transition
        assert pending is not None
        c.put_checkpoint(
            thread,
            "cp-1",
            Typed("json", b'{"v": 1}'),
            metadata={"step": 0},
            channel_versions={"notes": "1"},
            blobs=[Blob("notes", "1", Typed("json", b'["x"]'))],
        )

        before = inspector_targets(c, agent, thread)
    body = '{"checkpoint_id": "%s", "reason": "pwned"}'
    writes = [
        {"path": f"/v1/inspector/agents/{agent}/rollback", "body": body % checkpoint},
        {
            "path": f"/v1/inspector/agents/{agent}/transitions/{pending.id}/abort",
            "body": '{"reason": "pwned"}',
        },
        {"path": f"/v1/inspector/threads/{thread}/fork", "body": body % "cp-1"},
    ]
    refused_before = refused_cross_origin(sidecar)
    origins = [f"http://localhost:{elsewhere}", f"http://127.0.0.1:{elsewhere}"]
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        for origin in origins:
            page.goto(f"{origin}/attack")
            rows = page.evaluate(ATTACK, {"base": sidecar.url, "writes": writes})
            # Writes: a JSON one needs a preflight, refused; the others are sent and
            # answered 403 cross_origin, which the page cannot even read.
            for w in writes:
                assert f"cors JSON {w['path']}: TypeError" in rows, rows
                assert f"cors text/plain {w['path']}: TypeError" in rows, rows
                assert f"no-cors {w['path']}: opaque 0" in rows, rows
            # Reads: no CORS answer, so nothing.
            for path in ("/v1/agents", "/v1/inspector", "/ui/app.js"):
                assert f"read {path}: TypeError" in rows, rows

            # Framing /ui: refused by the browser (X-Frame-Options DENY and the CSP's
            # frame-ancestors 'none'); no inspector document is loaded in the frame.
            console.clear()
            assert page.evaluate(FRAME, f"{sidecar.url}/ui#/agent/{agent}") == "null"
            (frame,) = [f for f in page.frames if f != page.main_frame]
            # Playwright hears of the error page and of the console message a moment
            # after the frame's load event.
            eventually(page, lambda f=frame: f.url.startswith("chrome-error://"), frame)
            eventually(page, lambda: any(b in m for m in console for b in FRAMING), console)
            assert frame.locator("#view").count() == 0
            assert frame.evaluate("typeof document.getElementById") == "function"
            assert frame.evaluate("document.getElementById('view')") is None
    finally:
        context.close()

    sent = 2 * len(writes) * len(origins)  # the text/plain and no-cors POSTs
    deadline = time.monotonic() + 5
    while refused_cross_origin(sidecar) < refused_before + sent and time.monotonic() < deadline:
        time.sleep(0.05)
    assert refused_cross_origin(sidecar) - refused_before == sent
    with Client(sidecar.url) as c:
        assert inspector_targets(c, agent, thread) == before
    r = httpx.get(f"{sidecar.url}/ui")
    assert r.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


# --- 7. the bearer token -----------------------------------------------------------------


def test_the_token_is_asked_for_and_kept_in_the_page_only(
    make_sidecar: MakeSidecar, open_ui: Callable[[Sidecar], Ui], tmp_path: Path
) -> None:
    token = f"tok-{uuid.uuid4().hex}"
    token_file = tmp_path / "token"
    token_file.write_text(token)
    sidecar = example_sidecar(make_sidecar, "--auth-token-file", str(token_file))
    agent = uid("greeter")
    with Client(sidecar.url, token=token) as c:
        c.save_agent(agent, "idle", agent_type="greeter")
    assert httpx.get(f"{sidecar.url}/v1/agents").status_code == 401
    ui = open_ui(sidecar)
    page = ui.page

    response = page.goto(f"{sidecar.url}/ui")
    assert response is not None
    assert response.status == 200  # the page itself needs no token
    form = page.locator("#token-form")
    expect(form).to_be_visible()
    expect(page.locator("#token-error")).to_contain_text("asks for a bearer token")
    expect(page.locator("#token-input")).to_be_focused()
    expect(page.locator("[data-testid=agent-row]")).to_have_count(0)

    page.fill("#token-input", "wrong-" + token)
    page.click("#token-submit")
    expect(page.locator("#token-error")).to_contain_text("The token was refused")
    expect(form).to_be_visible()
    expect(page.locator("[data-testid=agent-row]")).to_have_count(0)

    page.fill("#token-input", token)
    page.click("#token-submit")
    expect(form).to_be_hidden()
    expect(page.locator(f"[data-testid=agent-row][data-agent-id='{agent}']")).to_be_visible()
    expect(page.locator("#app-version")).to_contain_text("agentstate")
    ui.open(f"/agent/{agent}")
    expect(page.locator("#summary-state")).to_have_text("idle")

    # Kept in a variable of the page's script only.
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("sessionStorage.length") == 0
    assert page.context.cookies() == []
    assert token not in page.url
    assert page.locator("#token-input").input_value() == ""
    assert token not in page.content()
    # A reload forgets it.
    page.reload()
    expect(form).to_be_visible()
    ui.assert_clean()


# --- screenshots of the main pages -------------------------------------------------------


def shot(page: Page, name: str, *, full_page: bool) -> None:
    """Write ``docs/inspector/<name>.png`` when ``AGENTSTATE_SCREENSHOTS=1``."""
    if SHOTS:
        SHOTS_DIR.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS_DIR / f"{name}.png"), full_page=full_page)


def test_main_pages_show_real_content(
    make_sidecar: MakeSidecar, open_ui: Callable[[Sidecar], Ui]
) -> None:
    """The pages of the screenshots, checked whether or not the screenshots are taken."""
    sidecar = example_sidecar(make_sidecar, "--ui-writes")
    with Client(sidecar.url) as c:
        conv = converse(c)
        c.save_agent("git-assistant-1", "idle", agent_type="git_assistant")
        c.transition("git-assistant-1", "assisting", "question")
        c.save_agent("greeter-2", "idle", agent_type="greeter")
        with pytest.raises(ValidationFailed):
            c.transition("greeter-2", "greeting", "user_message", state_data={"user_name": ""})
        haiku = conv.haiku
        c.append_messages(haiku, [{"role": "assistant", "content": "Maple leaves drifting / ..."}])
        c.create_checkpoint(haiku, label="first draft")
        c.transition(
            haiku,
            "reviewing",
            "composed",
            state_data={
                "topic": "autumn",
                "haiku": "Maple leaves drifting / on the cold, still pond water / "
                "the year lets go, slow",
            },
        )
        c.append_messages(haiku, [{"role": "user", "content": "Lovely, thank you."}])
    thread = uid("chat")
    with AgentstateSaver(sidecar.url) as saver:
        first = run_three_steps(chat_graph(saver), {"configurable": {"thread_id": thread}})
    fork = httpx.post(
        f"{sidecar.url}/v1/inspector/threads/{thread}/fork",
        json={"checkpoint_id": first, "reason": "try another second question"},
    )
    assert fork.status_code == 200, fork.text
    ui = open_ui(sidecar)
    page = ui.page

    ui.open("/agents")
    expect(page.locator("[data-testid=agent-row]").first).to_be_visible()
    # A thread is an agent too (in state "active"), so it is listed as well.
    assert agent_ids(page) == sorted(
        [conv.greeter, conv.haiku, "git-assistant-1", "greeter-2", thread]
    )
    expect(page.locator("#writes-note")).to_be_hidden()
    shot(page, "agents", full_page=False)

    ui.open(f"/agent/{haiku}")
    expect(page.locator("#summary-state")).to_have_text("reviewing")
    expect(page.locator("#diff-output [data-testid=diff-row]")).to_have_count(2)
    assert ui.rows("diff-row", "data-path") == ["state_data", "state_name"]
    expect(page.locator("[data-testid=timeline-entry]")).to_have_count(10)
    kinds = ui.rows("timeline-entry", "data-kind")
    want = ["message"] * 6 + ["transition"] * 2 + ["transfer", "checkpoint"]
    assert sorted(kinds) == sorted(want)
    expect(page.locator("[data-testid=rollback-button]")).to_have_count(1)
    shot(page, "agent", full_page=True)

    ui.open(f"/thread/{thread}?checkpoint={first}")
    expect(page.locator("[data-testid=checkpoint-node]")).to_have_count(10)
    expect(page.locator("[data-testid=checkpoint-node][data-fork=true]")).to_have_count(1)
    expect(page.locator("#channels-table [data-channel=messages]")).to_contain_text(
        "answer to first question"
    )
    shot(page, "thread", full_page=True)

    ui.open("/status")
    expect(page.locator("#status-backend")).to_have_text("sqlite")
    expect(page.locator("#status-ready")).to_have_text("yes")
    expect(page.locator("#status-wal-last-lsn")).not_to_have_text("—")
    shot(page, "durability", full_page=True)
    ui.assert_clean()
