"""Real processes for the tests: the agentstate binary and a MongoDB-wire server.

Never mocks: every test talks to ``target/debug/agentstate`` (or ``AGENTSTATE_BIN``), on
its embedded SQLite store or on MongoDB (``MONGODB_URI``, else SecantusDB from PyPI,
installed on first use into ``<repo>/.venv-test`` exactly as the Rust tests do).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[3]
#: The pinned SecantusDB, shared by every harness (tests/secantusdb.txt).
SECANTUS_REQUIREMENT = next(
    line.strip()
    for line in (REPO / "tests" / "secantusdb.txt").read_text().splitlines()
    if line.strip() and not line.lstrip().startswith("#")
)
READY_TIMEOUT_S = 30.0
MONGO_LISTEN_TIMEOUT_S = 60.0


def sidecar_binary() -> Path:
    path = Path(os.environ.get("AGENTSTATE_BIN") or REPO / "target" / "debug" / "agentstate")
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"the agentstate binary is missing at {path}: build it with "
            "`cargo build -p agentstate` in the repository root, or set AGENTSTATE_BIN"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return True
        time.sleep(0.05)
    return False


class Sidecar:
    """One ``agentstate serve`` on a free loopback port and its own data dir; it can be
    killed with SIGKILL and started again on the same port and data dir."""

    def __init__(self, data_dir: Path, args: list[str] | None = None) -> None:
        self.binary = sidecar_binary()
        self.data_dir = data_dir
        self.args = list(args or [])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sidecar:
        assert self.proc is None, "already running"
        log = self.log_path.open("ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTSTATE_")}
        env.setdefault("RUST_LOG", "warn")
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "serve",
                "--listen",
                f"127.0.0.1:{self.port}",
                "--data-dir",
                str(self.data_dir),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
        )
        log.close()
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"agentstate exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"agentstate not ready within {READY_TIMEOUT_S} s:\n{self.log()}")

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        """``kill -9``, then start again on the same port and data dir."""
        self.kill9()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill9()
            self.proc = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"


def secantusd() -> Path:
    """``secantusd-py``, installing SecantusDB into ``<repo>/.venv-test`` on first use.
    A lock file makes one of several concurrent installers do it (as the Rust tests do)."""
    venv = REPO / ".venv-test"
    binary = venv / "bin" / "secantusd-py"
    if binary.exists():
        return binary
    venv.mkdir(parents=True, exist_ok=True)
    with (REPO / ".venv-test.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            python = shutil.which("python3") or "python3"
            ok = (
                subprocess.run([python, "-m", "venv", str(venv)], check=False).returncode == 0
                and subprocess.run(
                    [
                        str(venv / "bin" / "pip"),
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        SECANTUS_REQUIREMENT,
                    ],
                    check=False,
                ).returncode
                == 0
            )
            if not ok or not binary.exists():
                raise RuntimeError(
                    "MongoDB-backed tests need a MongoDB-wire server: set MONGODB_URI to a "
                    "running mongod, or let the tests install SecantusDB: python3 -m venv "
                    f".venv-test && .venv-test/bin/pip install '{SECANTUS_REQUIREMENT}'"
                )
    return binary


class Mongo:
    """A MongoDB-wire server: ``MONGODB_URI`` if set (``local=False``), else SecantusDB
    started here on a free port (which can then be killed and restarted)."""

    def __init__(self, *, force_local: bool = False) -> None:
        uri = os.environ.get("MONGODB_URI", "")
        self.proc: subprocess.Popen[bytes] | None = None
        if uri and not force_local:
            self.uri = uri
            self.local = False
            return
        self.local = True
        self.port = free_port()
        self.storage = Path(tempfile.mkdtemp(prefix="agentstate-py-secantus-"))
        self.log_path = self.storage.with_suffix(".log")
        self.uri = f"mongodb://127.0.0.1:{self.port}/?directConnection=true"
        self.spawn()

    def spawn(self) -> None:
        binary = secantusd()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                str(self.storage),
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        if not wait_for_port(self.port, MONGO_LISTEN_TIMEOUT_S):
            self.kill9()
            raise RuntimeError(
                f"SecantusDB did not listen on {self.port} within {MONGO_LISTEN_TIMEOUT_S} s: "
                + self.log_path.read_text(errors="replace")[-2000:]
            )

    def sidecar_args(self) -> list[str]:
        """Flags pointing a sidecar at this server, with a database of its own."""
        database = f"agentstate_py_{uuid.uuid4().hex[:12]}"
        return ["--mongodb-uri", self.uri, "--database", database]

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def close(self) -> None:
        self.kill9()
        if self.local:
            shutil.rmtree(self.storage, ignore_errors=True)
