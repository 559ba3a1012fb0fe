"""A loopback HTTP server that answers from a script, for the notification service and
customer webhooks; the invoicing rows helper."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import free_port
from tests.invoicing.conftest import billing  # noqa: F401  (the invoicing rows helper)


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedServer:
    """Answers each request with the next status of `script` (the last one repeats)."""

    url: str
    script: list[int] = field(default_factory=lambda: [200])
    requests: list[Request] = field(default_factory=list)

    def answer(self, *statuses: int) -> None:
        self.script = list(statuses)
        self.requests.clear()


@pytest.fixture
def http_server() -> Iterator[ScriptedServer]:
    port = free_port()
    server_state = ScriptedServer(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            server_state.requests.append(Request(self.path, dict(self.headers), body))
            index = min(len(server_state.requests), len(server_state.script)) - 1
            status = server_state.script[index]
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
