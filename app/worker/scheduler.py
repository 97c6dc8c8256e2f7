"""The scheduler: one loop that keeps PostgreSQL and the broker in step.

Each pass (every `scheduler_interval_s`):
1. retrying tasks whose backoff has passed become queued;
2. running tasks whose lease expired are put back (or failed, or canceled);
3. due queued tasks that were never published, or were published long ago on a queue that is
   now empty (Redis flushed or restarted), are published;
4. due webhook deliveries (new, retries, or lost with a killed worker or a flushed Redis) are
   published, within each endpoint's free slots;
5. every `files.retention_interval_s`, expired files and task results are deleted (retention).
Several schedulers may run: every step claims rows with `FOR UPDATE SKIP LOCKED`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from celery import Celery
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker, transaction
from app.core.redis import create_redis
from app.files.retention import Retention
from app.files.storage import Storage
from app.tasks import service as task_service
from app.tasks.dispatch import Publisher
from app.tasks.models import Priority
from app.webhooks import delivery as webhook_delivery
from app.webhooks import dispatch as webhook_dispatch
from app.worker.celery_app import create_celery

log = logging.getLogger(__name__)


async def _empty_queues(redis: Redis) -> list[Priority]:
    """Priorities whose broker queue is empty: a stale task there was lost, not just waiting."""
    try:
        lengths = [await redis.llen(priority.value) for priority in Priority]
    except (RedisError, OSError):
        return []
    return [priority for priority, length in zip(Priority, lengths, strict=True) if length == 0]


async def tick(
    sessionmaker: async_sessionmaker[AsyncSession],
    publisher: Publisher,
    redis: Redis,
    settings: Settings,
    *,
    retention: Retention | None = None,
    deliveries: webhook_dispatch.DeliveryPublisher | None = None,
) -> dict[str, int]:
    """One pass of the scheduler; returns what it did, for logs and tests."""
    limits = settings.tasks
    async with transaction(sessionmaker) as session:
        promoted = await task_service.promote_due_retries(session, limit=limits.scheduler_batch)
    async with transaction(sessionmaker) as session:
        reaped = await task_service.reap_expired_leases(session, limit=limits.scheduler_batch)
    published = failed = 0
    if not publisher.is_open:
        empty = await _empty_queues(redis)
        async with transaction(sessionmaker) as session:
            claimed = await task_service.claim_for_dispatch(
                session,
                redispatch_after_s=limits.redispatch_after_s,
                redispatch_priorities=empty,
                limit=limits.scheduler_batch,
            )
        if claimed:
            unpublished = await asyncio.to_thread(publisher.publish_many, claimed)
            if unpublished:
                async with transaction(sessionmaker) as session:
                    await task_service.forget_dispatch(session, unpublished)
            failed = len(unpublished)
            published = len(claimed) - failed
    done = {"promoted": promoted, "reaped": len(reaped), "published": published, "failed": failed}
    done["webhooks"] = await webhook_delivery.dispatch_due(
        sessionmaker,
        deliveries or _delivery_publisher(publisher.celery, settings),
        redis,
        settings.webhooks,
        limit=limits.scheduler_batch,
    )
    if retention is not None:  # last: S3 trouble here never holds up the steps above
        done.update(await retention.run_if_due(sessionmaker))
    if any(done.values()):
        log.info("scheduler pass", extra=done)
    return done


def _delivery_publisher(celery: Celery, settings: Settings) -> webhook_dispatch.DeliveryPublisher:
    return webhook_dispatch.DeliveryPublisher(
        celery,
        timeout_s=settings.webhooks.timeout_s,
        breaker_s=settings.tasks.publish_breaker_s,
        background=False,
    )


async def run_scheduler(settings: Settings) -> None:
    """Loop until SIGINT/SIGTERM; a failing pass is logged and retried on the next one."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    engine = create_engine(settings.database.model_copy(update={"pool_size": 2}))
    redis = create_redis(settings.redis)
    celery = create_celery(settings)
    publisher = Publisher(celery, breaker_s=settings.tasks.publish_breaker_s)
    sessionmaker = create_sessionmaker(engine)
    retention = Retention(Storage.from_settings(settings))
    deliveries = _delivery_publisher(celery, settings)
    webhook_dispatch.install(deliveries)  # for the events this loop records (reaped tasks)
    log.info("scheduler started", extra={"interval_s": settings.tasks.scheduler_interval_s})
    try:
        while not stop.is_set():
            try:
                await tick(
                    sessionmaker,
                    publisher,
                    redis,
                    settings,
                    retention=retention,
                    deliveries=deliveries,
                )
            except Exception:  # PostgreSQL or Redis away: keep looping, nothing is lost
                log.exception("scheduler pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.tasks.scheduler_interval_s)
    finally:
        log.info("scheduler stopping")
        webhook_dispatch.uninstall(deliveries)
        celery.close()
        await redis.aclose()
        await engine.dispose()
