"""The per-process memory of API-key principals: bounded, short-lived, forgettable."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from app.auth.principal import Principal
from app.auth.principal_cache import PrincipalCache
from app.events.models import ActorType


def _principal(project_id: uuid.UUID | None = None) -> Principal:
    return Principal(
        actor_type=ActorType.api_key,
        actor_id=uuid.uuid4(),
        user=None,
        api_key_project_id=project_id or uuid.uuid4(),
        api_key_scopes=frozenset({"read"}),
    )


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    return now


def test_an_entry_lives_its_ttl_and_no_longer(clock: list[float]) -> None:
    cache = PrincipalCache()
    principal = _principal()
    cache.put("tg_secret", principal, ttl_s=1.0)

    clock[0] += 0.99
    assert cache.get("tg_secret") is principal
    clock[0] += 0.02
    assert cache.get("tg_secret") is None


def test_a_zero_ttl_remembers_nothing(clock: list[float]) -> None:
    cache = PrincipalCache()
    cache.put("tg_secret", _principal(), ttl_s=0)
    assert cache.get("tg_secret") is None


def test_another_credential_is_a_miss(clock: list[float]) -> None:
    cache = PrincipalCache()
    cache.put("tg_secret", _principal(), ttl_s=1.0)
    assert cache.get("tg_secreT") is None


def test_forgetting_a_key_or_its_project_drops_only_those(clock: list[float]) -> None:
    cache = PrincipalCache()
    project = uuid.uuid4()
    first, second, other = _principal(project), _principal(project), _principal()
    cache.put("a", first, ttl_s=1.0)
    cache.put("b", second, ttl_s=1.0)
    cache.put("c", other, ttl_s=1.0)

    cache.forget_api_key(first.actor_id)
    assert (cache.get("a"), cache.get("b")) == (None, second)
    cache.forget_project(project)
    assert (cache.get("b"), cache.get("c")) == (None, other)


def test_it_is_bounded_by_evicting_the_oldest(clock: list[float]) -> None:
    cache = PrincipalCache(max_entries=2)
    for credential in ("a", "b", "c"):
        cache.put(credential, _principal(), ttl_s=1.0)
    assert cache.get("a") is None
    assert cache.get("b") is not None
    assert cache.get("c") is not None


def test_the_secret_itself_is_not_kept(clock: list[float]) -> None:
    cache = PrincipalCache()
    cache.put("tg_topsecret", _principal(), ttl_s=1.0)
    assert all(b"topsecret" not in digest for digest in cache._entries)


async def test_concurrent_misses_of_one_key_load_it_once() -> None:
    cache = PrincipalCache()
    principal = _principal()
    release = asyncio.Event()
    loads = 0

    async def load() -> Principal:
        nonlocal loads
        loads += 1
        await release.wait()
        return principal

    waiting = [asyncio.ensure_future(cache.load_once("tg_secret", load)) for _ in range(20)]
    other = asyncio.ensure_future(cache.load_once("tg_other", load))
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == [principal] * 20
    await other
    assert loads == 2  # one per credential
    # Done: the next miss loads again (what a load found is `put`'s to keep, not this one's).
    await cache.load_once("tg_secret", load)
    assert loads == 3


async def test_a_failed_load_fails_every_waiter_and_is_not_kept() -> None:
    cache = PrincipalCache()

    async def load() -> Principal:
        await asyncio.sleep(0)
        raise LookupError("no such key")

    results = await asyncio.gather(
        *(cache.load_once("tg_wrong", load) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(result, LookupError) for result in results)
    with pytest.raises(LookupError):
        await cache.load_once("tg_wrong", load)


async def test_a_waiter_that_goes_away_does_not_cancel_the_others_load() -> None:
    cache = PrincipalCache()
    principal = _principal()
    release = asyncio.Event()

    async def load() -> Principal:
        await release.wait()
        return principal

    first = asyncio.ensure_future(cache.load_once("tg_secret", load))
    second = asyncio.ensure_future(cache.load_once("tg_secret", load))
    await asyncio.sleep(0)
    first.cancel()
    release.set()
    assert await second is principal
    assert first.cancelled()
