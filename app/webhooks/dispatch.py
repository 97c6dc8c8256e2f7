"""Publishing `webhooks.deliver` jobs: right after commit where a publisher is installed.

Each process that records events installs one (the API in its lifespan, each worker process,
the scheduler). Without one, or when publishing fails, nothing is lost: deliveries are rows,
and the scheduler publishes due ones on its next pass.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Sequence

from celery import Celery
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError

from app.worker.names import Job, Queue

log = logging.getLogger(__name__)

# Seconds past the attempt timeout before Celery kills a pool process stuck in a delivery.
HARD_LIMIT_GRACE_S = 30


class DeliveryPublisher:
    """Sends `webhooks.deliver` jobs; after a broker failure it stops trying for `breaker_s`."""

    def __init__(
        self, celery: Celery, *, timeout_s: float, breaker_s: float, background: bool
    ) -> None:
        self.celery = celery
        self.time_limit = int(timeout_s) + HARD_LIMIT_GRACE_S
        self.breaker_s = breaker_s
        # In the API: publish in a background coroutine, so the response does not wait for it.
        self.background = background
        self._open_until = 0.0
        self._lock = threading.Lock()
        self._pending: set[asyncio.Task[list[uuid.UUID]]] = set()

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def publish(self, delivery_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """Publish in order (blocking); return the ids that were not published."""
        for index, delivery_id in enumerate(delivery_ids):
            if self.is_open:
                return list(delivery_ids[index:])
            try:
                self.celery.send_task(
                    Job.deliver_webhook.value,
                    args=[str(delivery_id)],
                    queue=Queue.webhooks.value,
                    routing_key=Queue.webhooks.value,
                    time_limit=self.time_limit,
                    retry=False,
                )
            except (OperationalError, KombuError, RedisError, OSError) as exc:
                with self._lock:
                    self._open_until = time.monotonic() + self.breaker_s
                log.warning(
                    "webhook publish failed; the scheduler will publish later",
                    extra={"delivery_id": str(delivery_id), "error": repr(exc)},
                )
                return list(delivery_ids[index:])
        return []

    def publish_soon(self, delivery_ids: Sequence[uuid.UUID]) -> Awaitable[object] | None:
        """An after-commit callback: publish off the event loop, in the background in the API."""
        work = asyncio.to_thread(self.publish, list(delivery_ids))
        if not self.background:
            return work
        job = asyncio.ensure_future(work)
        self._pending.add(job)
        job.add_done_callback(self._pending.discard)
        return None

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for background publishes (on shutdown)."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=timeout_s)


_installed: DeliveryPublisher | None = None


def install(publisher: DeliveryPublisher) -> None:
    """Make `publisher` the one this process publishes through after commit."""
    global _installed
    _installed = publisher


def uninstall(publisher: DeliveryPublisher) -> None:
    global _installed
    if _installed is publisher:
        _installed = None


def installed() -> DeliveryPublisher | None:
    return _installed
