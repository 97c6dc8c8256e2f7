"""`Memo`: entries that expire, a bound, and loads shared by concurrent misses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from app.core.memo import Memo


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    return now


async def test_concurrent_misses_of_one_key_load_it_once(clock: list[float]) -> None:
    memo: Memo[str, int] = Memo()
    release = asyncio.Event()
    loads: list[str] = []

    def loader(key: str, value: int) -> Callable[[], Awaitable[int]]:
        async def load() -> int:
            loads.append(key)
            await release.wait()
            return value

        return load

    waiting = [
        asyncio.ensure_future(memo.load_once("a", loader("a", 1), ttl_s=1.0)) for _ in range(20)
    ]
    other = asyncio.ensure_future(memo.load_once("b", loader("b", 2), ttl_s=1.0))
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == [1] * 20
    assert await other == 2
    assert loads == ["a", "b"]
    # Kept for its ttl: no load; then loaded again.
    assert await memo.load_once("a", loader("a", 3), ttl_s=1.0) == 1
    clock[0] += 1.0
    assert await memo.load_once("a", loader("a", 3), ttl_s=1.0) == 3
    assert loads == ["a", "b", "a"]


async def test_a_zero_ttl_shares_the_load_and_keeps_nothing() -> None:
    memo: Memo[str, int] = Memo()

    async def load() -> int:
        await asyncio.sleep(0)
        return 7

    assert await asyncio.gather(*(memo.load_once("a", load, ttl_s=0) for _ in range(3))) == [7] * 3
    assert memo.get("a") is None
    assert len(memo) == 0


async def test_a_failed_load_fails_every_waiter_and_is_not_kept() -> None:
    memo: Memo[str, int] = Memo()
    loads = 0

    async def load() -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0)
        raise LookupError("no such key")

    results = await asyncio.gather(
        *(memo.load_once("a", load, ttl_s=1.0) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(result, LookupError) for result in results)
    assert loads == 1
    with pytest.raises(LookupError):
        await memo.load_once("a", load, ttl_s=1.0)
    assert loads == 2


async def test_a_waiter_that_goes_away_does_not_cancel_the_others_load() -> None:
    memo: Memo[str, int] = Memo()
    release = asyncio.Event()

    async def load() -> int:
        await release.wait()
        return 5

    first = asyncio.ensure_future(memo.load_once("a", load, ttl_s=1.0))
    second = asyncio.ensure_future(memo.load_once("a", load, ttl_s=1.0))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second == 5
    assert first.cancelled()
    assert memo.get("a") == 5


def test_bounded_by_evicting_the_oldest_and_forgetting_by_predicate(clock: list[float]) -> None:
    memo: Memo[str, int] = Memo(max_entries=2)
    memo.put("a", 1, ttl_s=1.0)
    memo.put("b", 2, ttl_s=1.0)
    memo.put("c", 3, ttl_s=1.0)
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (None, 2, 3)
    memo.forget(lambda _, value: value == 2)
    memo.drop("c")
    assert len(memo) == 0
