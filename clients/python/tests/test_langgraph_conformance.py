"""LangGraph's own checkpointer conformance suite against the savers, on the real sidecar.

Every capability must be detected (the saver overrides it) and pass: the five base ones
(put, put_writes, get_tuple, list, delete_thread) and the three extended ones
(delete_for_runs, copy_thread, prune).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.report import CapabilityReport

from _procs import Sidecar
from agentstate_client import AsyncClient, Client
from agentstate_client.langgraph import AgentstateSaver, AsyncAgentstateSaver


def assert_full_conformance(report: CapabilityReport, capsys: pytest.CaptureFixture[str]) -> None:
    # Shown in the test command's output, not only on failure: the report is the evidence.
    with capsys.disabled():
        print()
        report.print_report()
    failures = [f for r in report.results.values() for f in r.failures]
    for failure in failures:
        print("FAILED", failure)
    expected = {c.value for c in ALL_CAPABILITIES}
    detected = {name for name, r in report.results.items() if r.detected}
    passed = {name for name, r in report.results.items() if r.passed is True}
    assert detected == expected, f"not detected: {sorted(expected - detected)}"
    assert passed == expected, f"failed: {sorted(expected - passed)}: {failures}"
    assert report.conformance_level() == "FULL"


async def test_async_saver_conforms(
    sidecar: Sidecar, backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    @checkpointer_test(name=f"AsyncAgentstateSaver[{backend}]")
    async def saver() -> AsyncIterator[AsyncAgentstateSaver]:
        async with AsyncAgentstateSaver(sidecar.url) as s:
            yield s

    assert_full_conformance(await validate(saver), capsys)


@pytest.mark.parametrize("codec", ["json"])
async def test_async_saver_conforms_over_json(
    make_sidecar: object, codec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Byte fields travel as base64 text in JSON: the same suite must pass."""
    sidecar: Sidecar = make_sidecar("sqlite")  # type: ignore[operator]

    @checkpointer_test(name=f"AsyncAgentstateSaver[sqlite, {codec}]")
    async def saver() -> AsyncIterator[AsyncAgentstateSaver]:
        async with AsyncAgentstateSaver(client=AsyncClient(sidecar.url, codec=codec)) as s:
            yield s
            await s.client.aclose()

    assert_full_conformance(await validate(saver), capsys)


async def test_blocking_saver_conforms(
    make_sidecar: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """The blocking saver (its async methods run the blocking ones in a thread)."""
    sidecar: Sidecar = make_sidecar("sqlite")  # type: ignore[operator]

    @checkpointer_test(name="AgentstateSaver[sqlite]")
    async def saver() -> AsyncIterator[AgentstateSaver]:
        with AgentstateSaver(client=Client(sidecar.url)) as s:
            yield s
            s.client.close()

    assert_full_conformance(await validate(saver), capsys)
