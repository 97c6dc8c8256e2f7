"""The webhook receiver: an HTTP server of the harness on 127.0.0.1 that notes each arrival."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

from benchmarks.harness.procs import free_port

MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Arrival:
    endpoint: str
    task_id: str
    at: float


class Receiver:
    """`POST /hook/<name>`: 204, and (endpoint, task id, arrival time) recorded."""

    def __init__(self) -> None:
        self.port = free_port()
        self.arrivals: list[Arrival] = []
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
                    data = json.loads(body).get("data") or {}
                except (ValueError, AttributeError):
                    data = {}
                task_id = str(data.get("id") or data.get("subject_id") or "")
                with receiver._lock:
                    receiver.arrivals.append(Arrival(self.path.rsplit("/", 1)[-1], task_id, at))

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
