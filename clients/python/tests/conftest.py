"""Fixtures: a real sidecar per test, on the embedded store or on MongoDB.

``sidecar`` is parametrized over both backends; MongoDB is one server per session (each
sidecar gets its own database). When no MongoDB-wire server can be had, the Mongo tests
fail with the reason: they never skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from _procs import Mongo, Sidecar, sidecar_binary

BACKENDS = ["sqlite", "mongo"]


def pytest_configure(config: pytest.Config) -> None:
    # The client reads these; a developer's own settings must not leak into tests.
    for name in ("AGENTSTATE_URL", "AGENTSTATE_TOKEN", "AGENTSTATE_SOCKET"):
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def binary() -> Path:
    try:
        return sidecar_binary()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[Mongo]:
    try:
        server = Mongo()
    except Exception as e:  # no server can be had: a failure, not a skip
        pytest.fail(f"no MongoDB-wire server for the Mongo-backed tests: {e}", pytrace=False)
    yield server
    server.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_sidecar(binary: Path, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """``make_sidecar(backend, *extra_args)`` starts a sidecar, stopped after the test."""
    started: list[Sidecar] = []

    def make(backend: str, *args: str) -> Sidecar:
        flags = list(args)
        if backend == "mongo":
            flags += request.getfixturevalue("mongo_server").sidecar_args()
        sidecar = Sidecar(tmp_path / f"data{len(started)}", flags)
        started.append(sidecar)
        return sidecar.start()

    yield make
    for sidecar in started:
        sidecar.stop()


@pytest.fixture
def sidecar(backend: str, make_sidecar: object) -> Sidecar:
    """A running sidecar on ``backend``."""
    return make_sidecar(backend)  # type: ignore[operator]
