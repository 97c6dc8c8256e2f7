"""File retention: the files' scheduler step, deleting expired files, rows and objects.

Files carry their own `expires_at` (outputs: `output_retention_days` after they were written;
abandoned presigned uploads: `pending_upload_ttl_s`; uploads only if `upload_retention_days` is
set). Each pass handles a bounded batch; several schedulers may run it at once (`SKIP LOCKED`),
and a pass interrupted halfway is simply done again. (Task results: `app/tasks/retention.py`.)
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import transaction, utc_now
from app.core.scheduling import Periodic, StepContext
from app.files import service as file_service
from app.files.storage import Storage, StorageError


class RetentionStep(Periodic):
    """A sweep of S3-backed data: every `files.retention_interval_s`, again at once while its
    batches come back full; an S3 failure waits for the next interval."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        super().__init__(
            self.sweep_step,
            interval_s=storage.files.retention_interval_s,
            batch=storage.files.retention_batch,
            skip_on=(StorageError,),
        )

    async def sweep_step(self, context: StepContext) -> dict[str, int]:
        """One batch, as a scheduler pass runs it."""
        return await self.sweep(context.sessionmaker)

    async def sweep(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None
    ) -> dict[str, int]:
        raise NotImplementedError


class FileRetention(RetentionStep):
    """Expired files."""

    async def sweep(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None
    ) -> dict[str, int]:
        """One batch."""
        now = now or utc_now()
        async with transaction(sessionmaker) as session:
            files = await file_service.delete_expired(
                session,
                storage=self.storage,
                now=now,
                limit=self.storage.files.retention_batch,
            )
        return {"files_expired": files}
