"""The scheduler: one loop that runs each domain's step, in order, every `scheduler_interval_s`.

1. tasks: retries due become queued, expired leases are put back, due tasks are published;
2. webhooks: due deliveries are published, within each endpoint's free slots;
3. files: expired files are deleted (every `files.retention_interval_s`);
4. tasks: old results are dropped (likewise);
5. files: the objects of deleted projects are deleted (likewise);
6. auth: expired refresh tokens and those of inactive users are deleted (likewise).
The retention steps come last: S3 trouble there never holds up the steps above. Several
schedulers may run: every step claims rows with `FOR UPDATE SKIP LOCKED`. A step is added by
writing it in its domain (`app/core/scheduling.py` says its shape) and listing it in `steps`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import wiring
from app.auth.scheduling import RefreshTokenPurge
from app.core import tracing
from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.core.metrics import watch_pool
from app.core.redis import create_redis
from app.core.scheduling import Step, StepContext
from app.files.project_sweep import ProjectObjectSweep
from app.files.retention import FileRetention
from app.files.storage import Storage
from app.tasks import backlog as task_backlog
from app.tasks import scheduling as task_scheduling
from app.tasks.retention import ResultRetention
from app.webhooks import scheduling as webhook_scheduling
from app.worker import enqueue

log = logging.getLogger(__name__)


def steps(settings: Settings) -> list[Step]:
    """Every domain's step, in the order a pass runs them (each keeps its own schedule)."""
    storage = Storage.from_settings(settings)
    return [
        task_scheduling.scheduler_step,
        # After the tasks' step: the tasks it failed for good are no longer counted.
        task_backlog.scheduler_step,
        webhook_scheduling.scheduler_step,
        FileRetention(storage),
        ResultRetention(storage),
        # An attempt running when its project was deleted may still write for up to its timeout.
        ProjectObjectSweep(storage, grace_s=settings.tasks.max_timeout_s + settings.tasks.lease_s),
        RefreshTokenPurge(
            interval_s=settings.files.retention_interval_s, batch=settings.files.retention_batch
        ),
    ]


async def tick(
    sessionmaker: async_sessionmaker[AsyncSession],
    publisher: enqueue.Publisher,
    redis: Redis,
    settings: Settings,
    *,
    steps: Sequence[Step] | None = None,
    watch: enqueue.BrokerWatch | None = None,
) -> dict[str, int]:
    """One pass (`steps` default: the tasks and webhooks steps); returns what each step did.
    `watch`: the loop's, so a broker that lost its data is noticed on the next pass."""
    lost = watch is not None and await watch.lost(redis)
    if lost:
        log.warning("the broker lost its data: publishing every waiting task and delivery again")
    context = StepContext(
        sessionmaker=sessionmaker, redis=redis, settings=settings, broker_lost=lost
    )
    done: dict[str, int] = {}
    # One trace per pass, not one per statement; what it publishes continues it.
    with tracing.span("scheduler pass"), enqueue.using(publisher):
        for step in steps if steps is not None else _PUBLISHING_STEPS:
            done.update(await step(context))
    if any(done.values()):
        log.info("scheduler pass", extra=done)
    return done


# The steps that only publish: a pass of these needs no S3.
_PUBLISHING_STEPS: tuple[Step, ...] = (
    task_scheduling.scheduler_step,
    webhook_scheduling.scheduler_step,
)


async def run_scheduler(settings: Settings) -> None:
    """Loop until SIGINT/SIGTERM; a failing pass is logged and retried on the next one."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    traced = wiring.wire_tracing(settings, "scheduler")
    engine = create_engine(settings.database.model_copy(update={"pool_size": 2}))
    watch_pool(engine, "scheduler")
    redis = create_redis(settings.redis)
    # Also for the events this loop records (reaped tasks): their deliveries are published.
    publisher = wiring.wire_process(settings, background=False)
    sessionmaker = create_sessionmaker(engine)
    every_step = steps(settings)
    watch = enqueue.BrokerWatch()
    log.info("scheduler started", extra={"interval_s": settings.tasks.scheduler_interval_s})
    try:
        while not stop.is_set():
            try:
                await tick(sessionmaker, publisher, redis, settings, steps=every_step, watch=watch)
            except Exception:  # PostgreSQL or Redis away: keep looping, nothing is lost
                log.exception("scheduler pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.tasks.scheduler_interval_s)
    finally:
        log.info("scheduler stopping")
        wiring.unwire_process()
        await publisher.close()
        await redis.aclose()
        await engine.dispose()
        if traced:
            tracing.shutdown()
