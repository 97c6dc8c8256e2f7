"""The scheduler's passes against the real database and broker."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import transaction, utc_now
from app.core.redis import create_redis
from app.projects.models import Project
from app.tasks import scheduling
from app.tasks.models import Priority, TaskStatus
from app.worker.enqueue import Publisher
from app.worker.scheduler import tick
from tests.integration.tasks.conftest import event_kinds, make_task, reload
from tests.support import free_port


@pytest.fixture
async def dead_publisher(settings: Settings) -> AsyncIterator[Publisher]:
    dead = settings.model_copy(
        update={
            "redis": settings.redis.model_copy(update={"url": f"redis://127.0.0.1:{free_port()}/0"})
        }
    )
    publisher = Publisher(create_redis(dead.redis), breaker_s=5)
    yield publisher
    await publisher.close()


async def queued_task_ids(redis: Redis, queue: str) -> list[str]:
    """Task ids of the `tasks.execute` jobs waiting in a Celery queue on Redis."""
    ids = []
    for raw in await redis.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        if message["headers"]["task"] == "tasks.execute":
            ids.extend(args)  # one task per job, or several (a backed-up queue)
    return ids


class TestReapExpiredLeases:
    async def _expired(
        self, db: async_sessionmaker[AsyncSession], project: Project, **fields: object
    ) -> uuid.UUID:
        task = await make_task(
            db,
            project,
            status=TaskStatus.running,
            lease_expires_at=utc_now() - timedelta(seconds=1),
            **fields,
        )
        async with transaction(db) as session:
            await scheduling.reap_expired_leases(session, limit=100)
        return task.id

    async def test_a_task_with_attempts_left_is_queued_again(
        self, db: async_sessionmaker[AsyncSession], project: Project
    ) -> None:
        task_id = await self._expired(db, project, attempt=1, max_attempts=3)

        task = await reload(db, task_id)
        assert task.status == TaskStatus.queued
        assert task.dispatched_at is None
        assert task.lease_expires_at is None
        assert await event_kinds(db, task_id) == ["task.requeued"]

    async def test_a_task_out_of_attempts_fails(
        self, db: async_sessionmaker[AsyncSession], project: Project
    ) -> None:
        task_id = await self._expired(db, project, attempt=3, max_attempts=3)

        task = await reload(db, task_id)
        assert task.status == TaskStatus.failed
        assert task.error == {"type": "lease_expired", "message": "the worker stopped responding"}
        assert await event_kinds(db, task_id) == ["task.failed"]

    async def test_a_task_asked_to_cancel_ends_canceled(
        self, db: async_sessionmaker[AsyncSession], project: Project
    ) -> None:
        task_id = await self._expired(db, project, attempt=1, cancel_requested_at=utc_now())

        assert (await reload(db, task_id)).status == TaskStatus.canceled
        assert await event_kinds(db, task_id) == ["task.canceled"]

    async def test_a_live_lease_is_left_alone(
        self, db: async_sessionmaker[AsyncSession], project: Project
    ) -> None:
        task = await make_task(
            db,
            project,
            status=TaskStatus.running,
            attempt=1,
            lease_expires_at=utc_now() + timedelta(seconds=30),
        )

        async with transaction(db) as session:
            await scheduling.reap_expired_leases(session, limit=100)

        assert (await reload(db, task.id)).status == TaskStatus.running


class TestDispatchPass:
    async def test_publishes_undispatched_due_tasks_to_their_priority_queue(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        publisher: Publisher,
        redis: Redis,
        settings: Settings,
    ) -> None:
        task = await make_task(db, project, priority=Priority.high)

        await tick(db, publisher, redis, settings)

        assert str(task.id) in await queued_task_ids(redis, "high")
        assert (await reload(db, task.id)).dispatched_at is not None

    async def test_leaves_tasks_that_are_not_due(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        publisher: Publisher,
        redis: Redis,
        settings: Settings,
    ) -> None:
        task = await make_task(db, project, run_at=utc_now() + timedelta(hours=1))

        await tick(db, publisher, redis, settings)

        assert (await reload(db, task.id)).dispatched_at is None

    async def test_republishes_a_long_dispatched_task_once_its_queue_is_empty(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        publisher: Publisher,
        redis: Redis,
        settings: Settings,
    ) -> None:
        stale = utc_now() - timedelta(seconds=settings.tasks.redispatch_after_s + 1)
        task = await make_task(db, project, priority=Priority.low, dispatched_at=stale)
        await redis.delete("low")  # as after a Redis flush

        await tick(db, publisher, redis, settings)

        assert await queued_task_ids(redis, "low") == [str(task.id)]

    async def test_does_not_republish_while_its_queue_still_holds_jobs(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        publisher: Publisher,
        redis: Redis,
        settings: Settings,
    ) -> None:
        stale = utc_now() - timedelta(seconds=settings.tasks.redispatch_after_s + 1)
        task = await make_task(db, project, priority=Priority.low, dispatched_at=stale)
        await redis.delete("low")
        await redis.lpush("low", json.dumps({"headers": {"task": "other"}, "body": ""}))

        await tick(db, publisher, redis, settings)

        assert (await reload(db, task.id)).dispatched_at == stale
        await redis.delete("low")

    async def test_promotes_retries_whose_backoff_has_passed(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        publisher: Publisher,
        redis: Redis,
        settings: Settings,
    ) -> None:
        task = await make_task(
            db,
            project,
            status=TaskStatus.retrying,
            attempt=1,
            run_at=utc_now() - timedelta(seconds=1),
        )

        await tick(db, publisher, redis, settings)

        assert (await reload(db, task.id)).status == TaskStatus.queued
        assert str(task.id) in await queued_task_ids(redis, "default")

    async def test_a_broker_outage_leaves_tasks_undispatched_for_the_next_pass(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        dead_publisher: Publisher,
        redis: Redis,
        settings: Settings,
    ) -> None:
        task = await make_task(db, project)

        done = await tick(db, dead_publisher, redis, settings)

        assert done["failed"] >= 1
        assert (await reload(db, task.id)).dispatched_at is None
        assert dead_publisher.is_open
