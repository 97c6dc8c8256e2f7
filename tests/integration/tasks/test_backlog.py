"""Backpressure: a project's `max_queued_tasks` and the platform's `tasks.max_unfinished_tasks`
refuse submits before anything is written; a pass of the scheduler frees what finished."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.config import Settings
from app.core.db import transaction
from app.core.ratelimit import ALL_PROJECTS, BACKLOG_KEY
from app.core.scheduling import StepContext
from app.projects.limits import project_limits
from app.projects.models import Project, Role
from app.tasks import backlog
from app.tasks.models import Task, TaskStatus
from tests.factories import add_member, auth_headers, make_user
from tests.support import own_api


async def _owner(db: async_sessionmaker[AsyncSession], project: Project) -> User:
    async with transaction(db) as session:
        owner = await session.get(User, project.owner_id)
    assert owner is not None
    return owner


async def _submit(
    client: httpx.AsyncClient, project: Project, user: User, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/projects/{project.id}/tasks",
        json={"type": "echo", "input": {}, **body},
        headers=auth_headers(user),
    )


async def _held(redis: Redis, field: str) -> int:
    return int(await redis.hget(BACKLOG_KEY, field) or 0)


async def _written(db: async_sessionmaker[AsyncSession], project: Project) -> int:
    async with transaction(db) as session:
        count = await session.scalar(
            select(func.count()).select_from(Task).where(Task.project_id == project.id)
        )
    return int(count or 0)


async def test_a_project_at_its_cap_is_refused_before_writing_until_tasks_finish(
    settings: Settings,
    live_db: async_sessionmaker[AsyncSession],
    live_project: Project,
    redis: Redis,
) -> None:
    project = live_project
    owner = await _owner(live_db, project)
    async with own_api(settings) as client:
        patched = await client.patch(
            f"/v1/projects/{project.id}",
            json={"settings": {"max_queued_tasks": 3}},
            headers=auth_headers(owner),
        )
        assert patched.status_code == 200
        answers = await asyncio.gather(*(_submit(client, project, owner) for _ in range(12)))
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [202] * 3 + [429] * 9
        refused = next(answer for answer in answers if answer.status_code == 429)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith("backlog-full")
        assert "3 unfinished tasks" in refused.json()["detail"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert await _written(live_db, project) == 3
        assert await _held(redis, str(project.id)) == 3

        # The three finish (canceled while queued): their places come back with the next pass.
        for answer in answers:
            if answer.status_code == 202:
                canceled = await client.post(
                    f"/v1/tasks/{answer.json()['id']}/cancel", headers=auth_headers(owner)
                )
                assert canceled.status_code in (200, 202), canceled.text
        assert (await _submit(client, project, owner)).status_code == 429
        done = await backlog.scheduler_step(StepContext(live_db, redis, settings))
        assert done["backlog_unfinished"] >= 0
        assert await _held(redis, str(project.id)) == 0
        assert (await _submit(client, project, owner)).status_code == 202
    project_limits.clear()


async def test_two_api_processes_share_the_cap_and_write_no_more_than_it(
    settings: Settings,
    live_db: async_sessionmaker[AsyncSession],
    live_project: Project,
    redis: Redis,
) -> None:
    """Two APIs, each with its engine, Redis client and batched admission (as two processes
    have), taking concurrent submits of one project: the cap holds across both."""
    project = live_project
    owner = await _owner(live_db, project)
    async with own_api(settings) as first, own_api(settings) as second:
        patched = await first.patch(
            f"/v1/projects/{project.id}",
            json={"settings": {"max_queued_tasks": 4}},
            headers=auth_headers(owner),
        )
        assert patched.status_code == 200
        answers = await asyncio.gather(
            *(_submit((first, second)[i % 2], project, owner) for i in range(20))
        )
    codes = sorted(answer.status_code for answer in answers)
    assert codes == [202] * 4 + [429] * 16
    assert await _written(live_db, project) == 4
    assert await _held(redis, str(project.id)) == 4
    project_limits.clear()


async def test_refused_or_invalid_submits_take_no_place(
    settings: Settings,
    live_db: async_sessionmaker[AsyncSession],
    live_project: Project,
    redis: Redis,
) -> None:
    project = live_project
    async with transaction(live_db) as session:
        viewer = await make_user(session)
        await add_member(session, project, viewer, Role.viewer)
    owner = await _owner(live_db, project)
    async with own_api(settings) as client:
        invalid = await _submit(client, project, owner, type="no.such.type")
        forbidden = await _submit(client, project, viewer)
    assert invalid.status_code == 422
    assert forbidden.status_code == 403
    assert await _held(redis, str(project.id)) == 0


async def test_the_platform_at_its_cap_answers_503(
    settings: Settings,
    live_db: async_sessionmaker[AsyncSession],
    live_project: Project,
    redis: Redis,
) -> None:
    project = live_project
    owner = await _owner(live_db, project)
    held = await _held(redis, ALL_PROJECTS)
    capped = settings.model_copy(
        update={"tasks": settings.tasks.model_copy(update={"max_unfinished_tasks": held + 2})}
    )
    async with own_api(capped) as client:
        codes = [(await _submit(client, project, owner)).status_code for _ in range(4)]
        last = await _submit(client, project, owner)
    assert codes == [202, 202, 503, 503]
    assert last.json()["type"].endswith("system-backlog-full")
    assert int(last.headers["Retry-After"]) >= 1
    assert await _written(live_db, project) == 2


async def test_a_pass_sets_every_count_back_to_what_postgresql_holds(
    settings: Settings,
    live_db: async_sessionmaker[AsyncSession],
    live_project: Project,
    redis: Redis,
) -> None:
    project = live_project
    owner = await _owner(live_db, project)
    async with own_api(settings) as client:
        for _ in range(3):
            assert (await _submit(client, project, owner)).status_code == 202
    # Redis loses the counts (a flush), and one count is wrong the other way.
    await redis.hdel(BACKLOG_KEY, str(project.id))
    await redis.hset(BACKLOG_KEY, "00000000-0000-4000-8000-000000000000", 7)
    await backlog.scheduler_step(StepContext(live_db, redis, settings))
    assert await _held(redis, str(project.id)) == 3
    assert await redis.hget(BACKLOG_KEY, "00000000-0000-4000-8000-000000000000") is None
    async with transaction(live_db) as session:
        unfinished = await session.scalar(
            select(func.count())
            .select_from(Task)
            .where(Task.status.in_([TaskStatus.queued, TaskStatus.retrying, TaskStatus.running]))
        )
    assert await _held(redis, ALL_PROJECTS) == unfinished
