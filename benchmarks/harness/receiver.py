"""The webhook receiver: an HTTP server of the harness on 127.0.0.1 that notes each arrival and,
for endpoints whose secret it was given, checks the Standard Webhooks signature."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from benchmarks.harness.procs import free_port

MAX_BODY = 1 << 20
SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
TOLERANCE_S = 300  # the Standard Webhooks libraries' timestamp window


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float) -> bool:
    """Whether one of `webhook-signature`'s `v1,` signatures is the HMAC-SHA256 of
    `id.timestamp.body` under `secret`, with a timestamp within 5 minutes of `now`. Written from
    the specification, not from taskgate's signer, so a bug there cannot hide here."""
    message_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if not message_id or not timestamp.isdigit() or abs(now - int(timestamp)) > TOLERANCE_S:
        return False
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        return False
    signed = f"{message_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        version == "v1" and hmac.compare_digest(signature, expected)
        for version, _, signature in (
            part.partition(",") for part in headers.get("webhook-signature", "").split()
        )
    )


@dataclass(frozen=True)
class Arrival:
    endpoint: str
    task_id: str
    at: float
    webhook_id: str = ""
    kind: str = ""
    # None: no secret was given for the endpoint; False: a bad or missing signature.
    signed: bool | None = None


class Receiver:
    """`POST /hook/<name>`: 204, and (endpoint, task id, arrival time) recorded; the signature
    checked when `secrets` has the endpoint's (set it once the endpoint is created)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: list[Arrival] = []
        self.secrets: dict[str, str] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at = time.time()
                length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY)
                body = self.rfile.read(length)
                self.send_response(204)
                self.end_headers()
                try:
                    payload = json.loads(body)
                    data = payload.get("data") or {}
                    kind = str(payload.get("type") or "")
                except (ValueError, AttributeError):
                    data, kind = {}, ""
                task_id = str(data.get("id") or data.get("subject_id") or "")
                endpoint = self.path.rsplit("/", 1)[-1]
                headers = {name.lower(): value for name, value in self.headers.items()}
                secret = receiver.secrets.get(endpoint)
                signed = None if secret is None else verify(secret, headers, body, now=at)
                arrival = Arrival(
                    endpoint, task_id, at, headers.get("webhook-id", ""), kind, signed
                )
                with receiver._lock:
                    receiver.arrivals.append(arrival)

            def log_message(self, format: str, *args: object) -> None:
                del format, args  # quiet: thousands of deliveries

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{name}"

    def count(self) -> int:
        with self._lock:
            return len(self.arrivals)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
