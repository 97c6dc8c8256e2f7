"""A lean HTTP/1.1 keep-alive client on asyncio streams, for the load generator.

A general client (httpx) costs several times the CPU per request; on two cores the generator
competes with the system under test, so it does as little as it can: one prebuilt request, the
status line, `Content-Length` or chunked bodies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

READ_LIMIT = 1 << 20


class HttpError(Exception):
    """The server closed the connection or answered something we cannot parse."""


def build_request(
    method: str, path: str, *, port: int, headers: Mapping[str, str], body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection:
    """One keep-alive connection to 127.0.0.1:`port`; reconnects after the server closes it."""

    def __init__(self, port: int, *, timeout_s: float = 30.0) -> None:
        self.port = port
        self.timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._exchanges = 0  # on this socket: a reused one may have been closed while idle

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                "127.0.0.1", self.port, limit=READ_LIMIT
            )
        return self._reader, self._writer

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send a prebuilt request; return (status, body). Raises HttpError or TimeoutError."""
        async with asyncio.timeout(self.timeout_s):
            try:
                try:
                    return await self._exchange(raw)
                except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
                    # The server closed an idle keep-alive connection (uvicorn does after 5 s)
                    # before reading this request: nothing was answered, so send it again on a
                    # new connection, as HTTP clients do.
                    answered = isinstance(exc, asyncio.IncompleteReadError) and exc.partial
                    if self._exchanges == 0 or answered:
                        raise
                    self.close()
                    return await self._exchange(raw)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                self.close()
                raise HttpError(repr(exc)) from exc
            except BaseException:
                self.close()  # a timeout or cancel leaves the stream mid-response
                raise

    async def _exchange(self, raw: bytes) -> tuple[int, bytes]:
        reader, writer = await self._connect()
        writer.write(raw)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head[:-4].split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError(f"bad status line {status_line[:80]!r}")
        status = int(parts[1])
        length = -1
        chunked, keep_alive = False, True
        for line in header_lines:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                keep_alive = value != b"close"
        if chunked:
            body = await self._chunked(reader)
        elif length >= 0:
            body = await reader.readexactly(length)
        else:
            body = await reader.read()
            keep_alive = False
        self._exchanges += 1
        if not keep_alive:
            self.close()
        return status, body

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        parts: list[bytes] = []
        for _ in range(100_000):
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        raise HttpError("too many chunks")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        self._exchanges = 0
