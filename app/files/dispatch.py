"""Publishing `files.digest` jobs from the API: after commit, off the loop, never failing a request."""

from __future__ import annotations

import asyncio
import logging
import uuid

from celery import Celery
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import RedisError

from app.worker.names import Job, Queue

log = logging.getLogger(__name__)


class DigestPublisher:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def _send(self, file_id: uuid.UUID) -> None:
        self.celery.send_task(
            Job.digest_file.value,
            args=[str(file_id)],
            queue=Queue.low.value,
            routing_key=Queue.low.value,
            retry=False,
        )

    async def publish(self, file_id: uuid.UUID) -> bool:
        """Queue the sha256 of a ready file; False (logged) when the broker is away: calling
        `complete` again queues it again."""
        try:
            await asyncio.to_thread(self._send, file_id)
        except (OperationalError, KombuError, RedisError, OSError) as exc:
            log.warning(
                "could not queue a file digest", extra={"file_id": str(file_id), "error": repr(exc)}
            )
            return False
        return True
