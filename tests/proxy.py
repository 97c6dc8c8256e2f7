"""A TCP proxy on 127.0.0.1 for network faults: latency, every connection cut, connects refused.

It runs its own event loop in a thread of its own, so it keeps forwarding while a test blocks
(`wait_until`) or its own loop is busy; every control is safe to call from any thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

T = TypeVar("T")
_CHUNK = 64 * 1024


class Direction(enum.StrEnum):
    upstream = "upstream"  # client to target
    downstream = "downstream"  # target to client


class Proxy:
    """Forwards every connection made to `port` to `target_host:target_port`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.accepted = 0
        self._latency = dict.fromkeys(Direction, 0.0)
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._reopen: asyncio.TimerHandle | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @classmethod
    def to(cls, url: str) -> Proxy:
        """A proxy to the host and port of `url` (`postgresql+asyncpg://…`, `redis://…`)."""
        parts = urlsplit(url)
        assert parts.hostname is not None, url
        assert parts.port is not None, url
        return cls(parts.hostname, parts.port)

    def url(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        credentials, _, _ = parts.netloc.rpartition("@")
        netloc = f"{credentials}@127.0.0.1:{self.port}" if credentials else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def __enter__(self) -> Proxy:
        self._thread.start()
        self._call(self._listen())
        self.port = self._bound_port()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._call(self._shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    @property
    def open_connections(self) -> int:
        return len(self._links)

    def delay(self, seconds: float, *, direction: Direction | None = None) -> None:
        """Hold every chunk `seconds` before passing it on, one way or (default) both."""
        for way in [direction] if direction is not None else list(Direction):
            self._latency[way] = seconds

    def cut(self) -> int:
        """Reset every open connection (both ends see a RST); returns how many there were."""
        return self._call(self._cut())

    def refuse(self, seconds: float | None = None) -> None:
        """Stop listening, so connects are refused; for `seconds`, or until `resume()`."""
        self._call(self._refuse(seconds))

    def resume(self) -> None:
        """Back to a clean network: listening again, no latency."""
        self.delay(0)
        self._call(self._listen())

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coroutine.close()
            raise RuntimeError("the proxy is closed")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def _bound_port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _listen(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
            self._reopen = None
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _refuse(self, seconds: float | None) -> None:
        if self._server is not None:
            self._server.close()  # the listening socket only: open connections go on
            self._server = None
        if seconds is not None:
            self._reopen = self._loop.call_later(
                seconds, lambda: self._loop.create_task(self._listen())
            )

    async def _cut(self) -> int:
        links = list(self._links)
        for client, target in links:
            _reset(client)
            _reset(target)
        self._links.clear()
        return len(links)

    async def _shut(self) -> None:
        await self._refuse(None)
        await self._cut()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            try:
                target_reader, target_writer = await asyncio.open_connection(*self.target)
            except OSError:
                _reset(writer)
                return
            await self._forward(reader, writer, target_reader, target_writer)
        finally:
            self._handlers.discard(handler)

    async def _forward(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        target_reader: asyncio.StreamReader,
        target_writer: asyncio.StreamWriter,
    ) -> None:
        link = (writer, target_writer)
        self._links.add(link)
        pipes = [
            asyncio.ensure_future(self._pipe(reader, target_writer, Direction.upstream)),
            asyncio.ensure_future(self._pipe(target_reader, writer, Direction.downstream)),
        ]
        try:
            done, _ = await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
            if any(task.exception() is not None for task in done):
                for end in link:  # a reset on one side resets the other
                    _reset(end)
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._links.discard(link)
            for end in link:
                end.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction
    ) -> None:
        """Copy `reader` to `writer`, each chunk delivered its latency after it arrived (a delay
        line: latency, not a narrower pipe). Raises `OSError` when either end was reset."""
        line: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await line.get()
                if not chunk:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof() and not writer.is_closing():
                writer.write_eof()

        delivering = asyncio.ensure_future(deliver())
        try:
            while chunk := await reader.read(_CHUNK):
                line.put_nowait((time.monotonic() + self._latency[direction], chunk))
            line.put_nowait((time.monotonic(), b""))
            await delivering
        finally:
            if not delivering.done():
                delivering.cancel()
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await delivering


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a RST, not a FIN: what a peer sees when the network drops the connection."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
