"""A loopback proxy in front of localstripe: Stripe's idempotency, plus injected faults.

localstripe ignores `Idempotency-Key` (a retried POST creates a second object), so the
SDK's own network retries would behave differently than against Stripe. This proxy adds
Stripe's documented semantics: the first response to a POST with a key is stored (24 h)
and replayed for every later request with that key; the same key with other parameters
answers 400 `idempotency_error`; a key whose first request is still running answers 409.
Faults are injected per request, either queued (`fail_next`) or at random (`fault_rate`):

- `500`: answer 500 without forwarding (nothing happened; the SDK retries).
- `429`: answer 429 with `Retry-After` without forwarding (the product backs off).
- `timeout`: forward, store Stripe's answer, then hold the connection past the client's
  timeout (the request *was* processed; the SDK's retry gets the stored answer).
- `decline:<decline_code>`: answer 402 `card_error` with that decline code, as Stripe
  does for e.g. `insufficient_funds`, which localstripe cannot produce.

Only loopback: it listens on 127.0.0.1 and forwards to the URL it is given.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

KEY_TTL_SECONDS = 24 * 3600


class _QuietServer(ThreadingHTTPServer):
    """A client that gave up on a held connection (the timeout fault) is expected."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


@dataclass
class _Stored:
    fingerprint: str
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    done: threading.Event = field(default_factory=threading.Event)
    at: float = field(default_factory=time.monotonic)


@dataclass
class Fault:
    kind: str
    path_prefix: str = "/"
    method: str = "POST"


class StripeProxy:
    def __init__(
        self, upstream: str, *, hang_seconds: float = 3.0, fault_rate: float = 0.0, seed: int = 7
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.hang_seconds = hang_seconds
        self.fault_rate = fault_rate
        self.random = random.Random(seed)
        self.keys: dict[str, _Stored] = {}
        self.queued: list[Fault] = []
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.client = httpx.Client(timeout=30.0, trust_env=False)
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail_next(self, kind: str, path_prefix: str = "/", method: str = "POST") -> None:
        with self.lock:
            self.queued.append(Fault(kind, path_prefix, method))

    def _take_fault(self, method: str, path: str) -> str | None:
        with self.lock:
            for fault in self.queued:
                if fault.method == method and path.startswith(fault.path_prefix):
                    self.queued.remove(fault)
                    return fault.kind
            if self.fault_rate and method == "POST" and self.random.random() < self.fault_rate:
                return self.random.choice(["500", "timeout"])
        return None

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> httpx.Response:
        keep = {
            k: v
            for k, v in headers.items()
            if k.lower() in ("authorization", "content-type", "stripe-version")
        }
        return self.client.request(method, self.upstream + path, headers=keep, content=body)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    if key.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _error(self, status: int, kind: str, message: str, **extra: str) -> None:
                body = json.dumps({"error": {"type": kind, "message": message, **extra}}).encode()
                headers = {"Content-Type": "application/json"}
                if status == 429:
                    headers["Retry-After"] = "1"
                self._send(status, body, headers)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = dict(self.headers.items())
                proxy.counts[f"{method} {self.path.split('?')[0]}"] += 1
                fault = proxy._take_fault(method, self.path)
                if fault == "500":
                    proxy.counts["fault:500"] += 1
                    return self._error(500, "api_error", "injected 500")
                if fault == "429":
                    proxy.counts["fault:429"] += 1
                    return self._error(
                        429, "invalid_request_error", "injected rate limit", code="rate_limit"
                    )
                if fault and fault.startswith("decline:"):
                    proxy.counts["fault:decline"] += 1
                    return self._error(
                        402,
                        "card_error",
                        "Your card has insufficient funds.",
                        code="card_declined",
                        decline_code=fault.split(":", 1)[1],
                    )
                key = headers.get("Idempotency-Key") if method == "POST" else None
                if key is None:
                    response = proxy._forward(method, self.path, headers, body)
                    return self._send(
                        response.status_code, response.content, dict(response.headers)
                    )
                fingerprint = hashlib.sha256(f"{self.path}\n".encode() + body).hexdigest()
                with proxy.lock:
                    now = time.monotonic()
                    stored = proxy.keys.get(key)
                    if stored is not None and now - stored.at > KEY_TTL_SECONDS:
                        stored = None
                    first = stored is None
                    if first:
                        stored = proxy.keys[key] = _Stored(fingerprint)
                assert stored is not None
                if not first:
                    if stored.fingerprint != fingerprint:
                        proxy.counts["idempotency_error"] += 1
                        return self._error(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same"
                            " parameters.",
                        )
                    if not stored.done.is_set():
                        return self._error(
                            409, "idempotency_error", "key in use", code="idempotency_key_in_use"
                        )
                    proxy.counts["replayed"] += 1
                    return self._send(
                        stored.status or 500,
                        stored.body,
                        {**stored.headers, "Idempotent-Replayed": "true"},
                    )
                try:
                    response = proxy._forward(method, self.path, headers, body)
                except httpx.HTTPError:
                    with proxy.lock:
                        proxy.keys.pop(key, None)
                    return self._error(500, "api_error", "upstream unreachable")
                stored.status, stored.body = response.status_code, response.content
                stored.headers = {
                    "Content-Type": response.headers.get("content-type", "application/json")
                }
                stored.done.set()
                proxy.counts["forwarded_post"] += 1
                if fault == "timeout":
                    proxy.counts["fault:timeout"] += 1
                    time.sleep(proxy.hang_seconds)
                    self.close_connection = True
                    return None
                return self._send(stored.status, stored.body, stored.headers)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        return Handler

    @contextmanager
    def running(self) -> Iterator[StripeProxy]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            self.client.close()
            thread.join(timeout=5)
