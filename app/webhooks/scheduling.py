"""Webhooks, the scheduler side: publish due deliveries (new, retries, and those whose job or
worker was lost), within each endpoint's free slots."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import WebhookSettings
from app.core.db import transaction, utc_now
from app.core.scheduling import StepContext
from app.webhooks import outbox
from app.webhooks.repository import DeliveryRepository
from app.worker import enqueue
from app.worker.names import Queue


async def scheduler_step(context: StepContext) -> dict[str, int]:
    published = await dispatch_due(
        context.sessionmaker,
        context.redis,
        context.settings.webhooks,
        limit=context.settings.tasks.scheduler_batch,
    )
    return {"webhooks": published}


async def claim_for_dispatch(
    session: AsyncSession, *, settings: WebhookSettings, redispatch: bool, limit: int
) -> Sequence[uuid.UUID]:
    """Due deliveries to publish (never published, or long ago when `redispatch`), within each
    endpoint's free slots."""
    now = utc_now()
    return await DeliveryRepository(session).claim_for_dispatch(
        now=now,
        stale_before=now - timedelta(seconds=settings.redispatch_after_s),
        redispatch=redispatch,
        concurrency=settings.endpoint_concurrency,
        limit=limit,
    )


async def dispatch_due(
    sessionmaker: async_sessionmaker[AsyncSession],
    redis: Redis,
    settings: WebhookSettings,
    *,
    limit: int,
) -> int:
    """Publish due deliveries through the current publisher; returns how many were published."""
    if not enqueue.available():
        return 0
    # A long-published delivery was lost (Redis flushed) only if its queue has drained.
    redispatch = Queue.webhooks in await enqueue.empty_queues(redis, [Queue.webhooks])
    with enqueue.tally() as published:
        async with transaction(sessionmaker) as session:
            due = await claim_for_dispatch(
                session, settings=settings, redispatch=redispatch, limit=limit
            )
            outbox.enqueue_deliveries(session, due)
    return published.sent
