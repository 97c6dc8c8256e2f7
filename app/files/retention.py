"""Retention: the scheduler's step that deletes expired files and task results, rows and objects.

Files carry their own `expires_at` (outputs: `output_retention_days` after they were written;
abandoned presigned uploads: `pending_upload_ttl_s`; uploads only if `upload_retention_days` is
set). Results of succeeded tasks are dropped `result_retention_days` after the task finished.
Each pass handles bounded batches; several schedulers may run it at once (`SKIP LOCKED`), and a
pass interrupted halfway is simply done again.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import transaction, utc_now
from app.files import service as file_service
from app.files.storage import Storage, StorageError
from app.tasks import service as task_service

log = logging.getLogger(__name__)


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession], storage: Storage, *, now: datetime | None = None
) -> dict[str, int]:
    """One batch of each: expired files, then expired task results."""
    now = now or utc_now()
    settings = storage.files
    async with transaction(sessionmaker) as session:
        files = await file_service.delete_expired(
            session, storage=storage, now=now, limit=settings.retention_batch
        )
    async with transaction(sessionmaker) as session:
        results = await task_service.expire_results(
            session,
            storage=storage,
            finished_before=now - timedelta(days=settings.result_retention_days),
            limit=settings.retention_batch,
        )
    return {"files_expired": files, "results_expired": results}


class Retention:
    """Runs `sweep` every `retention_interval_s`, and again at once while batches come back full."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._next_run = 0.0  # the first scheduler pass sweeps

    async def run_if_due(self, sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
        started = time.monotonic()
        if started < self._next_run:
            return {}
        # Set before sweeping: a failing S3 or database is retried next interval, not every pass.
        self._next_run = started + self.storage.files.retention_interval_s
        try:
            done = await sweep(sessionmaker, self.storage)
        except StorageError as exc:  # its batch rolled back: the next interval does it again
            log.warning("retention skipped: S3 failed", extra={"error": str(exc)})
            return {}
        if max(done.values()) >= self.storage.files.retention_batch:
            self._next_run = started  # more is due: continue on the next pass
        return done
