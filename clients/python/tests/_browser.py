"""What the browser tests share: Debian's Chromium launched by Playwright (never
Playwright's own download), and a web server for pages that are not the sidecar's."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright


@contextmanager
def chromium(args: Sequence[str] = ()) -> Iterator[Browser]:
    """Headless Chromium; a test fails (never skips) where it is missing. As root in a
    container Chromium cannot start its sandbox; the pages it runs are the tests' own and
    the sidecar's."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail(
            "Chromium is missing: install Debian's chromium (`apt-get install chromium`; "
            "clients/python/run-tests.sh does it when run as root)",
            pytrace=False,
        )
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=executable,
            args=["--no-sandbox", *args],
            chromium_sandbox=False,
        )
        yield browser
        browser.close()


class _BlankPage(BaseHTTPRequestHandler):
    """Another site: an empty page at every path."""

    def do_GET(self) -> None:
        body = b"<!doctype html><title>elsewhere</title><body></body>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def blank_pages() -> Iterator[int]:
    """The port of a web server serving empty pages that are not the sidecar's."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BlankPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()
