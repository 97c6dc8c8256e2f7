"""Rate limits as a client meets them: `RateLimit-*` on every authenticated answer, a 429 with
`Retry-After` past a project's submit or read rate (and nothing written), sign-in and registration
limited by client address and email, client addresses taken from proxies only when trusted."""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.config import Settings
from app.core.db import transaction
from app.core.ratelimit import KEY_PREFIX
from app.projects.limits import project_limits
from app.projects.models import Project
from app.tasks.models import Task
from tests.factories import DEFAULT_PASSWORD, auth_headers, make_api_key, make_user
from tests.support import own_api


@pytest.fixture(autouse=True)
async def _peer_buckets_restored(redis: Redis) -> AsyncIterator[None]:
    """These tests empty the buckets of 127.0.0.1 (the ASGI client's address) at low limits:
    refill them after, for the rest of the session's tests."""
    yield
    await redis.delete(*(f"{KEY_PREFIX}{scope}:ip:127.0.0.1" for scope in ("sign_in", "register")))


def _client(
    settings: Settings, **rate_limits: Any
) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """A client of an API of its own (its own engine: requests really commit) with these limits."""
    changed = settings.rate_limits.model_copy(update=rate_limits)
    return own_api(settings.model_copy(update={"rate_limits": changed}))


async def _key(live_db: async_sessionmaker[AsyncSession], project: Project) -> dict[str, str]:
    async with transaction(live_db) as session:
        _, secret = await make_api_key(session, project)
    return auth_headers(secret)


async def _limit(client: httpx.AsyncClient, owner: User, project: Project, **limits: int) -> None:
    answer = await client.patch(
        f"/v1/projects/{project.id}", json={"settings": limits}, headers=auth_headers(owner)
    )
    assert answer.status_code == 200, answer.text
    project_limits.clear()  # as a second later: the tests' apps are several "processes"


async def test_every_authenticated_answer_carries_its_bucket(
    settings: Settings, owner_and_project: tuple[User, Project]
) -> None:
    owner, _project = owner_and_project
    async with _client(settings) as client:
        first = await client.get("/v1/users/me", headers=auth_headers(owner))
        second = await client.get("/v1/users/me", headers=auth_headers(owner))
        elsewhere = await client.get(f"/v1/projects/{uuid.uuid4()}", headers=auth_headers(owner))
        anonymous = await client.get("/v1/users/me")
    assert first.status_code == 200
    assert first.headers["RateLimit-Limit"] == str(settings.projects.read_rate_per_minute)
    # 120,000 a minute: one back every 0.5 ms, so the bucket is nearly full again at once.
    assert int(second.headers["RateLimit-Remaining"]) < settings.projects.read_rate_per_minute
    assert int(first.headers["RateLimit-Reset"]) >= 0
    assert elsewhere.status_code == 404
    assert "RateLimit-Remaining" in elsewhere.headers
    assert anonymous.status_code == 401
    assert "RateLimit-Limit" not in anonymous.headers


async def test_submits_past_the_projects_rate_are_429_and_write_nothing(
    settings: Settings,
    live_db: async_sessionmaker[AsyncSession],
    owner_and_project: tuple[User, Project],
) -> None:
    owner, project = owner_and_project
    key, other_key = await _key(live_db, project), await _key(live_db, project)
    async with _client(settings) as client:
        await _limit(client, owner, project, submit_rate_per_minute=20)
        loop = asyncio.get_running_loop()
        started = loop.time()
        answers = await asyncio.gather(
            *(
                client.post(
                    f"/v1/projects/{project.id}/tasks",
                    json={"type": "echo", "input": {"n": n}},
                    headers=key,
                )
                for n in range(200)
            )
        )
        elapsed = loop.time() - started
        read = await client.get(f"/v1/projects/{project.id}", headers=key)
        other = await client.post(
            f"/v1/projects/{project.id}/tasks",
            json={"type": "echo", "input": {}},
            headers=other_key,
        )
    accepted = [answer for answer in answers if answer.status_code == 202]
    refused = [answer for answer in answers if answer.status_code == 429]
    assert len(accepted) + len(refused) == 200
    assert 20 <= len(accepted) <= 20 + int(elapsed / 3)  # one more every 3 s
    problem = refused[0]
    assert problem.headers["content-type"] == "application/problem+json"
    assert problem.json()["type"].endswith("rate-limited")
    assert int(problem.headers["Retry-After"]) >= 1
    assert problem.headers["RateLimit-Limit"] == "20"
    assert problem.headers["RateLimit-Remaining"] == "0"
    async with transaction(live_db) as session:
        written = await session.scalar(
            select(func.count()).select_from(Task).where(Task.project_id == project.id)
        )
    assert written == len(accepted) + 1  # and the other key's task
    # Reads draw from another bucket, and another key has buckets of its own.
    assert read.status_code == 200
    assert read.headers["RateLimit-Limit"] == str(settings.projects.read_rate_per_minute)
    assert other.status_code == 202


async def test_reads_past_the_projects_read_rate_are_429(
    settings: Settings,
    live_db: async_sessionmaker[AsyncSession],
    owner_and_project: tuple[User, Project],
) -> None:
    owner, project = owner_and_project
    key = await _key(live_db, project)
    async with _client(settings) as client:
        await _limit(client, owner, project, read_rate_per_minute=3)
        codes = [
            (await client.get(f"/v1/projects/{project.id}/tasks", headers=key)).status_code
            for _ in range(4)
        ]
        # A user's requests in the project draw from their own bucket at the project's rate.
        user_codes = [
            (
                await client.get(f"/v1/projects/{project.id}", headers=auth_headers(owner))
            ).status_code
            for _ in range(4)
        ]
    assert codes == [200, 200, 200, 429]
    assert user_codes[-1] == 429


