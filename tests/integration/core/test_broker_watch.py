"""Noticing a broker that lost its data (`enqueue.BrokerWatch`), on the suite's own Valkey."""

from __future__ import annotations

from redis.asyncio import Redis

from app.worker.enqueue import BROKER_MARK_KEY, BrokerWatch


async def test_a_broker_that_keeps_its_mark_lost_nothing(redis: Redis) -> None:
    watch = BrokerWatch()
    assert await watch.lost(redis) is False  # the first look only leaves the mark
    assert await watch.lost(redis) is False
    assert await redis.get(BROKER_MARK_KEY) is not None


async def test_a_mark_that_vanished_is_noticed_once(redis: Redis) -> None:
    watch = BrokerWatch()
    await watch.lost(redis)

    await redis.delete(BROKER_MARK_KEY)  # what FLUSHALL or a restart without data does

    assert await watch.lost(redis) is True
    assert await watch.lost(redis) is False  # a new mark is in place


async def test_a_mark_another_scheduler_renewed_is_noticed_too(redis: Redis) -> None:
    watch = BrokerWatch()
    await watch.lost(redis)

    await redis.set(BROKER_MARK_KEY, "left-by-a-peer-after-the-flush")

    assert await watch.lost(redis) is True


async def test_a_broker_out_of_reach_says_nothing() -> None:
    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    watch = BrokerWatch()
    try:
        assert await watch.lost(unreachable) is False
    finally:
        await unreachable.aclose()
