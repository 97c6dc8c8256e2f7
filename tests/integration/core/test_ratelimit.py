"""The GCRA limiter on the suite's Redis: exact under concurrency, all-or-nothing across buckets,
and a breaker that fails open or closed while Redis is away and recovers when it is back."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.core.config import RateLimitSettings, RedisSettings, Settings
from app.core.ratelimit import Bucket, RateLimiter, RateLimiterUnavailable
from app.core.redis import create_redis
from tests.support import free_port


def _key() -> str:
    return f"test:{uuid.uuid4()}"


@pytest.fixture
def limiter(redis: Redis) -> RateLimiter:
    return RateLimiter(redis, RateLimitSettings())


async def test_200_concurrent_requests_never_get_past_the_limit(limiter: RateLimiter) -> None:
    bucket = Bucket(_key(), limit=50)
    loop = asyncio.get_running_loop()
    started = loop.time()
    verdicts = await asyncio.gather(*(limiter.check([bucket]) for _ in range(200)))
    elapsed = loop.time() - started
    admitted = [verdict for verdict in verdicts if verdict.admitted]
    # 50 at once from a full bucket, then one more every 1.2 s at most.
    assert 50 <= len(admitted) <= 50 + int(elapsed / 1.2)
    assert {verdict.remaining for verdict in admitted} >= {0, 49}
    refused = [verdict for verdict in verdicts if not verdict.admitted]
    assert refused
    assert all(verdict.remaining == 0 for verdict in refused)
    assert all(1 <= verdict.retry_after_s <= 2 for verdict in refused)
    assert all(verdict.limit == 50 and 1 <= verdict.reset_s <= 61 for verdict in verdicts)


async def test_checks_of_many_processes_count_in_one_bucket(settings: Settings) -> None:
    """Two limiters (two API processes) on one bucket share its count: Redis keeps it."""
    clients = [create_redis(settings.redis) for _ in range(2)]
    try:
        limiters = [RateLimiter(client, RateLimitSettings()) for client in clients]
        bucket = Bucket(_key(), limit=30)
        verdicts = await asyncio.gather(*(limiters[i % 2].check([bucket]) for i in range(80)))
    finally:
        for client in clients:
            await client.aclose()
    assert 30 <= sum(verdict.admitted for verdict in verdicts) <= 31


async def test_a_request_refused_by_one_bucket_is_charged_to_none(limiter: RateLimiter) -> None:
    roomy, tight = Bucket(_key(), limit=100), Bucket(_key(), limit=2)
    verdicts = [await limiter.check([roomy, tight]) for _ in range(5)]
    assert [verdict.admitted for verdict in verdicts] == [True, True, False, False, False]
    # The tightest bucket speaks for the request.
    assert verdicts[0].limit == 2
    assert verdicts[0].remaining == 1
    # The roomy bucket was charged for the two admitted requests only.
    alone = await limiter.check([roomy])
    assert alone.admitted
    assert alone.remaining == 100 - 3


async def test_the_bucket_refills_at_its_rate(limiter: RateLimiter) -> None:
    bucket = Bucket(_key(), limit=4, period_s=1.0)  # one more every 0.25 s
    assert all([(await limiter.check([bucket])).admitted for _ in range(4)])
    refused = await limiter.check([bucket])
    assert not refused.admitted
    await asyncio.sleep(0.3)
    assert (await limiter.check([bucket])).admitted
    assert not (await limiter.check([bucket])).admitted


async def test_a_cost_draws_several_requests(limiter: RateLimiter) -> None:
    bucket = Bucket(_key(), limit=10)
    assert (await limiter.check([Bucket(bucket.key, 10, cost=7)])).remaining == 3
    assert not (await limiter.check([Bucket(bucket.key, 10, cost=4)])).admitted
    assert (await limiter.check([Bucket(bucket.key, 10, cost=3)])).admitted


class _Forwarder:
    """A TCP relay on 127.0.0.1 in front of the suite's Redis, which the test can cut: Redis as
    the API sees it when the network or the server fails, without stopping the shared engine."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._links):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._links |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._links -= {writer, up_writer}


@pytest.fixture
async def forwarder(settings: Settings) -> AsyncIterator[_Forwarder]:
    port = int(settings.redis.url.rsplit(":", 1)[1].split("/")[0])
    relay = _Forwarder(port)
    await relay.start()
    yield relay
    if relay._server is not None:
        await relay.cut()


def _through(relay: _Forwarder) -> Redis:
    return create_redis(
        RedisSettings(url=f"redis://127.0.0.1:{relay.port}/0", socket_timeout_s=0.5)
    )


@pytest.mark.parametrize("fail_open", [True, False])
async def test_redis_away_opens_the_breaker_and_its_return_closes_it(
    forwarder: _Forwarder, fail_open: bool
) -> None:
    client = _through(forwarder)
    try:
        limiter = RateLimiter(
            client, RateLimitSettings(fail_open=fail_open, breaker_s=0.5, timeout_s=0.5)
        )
        bucket = Bucket(_key(), limit=5)
        assert (await limiter.check([bucket])).checked
        await forwarder.cut()
        for _ in range(3):  # the first finds Redis away; the others skip it
            if fail_open:
                verdict = await limiter.check([bucket])
                assert verdict.admitted
                assert not verdict.checked
                assert verdict.headers() == []
            else:
                with pytest.raises(RateLimiterUnavailable) as refused:
                    await limiter.check([bucket])
                assert refused.value.status == 503
                assert "Retry-After" in refused.value.headers
        assert limiter.is_open
        await forwarder.start()
        await asyncio.sleep(0.6)  # the breaker half-opens: the next check tries Redis again
        verdict = await limiter.check([bucket])
        assert verdict.checked
        assert verdict.admitted
        assert verdict.remaining == 3
        assert not limiter.is_open
    finally:
        await client.aclose()