async def test_refused_submits_draw_from_the_read_bucket(
    settings: Settings,
    live_db: async_sessionmaker[AsyncSession],
    owner_and_project: tuple[User, Project],
) -> None:
    owner, project = owner_and_project
    async with transaction(live_db) as session:
        _, secret = await make_api_key(session, project, scopes=["read"])
    async with _client(settings) as client:
        await _limit(client, owner, project, read_rate_per_minute=3)
        answers = [
            await client.post(
                f"/v1/projects/{project.id}/tasks",
                json={"type": "echo", "input": {}},
                headers=auth_headers(secret),
            )
            for _ in range(4)
        ]
    assert [answer.status_code for answer in answers] == [403, 403, 403, 429]
    assert answers[0].headers["RateLimit-Limit"] == "3"
    assert answers[2].headers["RateLimit-Remaining"] == "0"


async def test_an_outsider_sees_the_default_rates_never_the_projects(
    settings: Settings,
    live_db: async_sessionmaker[AsyncSession],
    owner_and_project: tuple[User, Project],
) -> None:
    owner, project = owner_and_project
    async with transaction(live_db) as session:
        outsider = await make_user(session)
    try:
        async with _client(settings) as client:
            await _limit(client, owner, project, read_rate_per_minute=3)
            real = [
                await client.get(f"/v1/projects/{project.id}", headers=auth_headers(outsider))
                for _ in range(4)
            ]
            missing = await client.get(
                f"/v1/projects/{uuid.uuid4()}", headers=auth_headers(outsider)
            )
    finally:
        async with transaction(live_db) as session:
            await session.execute(delete(User).where(User.id == outsider.id))
    assert [answer.status_code for answer in real] == [404] * 4
    limits = {answer.headers["RateLimit-Limit"] for answer in [*real, missing]}
    assert limits == {str(settings.projects.read_rate_per_minute)}


async def _sign_in(
    client: httpx.AsyncClient, email: str, password: str, **headers: str
) -> httpx.Response:
    return await client.post(
        "/v1/auth/token", data={"username": email, "password": password}, headers=headers
    )


async def test_sign_in_is_limited_per_email_before_the_password_is_checked(
    settings: Settings, owner_and_project: tuple[User, Project]
) -> None:
    owner, _ = owner_and_project
    async with _client(settings, sign_in_per_email_per_minute=3) as client:
        wrong = [await _sign_in(client, owner.email, "wrong password") for _ in range(3)]
        right = await _sign_in(client, owner.email.upper(), DEFAULT_PASSWORD)
        someone_else = await _sign_in(client, "nobody@example.com", "wrong password")
    assert [answer.status_code for answer in wrong] == [401] * 3
    assert right.status_code == 429
    assert int(right.headers["Retry-After"]) >= 1
    assert someone_else.status_code == 401


async def test_client_addresses_come_from_forwarded_for_only_behind_a_trusted_proxy(
    settings: Settings,
) -> None:
    async def attempts(client: httpx.AsyncClient, address: str) -> list[int]:
        return [
            (
                await _sign_in(
                    client,
                    f"{uuid.uuid4().hex}@example.com",
                    "wrong password",
                    **{"X-Forwarded-For": f"{address}, 127.0.0.1"},
                )
            ).status_code
            for _ in range(3)
        ]

    # httpx's ASGI transport connects from 127.0.0.1.
    trusted = settings.api.model_copy(
        update={"trusted_proxies": [ipaddress.ip_network("127.0.0.1/32")]}
    )
    behind = settings.model_copy(update={"api": trusted})
    first, second = f"198.51.100.{uuid.uuid4().int % 250}", "203.0.113.7"
    async with _client(behind, sign_in_per_ip_per_minute=2) as client:
        assert await attempts(client, first) == [401, 401, 429]
        assert await attempts(client, second) == [401, 401, 429]
    # Not trusted: the header is the client's word, and every attempt is the peer's.
    async with _client(settings, sign_in_per_ip_per_minute=2) as client:
        peer = [*(await attempts(client, "192.0.2.1")), *(await attempts(client, "192.0.2.2"))]
    assert peer.count(429) >= 4


async def test_registration_is_limited_per_client_address(settings: Settings) -> None:
    async with _client(settings, register_per_ip_per_minute=2) as client:
        codes = [
            (
                await client.post(
                    "/v1/auth/register",
                    json={"email": f"{uuid.uuid4().hex}@example.com", "password": "x" * 12},
                    headers={"X-Forwarded-For": "192.0.2.99"},
                )
            ).status_code
            for _ in range(3)
        ]
    # The peer is 127.0.0.1 for all three, whatever they claim.
    assert codes[2] == 429


async def test_limits_switched_off_leave_no_headers(
    settings: Settings, owner_and_project: tuple[User, Project]
) -> None:
    owner, _ = owner_and_project
    async with _client(settings, enabled=False) as client:
        answer = await client.get("/v1/users/me", headers=auth_headers(owner))
    assert answer.status_code == 200
    assert "RateLimit-Limit" not in answer.headers
