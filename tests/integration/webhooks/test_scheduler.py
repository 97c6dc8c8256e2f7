"""The scheduler's webhook step against the real database and broker.

Rows committed by end-to-end tests of the same session may be due too: assertions look at this
test's deliveries only.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings, WebhookSettings
from app.core.db import transaction, utc_now
from app.projects.models import Project
from app.webhooks import scheduling
from app.webhooks.models import WebhookDelivery
from app.worker import enqueue
from app.worker.enqueue import Publisher
from app.worker.scheduler import tick
from tests.integration.webhooks.conftest import deliveries_of, emit, make_endpoint, reload

URL = "https://hooks.example.com/taskgate"


@pytest.fixture
def deliveries_publisher(publisher: Publisher) -> Publisher:
    return publisher


async def dispatch_due(
    db: async_sessionmaker[AsyncSession],
    publisher: Publisher,
    redis: Redis,
    settings: WebhookSettings,
    *,
    limit: int,
) -> int:
    with enqueue.using(publisher):
        return await scheduling.dispatch_due(db, redis, settings, limit=limit)


@pytest.fixture
async def empty_queue(redis: Redis) -> AsyncIterator[Redis]:
    await redis.delete("webhooks")
    yield redis
    await redis.delete("webhooks")


async def queued_delivery_ids(redis: Redis) -> list[str]:
    ids = []
    for raw in await redis.lrange("webhooks", 0, -1):
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        assert message["headers"]["task"] == "webhooks.deliver"
        ids.append(args[0])
    return ids


async def set_delivery(
    db: async_sessionmaker[AsyncSession], delivery: WebhookDelivery, **values: object
) -> None:
    async with transaction(db) as session:
        await session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(**values)
        )


class TestDispatchDue:
    async def test_publishes_due_deliveries_once(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        settings: Settings,
        deliveries_publisher: Publisher,
        empty_queue: Redis,
    ) -> None:
        await make_endpoint(db, project, URL)
        [due] = await deliveries_of(db, (await emit(db, project)).id)
        [later] = await deliveries_of(db, (await emit(db, project)).id)
        await set_delivery(db, later, next_attempt_at=utc_now() + timedelta(minutes=5))

        first = await dispatch_due(
            db, deliveries_publisher, empty_queue, settings.webhooks, limit=100
        )
        second = await dispatch_due(
            db, deliveries_publisher, empty_queue, settings.webhooks, limit=100
        )

        assert first >= 1
        assert second >= 0
        queued = await queued_delivery_ids(empty_queue)
        assert queued.count(str(due.id)) == 1
        assert str(later.id) not in queued
        assert (await reload(db, due.id)).dispatched_at is not None

    async def test_publishes_no_more_than_an_endpoint_has_free_slots(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        settings: Settings,
        deliveries_publisher: Publisher,
        empty_queue: Redis,
    ) -> None:
        await make_endpoint(db, project, URL)
        other = await make_endpoint(db, project, URL, failing_since=utc_now())
        deliveries = [(await deliveries_of(db, (await emit(db, project)).id)) for _ in range(3)]
        in_flight = next(d for d in deliveries[0] if d.endpoint_id != other.id)
        await set_delivery(db, in_flight, claimed_until=utc_now() + timedelta(minutes=1))
        webhook_settings = settings.webhooks.model_copy(update={"endpoint_concurrency": 2})

        await dispatch_due(db, deliveries_publisher, empty_queue, webhook_settings, limit=100)

        # One more for the healthy endpoint (one of two slots is taken), one for the failing one.
        queued = set(await queued_delivery_ids(empty_queue))
        assert sum(1 for batch in deliveries for d in batch if str(d.id) in queued) == 2

    async def test_a_delivery_published_long_ago_is_published_again_once_its_queue_is_empty(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        settings: Settings,
        deliveries_publisher: Publisher,
        empty_queue: Redis,
    ) -> None:
        await make_endpoint(db, project, URL)
        [lost] = await deliveries_of(db, (await emit(db, project)).id)
        long_ago = utc_now() - timedelta(minutes=5)
        await set_delivery(db, lost, dispatched_at=long_ago)
        await empty_queue.rpush("webhooks", b"{}")  # the queue still holds jobs: they may be it

        await dispatch_due(db, deliveries_publisher, empty_queue, settings.webhooks, limit=100)
        while_busy = (await reload(db, lost.id)).dispatched_at
        await empty_queue.delete("webhooks")
        await dispatch_due(db, deliveries_publisher, empty_queue, settings.webhooks, limit=100)

        assert while_busy == long_ago
        assert str(lost.id) in await queued_delivery_ids(empty_queue)

    async def test_the_scheduler_pass_runs_the_step(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        settings: Settings,
        empty_queue: Redis,
        publisher: Publisher,
    ) -> None:
        await make_endpoint(db, project, URL)
        [delivery] = await deliveries_of(db, (await emit(db, project)).id)

        done = await tick(db, publisher, empty_queue, settings)

        assert done["webhooks"] >= 1
        assert str(delivery.id) in await queued_delivery_ids(empty_queue)
