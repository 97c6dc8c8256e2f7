"""The read-through cache of project rows: a second read comes from Redis and answers the same,
a change made through the API is seen at once, a cached row never reaches another project's
caller, and with Redis away reads come from PostgreSQL."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.config import Settings
from app.core.db import transaction
from app.core.metrics import CACHE_REQUESTS
from app.core.readcache import key_of
from app.projects.models import Project, Role
from tests.factories import add_member, auth_headers, make_api_key, make_project, make_user
from tests.support import free_port, own_api


@pytest.fixture
def owned(owner_and_project: tuple[User, Project]) -> tuple[Project, User]:
    owner, project = owner_and_project
    return project, owner


def _hits() -> float:
    hits: float = CACHE_REQUESTS.labels(cache="project", result="hit")._value.get()
    return hits


async def test_a_project_read_again_comes_from_the_cache_and_a_change_is_seen_at_once(
    settings: Settings, owned: tuple[Project, User], redis: Redis
) -> None:
    project, owner = owned
    headers = auth_headers(owner)
    async with own_api(settings) as client:
        first = await client.get(f"/v1/projects/{project.id}", headers=headers)
        hits = _hits()
        second = await client.get(f"/v1/projects/{project.id}", headers=headers)
        assert _hits() == hits + 1
        assert await redis.ttl(key_of("project", project.id)) > 0

        renamed = await client.patch(
            f"/v1/projects/{project.id}",
            json={"name": "renamed", "settings": {"max_queued_tasks": 7}},
            headers=headers,
        )
        assert renamed.status_code == 200, renamed.text
        assert await redis.exists(key_of("project", project.id)) == 0
        after = await client.get(f"/v1/projects/{project.id}", headers=headers)

    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert after.json()["name"] == "renamed"
    assert after.json()["settings"]["max_queued_tasks"] == 7
    assert after.json() == renamed.json()


async def test_a_cached_project_is_never_served_to_another_projects_caller(
    settings: Settings,
    live_db: async_sessionmaker[AsyncSession],
    owned: tuple[Project, User],
) -> None:
    project, owner = owned
    async with transaction(live_db) as session:
        outsider = await make_user(session)
        viewer = await make_user(session)
        await add_member(session, project, viewer, Role.viewer)
        other = await make_project(session, owner=outsider)
        _, others_secret = await make_api_key(session, other)
    async with own_api(settings) as client:
        assert (
            await client.get(f"/v1/projects/{project.id}", headers=auth_headers(owner))
        ).status_code == 200
        hits = _hits()
        other_user = await client.get(f"/v1/projects/{project.id}", headers=auth_headers(outsider))
        other_key = await client.get(
            f"/v1/projects/{project.id}", headers=auth_headers(others_secret)
        )
        member = await client.get(f"/v1/projects/{project.id}", headers=auth_headers(viewer))
    assert other_user.status_code == other_key.status_code == 404
    assert other_user.json()["type"].endswith("project-not-found")
    assert member.status_code == 200
    assert member.json()["role"] == "viewer"  # the caller's own role, never a cached one
    assert _hits() == hits + 1  # only the member's read reached the cache
    async with transaction(live_db) as session:
        await session.execute(delete(Project).where(Project.id == other.id))


async def test_a_deleted_project_is_forgotten_and_a_404(
    settings: Settings, owned: tuple[Project, User], redis: Redis
) -> None:
    project, owner = owned
    headers = auth_headers(owner)
    async with own_api(settings) as client:
        assert (await client.get(f"/v1/projects/{project.id}", headers=headers)).status_code == 200
        deleted = await client.delete(f"/v1/projects/{project.id}", headers=headers)
        assert deleted.status_code == 204
        assert await redis.exists(key_of("project", project.id)) == 0
        gone = await client.get(f"/v1/projects/{project.id}", headers=headers)
    assert gone.status_code == 404


async def test_with_redis_away_reads_come_from_postgresql(
    settings: Settings, owned: tuple[Project, User]
) -> None:
    project, owner = owned
    away = settings.redis.model_copy(
        update={"url": f"redis://127.0.0.1:{free_port()}/0", "socket_timeout_s": 0.5}
    )
    async with own_api(settings.model_copy(update={"redis": away})) as client:
        answers = [
            await client.get(f"/v1/projects/{project.id}", headers=auth_headers(owner))
            for _ in range(3)
        ]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert answers[-1].json()["id"] == str(project.id)
