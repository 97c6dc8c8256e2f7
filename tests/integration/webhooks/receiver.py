"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 in a thread, scripted per request.

Each request is recorded (headers, body, when); `answers` says what the next requests get, in
order, the last one repeating: a status, optionally headers, a body, or `HANG` (hold the request
until the receiver closes, at most `MAX_HANG_S`). Closing releases every held request and joins
every handler thread, so no socket outlives the test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_HANG_S = 30.0


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"
    hang: bool = False
    delay_s: float = 0.0


HANG = Answer(hang=True)


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()
    wall: float  # time.time(), to compare with timestamps in payloads

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    answers: list[Answer] = field(default_factory=lambda: [Answer()])
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _release: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def script(self, *answers: Answer) -> None:
        with self._lock:
            self.answers = list(answers)

    def _next_answer(self, received: Received) -> Answer:
        with self._lock:
            self.requests.append(received)
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    async def wait_for(self, count: int, *, timeout_s: float) -> list[Received]:
        """Poll until at least `count` requests arrived; fail after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            received = self.received()
            if len(received) >= count:
                return received
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(self.received())} of {count} requests in {timeout_s}s")


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            received = Received(
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
                at=time.monotonic(),
                wall=time.time(),
            )
            answer = receiver._next_answer(received)
            if answer.hang:
                receiver._release.wait(MAX_HANG_S)
                self.close_connection = True
                return
            if answer.delay_s:
                receiver._release.wait(answer.delay_s)
            try:
                self.send_response(answer.status)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(answer.body)
            except OSError:
                pass  # the sender gave up (timeout): nothing to answer to
            self.close_connection = True

        def log_message(self, format: str, *args: object) -> None:
            del format, args  # quiet: the tests look at `requests`

    return Handler


@contextmanager
def running_receiver(*answers: Answer) -> Iterator[Receiver]:
    """A receiver on a free port of 127.0.0.1, shut down (threads joined) on exit."""
    receiver = Receiver(answers=list(answers) or [Answer()])
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = False
    server.block_on_close = True
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield receiver
    finally:
        receiver._release.set()
        server.shutdown()
        server.server_close()  # joins the handler threads
        thread.join(timeout=10)


def webhook_ids(requests: Sequence[Received]) -> list[str]:
    return [request.webhook_id for request in requests]
