"""The read-through cache of finished tasks: a second read comes from Redis and answers the same,
an unfinished task is never kept, a cached task is never served to another project's caller, a
result's expiry forgets it, and with Redis away reads come from PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import transaction, utc_now
from app.core.metrics import CACHE_REQUESTS
from app.core.readcache import key_of
from app.files.storage import Storage
from app.projects.models import Project, Role
from app.tasks.models import TaskStatus
from app.tasks.retention import expire_results
from tests.factories import add_member, auth_headers, make_api_key, make_user
from tests.integration.tasks.conftest import make_task
from tests.support import free_port, own_api


async def _key(db: async_sessionmaker[AsyncSession], project: Project) -> dict[str, str]:
    async with transaction(db) as session:
        _, secret = await make_api_key(session, project)
    return auth_headers(secret)


def _hits() -> float:
    hits: float = CACHE_REQUESTS.labels(cache="task", result="hit")._value.get()
    return hits


async def _finished(db: async_sessionmaker[AsyncSession], project: Project) -> uuid.UUID:
    now = utc_now()
    task = await make_task(
        db,
        project,
        status=TaskStatus.succeeded,
        result={"answer": 42},
        attempt=1,
        started_at=now - timedelta(seconds=2),
        finished_at=now - timedelta(seconds=1),
    )
    return task.id


async def test_a_finished_task_read_again_comes_from_the_cache_and_answers_the_same(
    settings: Settings,
    live_db: async_sessionmaker[AsyncSession],
    live_project: Project,
    redis: Redis,
) -> None:
    key = await _key(live_db, live_project)
    task_id = await _finished(live_db, live_project)
    queued = await make_task(live_db, live_project)
    async with own_api(settings) as client:
        first = await client.get(f"/v1/tasks/{task_id}", headers=key)
        hits = _hits()
        second = await client.get(f"/v1/tasks/{task_id}", headers=key)
        assert _hits() == hits + 1
        waiting = await client.get(f"/v1/tasks/{queued.id}", headers=key)
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.json()["result"] == {"answer": 42}
    assert await redis.ttl(key_of("task", task_id)) > 0
    assert waiting.status_code == 200
    assert await redis.exists(key_of("task", queued.id)) == 0


async def test_a_cached_task_is_never_served_to_another_projects_caller(
    settings: Settings,
    live_db: async_sessionmaker[AsyncSession],
    live_project: Project,
    other_live_project: Project,
) -> None:
    key = await _key(live_db, live_project)
    others_key = await _key(live_db, other_live_project)
    async with transaction(live_db) as session:
        outsider = await make_user(session)
        viewer = await make_user(session)
        await add_member(session, live_project, viewer, Role.viewer)
    task_id = await _finished(live_db, live_project)
    async with own_api(settings) as client:
        assert (await client.get(f"/v1/tasks/{task_id}", headers=key)).status_code == 200
        hits = _hits()
        other_key = await client.get(f"/v1/tasks/{task_id}", headers=others_key)
        other_user = await client.get(f"/v1/tasks/{task_id}", headers=auth_headers(outsider))
        member = await client.get(f"/v1/tasks/{task_id}", headers=auth_headers(viewer))
    assert _hits() == hits + 3  # all three came from the cache, and only one was let through
    assert other_key.status_code == other_user.status_code == 404
    assert other_key.json()["type"].endswith("task-not-found")
    assert member.status_code == 200


async def test_a_results_expiry_forgets_the_cached_copy_once_committed(
    settings: Settings,
    live_db: async_sessionmaker[AsyncSession],
    live_project: Project,
    redis: Redis,
) -> None:
    key = await _key(live_db, live_project)
    task_id = await _finished(live_db, live_project)
    async with own_api(settings) as client:
        assert (await client.get(f"/v1/tasks/{task_id}", headers=key)).status_code == 200
        assert await redis.exists(key_of("task", task_id)) == 1
        async with transaction(live_db) as session:
            expired = await expire_results(
                session,
                storage=Storage.from_settings(settings),
                finished_before=utc_now(),
                limit=10_000,
                redis=redis,
            )
        assert expired >= 1
        assert await redis.exists(key_of("task", task_id)) == 0
        again = await client.get(f"/v1/tasks/{task_id}", headers=key)
    assert again.json()["result"] is None


async def test_with_redis_away_reads_come_from_postgresql(
    settings: Settings, live_db: async_sessionmaker[AsyncSession], live_project: Project
) -> None:
    key = await _key(live_db, live_project)
    task_id = await _finished(live_db, live_project)
    away = settings.redis.model_copy(
        update={"url": f"redis://127.0.0.1:{free_port()}/0", "socket_timeout_s": 0.5}
    )
    async with own_api(settings.model_copy(update={"redis": away})) as client:
        answers = [await client.get(f"/v1/tasks/{task_id}", headers=key) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [200, 200, 200]
    assert answers[-1].json()["result"] == {"answer": 42}
