"""The OpenAPI description (sidecar/openapi.json) against the real binary.

- It is served at /v1/openapi.json as it is in the repository, and is a valid OpenAPI 3.1
  document.
- Every route it names is answered, and the server has no other: an undescribed path is
  404 and an undescribed method 405 with ``Allow`` listing the described ones. (The Rust
  unit test in sidecar/src/api/openapi.rs checks the same against the route table.)
- Schemathesis, seeded and bounded in time, finds nothing: no 5xx, no connection dropped,
  every response conforms to the description (status, content type, headers, body), valid
  requests are accepted and invalid ones refused; the sidecar is alive and ready after it.
  ``AGENTSTATE_SCHEMATHESIS_SEED`` and ``AGENTSTATE_SCHEMATHESIS_SECS`` replay a seed or
  change the time budget.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from _procs import REPO

DESCRIPTION = REPO / "sidecar" / "openapi.json"
HERE = Path(__file__).resolve().parent
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
SEED = int(os.environ.get("AGENTSTATE_SCHEMATHESIS_SEED", "20261125"))
# The whole run's budget: examples, coverage, then fuzzing and stateful sequences until
# it is spent. About two minutes on a 2-core machine, well inside pytest's 300 s timeout.
SECS = int(os.environ.get("AGENTSTATE_SCHEMATHESIS_SECS", "100"))


@pytest.fixture
def sidecar(make_sidecar):
    """A sidecar on the embedded store (the description does not depend on the backend),
    its inspector's writes on so that they are exercised too."""
    return make_sidecar("sqlite", "--ui-writes")


def described() -> dict:
    return json.loads(DESCRIPTION.read_text())


def test_the_served_description_is_the_repository_file_and_valid_openapi_3_1(sidecar):
    resp = httpx.get(f"{sidecar.url}/v1/openapi.json")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.content == DESCRIPTION.read_bytes()
    spec = resp.json()
    assert spec["openapi"] == "3.1.0"
    validate(spec, cls=OpenAPIV31SpecValidator)


def _instance(template: str) -> str:
    return template.replace("{id}", "a1").replace("{tid}", "t1")


def test_every_described_route_is_answered_and_no_other(sidecar):
    spec = described()
    with httpx.Client(base_url=sidecar.url) as http:
        for template, item in spec["paths"].items():
            methods = {m.upper() for m in item if m in METHODS}
            path = _instance(template)
            for method in sorted(methods):
                resp = http.request(method, path)
                assert resp.status_code != 405, f"{method} {template}: {resp.text}"
                assert "no such endpoint" not in resp.text, f"{method} {template}"
            for method in sorted({"GET", "PUT", "POST", "DELETE", "PATCH"} - methods):
                resp = http.request(method, path)
                assert resp.status_code == 405, f"{method} {template}: {resp.status_code}"
                allow = {m.strip() for m in resp.headers["allow"].split(",")}
                assert allow == methods, f"{method} {template}: Allow {allow}"
                assert resp.json()["error"]["code"] == "method_not_allowed"
        for path in ("/", "/v1", "/v1/agent", "/v1/agents/a1/nope", "/v2/agents/a1", "/ui/x"):
            resp = http.get(path)
            assert resp.status_code == 404, path
            assert resp.json()["error"]["code"] == "not_found", path


def test_refusals_no_schema_can_state(sidecar):
    """What the description says in words only (see schemathesis_hooks.before_call)."""
    with httpx.Client(base_url=sidecar.url) as http:
        http.put("/v1/agents/a1", json={"state_name": "idle"}).raise_for_status()
        resp = http.post(
            "/v1/transfers",
            json={"transfer_id": "x1", "from_agent": "a1", "to_agent": "a1", "trigger": "go"},
        )
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["code"] == "validation_failed"
        resp = http.post("/v1/threads/a1/copy", json={"target_thread_id": "a1"})
        assert resp.status_code == 422, resp.text
        resp = http.post(
            "/v1/transfers",
            json={
                "transfer_id": "x2",
                "from_agent": "a1",
                "to_agent": "new",
                "trigger": "go",
                "to_agent_type": "undeclared",
            },
        )
        assert resp.status_code == 422, resp.text
        assert "unknown_agent_type" in resp.json()["error"]["message"]


def test_schemathesis_finds_nothing(sidecar, tmp_path):
    command = [
        str(Path(sys.executable).with_name("schemathesis")),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "run",
        f"{sidecar.url}/v1/openapi.json",
        "--checks",
        "all",
        "--seed",
        str(SEED),
        "--max-time",
        str(SECS),
        # One worker: the machine has two cores and the sidecar needs one; and CPython
        # 3.11's ast module, which Hypothesis uses, is not safe across threads.
        "--workers",
        "1",
        "--request-timeout",
        "10",
        # Nothing is kept between runs: a run is its seed.
        "--generation-database",
        "none",
        "--no-color",
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    started = time.monotonic()
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=SECS + 150
    )
    took = time.monotonic() - started
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    summary = output[output.rfind("SUMMARY") :] if "SUMMARY" in output else output[-3000:]
    print(f"schemathesis: seed {SEED}, {took:.0f} s, exit {run.returncode}\n{summary}")
    assert run.returncode == 0, (
        f"Schemathesis found problems (seed {SEED}; replay with "
        f"AGENTSTATE_SCHEMATHESIS_SEED={SEED}):\n{output[-20000:]}"
    )
    # Alive and ready afterwards.
    assert sidecar.proc is not None
    assert sidecar.proc.poll() is None, sidecar.log()
    assert httpx.get(f"{sidecar.url}/readyz").status_code == 200
