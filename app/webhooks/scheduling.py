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
        broker_lost=context.broker_lost,
    )
    return {"webhooks": published}


async def claim_for_dispatch(
    session: AsyncSession,
    *,
    settings: WebhookSettings,
    redispatch: bool,
    limit: int,
    redispatch_after_s: float | None = None,
) -> Sequence[uuid.UUID]:
    """Due deliveries to publish (never published, or long ago when `redispatch`), within each
    endpoint's free slots. `redispatch_after_s`: how long ago (default: the settings')."""
    now = utc_now()
    after_s = settings.redispatch_after_s if redispatch_after_s is None else redispatch_after_s
    return await DeliveryRepository(session).claim_for_dispatch(
        now=now,
        stale_before=now - timedelta(seconds=after_s),
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
    broker_lost: bool = False,
) -> int:
    """Publish due deliveries through the current publisher; returns how many were published.
    `broker_lost`: every published delivery not yet claimed may be gone: publish them again."""
    if not enqueue.available():
        return 0
    if broker_lost:
        redispatch, after_s = True, 0.0
    else:  # a long-published delivery was lost (Redis flushed) only if its queue has drained
        redispatch = Queue.webhooks in await enqueue.empty_queues(redis, [Queue.webhooks])
        after_s = settings.redispatch_after_s
    with enqueue.tally() as published:
        async with transaction(sessionmaker) as session:
            due = await claim_for_dispatch(
                session,
                settings=settings,
                redispatch=redispatch,
                limit=limit,
                redispatch_after_s=after_s,
            )
            outbox.enqueue_deliveries(session, due)
    return published.sent
