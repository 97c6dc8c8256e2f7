"""Result retention: a scheduler step that drops the results of tasks that succeeded more than
`files.result_retention_days` ago, rows and S3 objects, in bounded batches (several schedulers
may run it at once: `SKIP LOCKED`; a pass interrupted halfway is simply done again)."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import after_commit, transaction, utc_now
from app.core.scheduling import StepContext
from app.events import service as event_service
from app.files import results as file_results
from app.files.retention import RetentionStep
from app.files.storage import Storage
from app.tasks import cache as task_cache
from app.tasks.repository import TaskRepository


async def expire_results(
    session: AsyncSession,
    *,
    storage: Storage,
    finished_before: datetime,
    limit: int,
    redis: Redis | None = None,
) -> int:
    """Drop the results of up to `limit` tasks that succeeded before `finished_before`, with their
    S3 objects (deleted before the commit; deleting again after a failed commit is harmless) and,
    once committed, their copies in the task cache (`cache.py`) on `redis`."""
    expired = await TaskRepository(session).expire_results(
        finished_before=finished_before, limit=limit
    )
    if redis is not None and expired:
        task_ids = [task_id for task_id, _, _ in expired]
        after_commit(session, functools.partial(task_cache.forget, redis, task_ids))
    await file_results.delete_results(storage, [key for _, _, key in expired if key is not None])
    for task_id, project_id, key in expired:
        event_service.record(
            session,
            "task.result_expired",
            project_id=project_id,
            subject_id=task_id,
            actor=None,
            data={"in_s3": key is not None},
        )
    return len(expired)


class ResultRetention(RetentionStep):
    """Results of tasks that succeeded longer ago than `files.result_retention_days`."""

    async def sweep_step(self, context: StepContext) -> dict[str, int]:
        """One batch; the task cache forgets what it expired."""
        return await self.sweep(context.sessionmaker, redis=context.redis)

    async def sweep(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        now: datetime | None = None,
        redis: Redis | None = None,
    ) -> dict[str, int]:
        """One batch."""
        now = now or utc_now()
        files = self.storage.files
        async with transaction(sessionmaker) as session:
            results = await expire_results(
                session,
                storage=self.storage,
                finished_before=now - timedelta(days=files.result_retention_days),
                limit=files.retention_batch,
                redis=redis,
            )
        return {"results_expired": results}
