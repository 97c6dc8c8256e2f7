"""Publishing tasks to Celery: off the event loop, never blocking a request on a broker outage.

A publish that fails leaves the task queued and undispatched; the scheduler publishes it later.
After a failure the breaker stays open for `publish_breaker_s`, so an outage costs one timeout,
not one per request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Sequence

from celery import Celery
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import transaction
from app.tasks.models import Priority
from app.tasks.repository import TaskRepository
from app.worker.names import Job

log = logging.getLogger(__name__)


# Seconds past the task's own timeout before Celery kills the pool process running it.
HARD_LIMIT_GRACE_S = 30


class Publisher:
    def __init__(self, celery: Celery, *, breaker_s: float) -> None:
        self.celery = celery
        self.breaker_s = breaker_s
        self._open_until = 0.0
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def publish(self, task_id: uuid.UUID, priority: Priority, timeout_s: int) -> bool:
        """Send one `tasks.execute` job; False (and the breaker opens) when the broker fails."""
        if self.is_open:
            return False
        try:
            self.celery.send_task(
                Job.execute_task.value,
                args=[str(task_id)],
                queue=priority.value,
                routing_key=priority.value,
                time_limit=timeout_s + HARD_LIMIT_GRACE_S,
                retry=False,
            )
        except (OperationalError, KombuError, RedisError, OSError) as exc:
            with self._lock:
                self._open_until = time.monotonic() + self.breaker_s
            log.warning(
                "publish failed; the scheduler will dispatch later",
                extra={"task_id": str(task_id), "error": repr(exc)},
            )
            return False
        return True

    def publish_many(self, tasks: Sequence[tuple[uuid.UUID, Priority, int]]) -> list[uuid.UUID]:
        """Publish in order; return the ids that were not published."""
        failed: list[uuid.UUID] = []
        for index, (task_id, priority, timeout_s) in enumerate(tasks):
            if not self.publish(task_id, priority, timeout_s):
                failed.extend(task_id for task_id, _, _ in tasks[index:])
                break
        return failed


class BackgroundDispatcher:
    """Publishes right after commit without delaying the response; keeps its tasks referenced."""

    def __init__(
        self, publisher: Publisher, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self.publisher = publisher
        self.sessionmaker = sessionmaker
        self._pending: set[asyncio.Task[bool]] = set()

    def dispatch_soon(self, task_id: uuid.UUID, priority: Priority, timeout_s: int) -> None:
        job = asyncio.create_task(self._publish(task_id, priority, timeout_s))
        self._pending.add(job)
        job.add_done_callback(self._pending.discard)

    async def _publish(self, task_id: uuid.UUID, priority: Priority, timeout_s: int) -> bool:
        published = await asyncio.to_thread(self.publisher.publish, task_id, priority, timeout_s)
        if not published:
            try:
                async with transaction(self.sessionmaker) as session:
                    await TaskRepository(session).forget_dispatch([task_id])
            except Exception:  # the scheduler re-publishes stale dispatches anyway
                log.exception("could not mark a task undispatched", extra={"task_id": str(task_id)})
        return published

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for in-flight publishes (on shutdown)."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=timeout_s)
