"""The suite's fault-injecting TCP proxy, in front of an echo server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.proxy import Direction, Proxy


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await asyncio.start_server(_echo, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    yield port
    server.close()
    await server.wait_closed()


@pytest.fixture
def proxy(echo_port: int) -> Iterator[Proxy]:
    with Proxy("127.0.0.1", echo_port) as proxy:
        yield proxy


async def _round_trip(port: int, payload: bytes = b"ping") -> tuple[bytes, float]:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        received = await asyncio.wait_for(reader.readexactly(len(payload)), timeout=10)
    finally:
        writer.close()
    return received, time.monotonic() - started


class TestProxy:
    async def test_forwards_both_ways(self, proxy: Proxy) -> None:
        payload = bytes(range(256)) * 1024

        received, _ = await _round_trip(proxy.port, payload)

        assert received == payload

    async def test_latency_delays_each_way(self, proxy: Proxy) -> None:
        proxy.delay(0.2, direction=Direction.upstream)
        _, one_way = await _round_trip(proxy.port)
        proxy.delay(0.2)
        _, both_ways = await _round_trip(proxy.port)

        assert 0.2 <= one_way < 0.4 + 1.0
        assert 0.4 <= both_ways < 0.4 + 1.0

    async def test_cut_resets_every_open_connection_and_new_ones_work(self, proxy: Proxy) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        writer.write(b"x")
        assert await asyncio.wait_for(reader.readexactly(1), timeout=10) == b"x"

        assert proxy.cut() == 1

        with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
            await asyncio.wait_for(reader.readexactly(1), timeout=10)
        writer.close()
        assert (await _round_trip(proxy.port))[0] == b"ping"

    async def test_refused_until_resumed_or_for_a_while(self, proxy: Proxy) -> None:
        proxy.refuse()
        with pytest.raises(ConnectionRefusedError):
            await _round_trip(proxy.port)
        proxy.resume()
        assert (await _round_trip(proxy.port))[0] == b"ping"

        proxy.refuse(0.3)
        with pytest.raises(ConnectionRefusedError):
            await _round_trip(proxy.port)
        await asyncio.sleep(0.6)

        assert (await _round_trip(proxy.port))[0] == b"ping"

    def test_rewrites_a_urls_host_and_port(self, proxy: Proxy) -> None:
        assert proxy.url("postgresql+asyncpg://u:p@127.0.0.1:5999/db") == (
            f"postgresql+asyncpg://u:p@127.0.0.1:{proxy.port}/db"
        )
        assert proxy.url("redis://127.0.0.1:6999/0") == f"redis://127.0.0.1:{proxy.port}/0"
