"""The per-process memory of API-key principals: bounded, short-lived, forgettable."""

from __future__ import annotations

import time
import uuid

import pytest

from app.auth.models import User
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
    assert all(b"topsecret" not in digest for digest in cache._memo._entries)


async def test_a_user_forgotten_here_loses_every_token_at_once(clock: list[float]) -> None:
    cache = PrincipalCache()
    user_id = uuid.uuid4()
    user = Principal.for_user(User(id=user_id, email="ada@example.com"))
    key = Principal(  # a key whose id happens to be the user's
        actor_type=ActorType.api_key,
        actor_id=user_id,
        user=None,
        api_key_project_id=uuid.uuid4(),
    )
    cache.put("token-one", user, ttl_s=1.0)
    cache.put("token-two", user, ttl_s=1.0)
    cache.put("tg_key", key, ttl_s=1.0)
    cache.forget_user(user_id)
    assert cache.get("token-one") is None
    assert cache.get("token-two") is None
    assert cache.get("tg_key") is key
