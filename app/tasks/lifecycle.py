"""Tasks, the worker side: lease, heartbeat and end an attempt; no principal, every step
guarded by status and attempt, each with its event in the same transaction."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import TaskSettings
from app.core.db import utc_now
from app.tasks.models import ERROR_MESSAGE_LIMIT, Task, TaskStatus
from app.tasks.recording import record
from app.tasks.repository import TaskRepository


async def lease(
    session: AsyncSession, task_id: uuid.UUID, *, worker: str, lease_s: float
) -> Task | None:
    """Take a queued task for this worker; None when another took it or it is not queued."""
    task = await TaskRepository(session).lease(
        task_id, worker=worker, now=utc_now(), lease_s=lease_s
    )
    if task is not None:
        record(session, task, "task.started", data={"attempt": task.attempt, "worker": worker})
    return task


async def heartbeat(
    session: AsyncSession,
    task_id: uuid.UUID,
    *,
    attempt: int,
    lease_s: float,
    progress: tuple[float, str | None] | None,
) -> Task | None:
    """Renew the lease; None when it was lost (reaped). The task shows any cancel request."""
    return await TaskRepository(session).heartbeat(
        task_id, attempt=attempt, now=utc_now(), lease_s=lease_s, progress=progress
    )


async def succeed(
    session: AsyncSession, task: Task, *, result: Any, result_key: str | None = None
) -> Task | None:
    """End the attempt as succeeded, with its result inline or (large) under `result_key` in S3."""
    ended = await TaskRepository(session).end_attempt(
        task.id,
        attempt=task.attempt,
        status=TaskStatus.succeeded,
        result=result,
        result_key=result_key,
        error=None,
        progress=1.0,
        finished_at=utc_now(),
    )
    if ended is not None:
        record(session, ended, "task.succeeded", data={"attempt": ended.attempt})
        await TaskRepository(session).notify_finished(task.id)
    return ended


async def end_canceled(session: AsyncSession, task: Task) -> Task | None:
    ended = await TaskRepository(session).end_attempt(
        task.id,
        attempt=task.attempt,
        status=TaskStatus.canceled,
        finished_at=utc_now(),
        error={"type": "canceled", "message": "canceled while running"},
    )
    if ended is not None:
        record(session, ended, "task.canceled", data={"attempt": ended.attempt})
        await TaskRepository(session).notify_finished(task.id)
    return ended


def retry_delay(attempt: int, *, base_s: float, cap_s: float) -> float:
    """Exponential backoff with full jitter on the upper half: base·2^(attempt-1), capped."""
    ceiling = min(cap_s, base_s * 2.0 ** max(attempt - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not security)


async def fail_attempt(
    session: AsyncSession,
    task: Task,
    *,
    error_type: str,
    message: str,
    retryable: bool,
    limits: TaskSettings,
) -> Task | None:
    """End a failed attempt: `retrying` with backoff while attempts remain, else `failed`."""
    # jsonb refuses NUL characters; an error message must always be storable.
    error = {"type": error_type, "message": message.replace("\x00", "")[:ERROR_MESSAGE_LIMIT]}
    now = utc_now()
    repository = TaskRepository(session)
    if retryable and task.attempt < task.max_attempts:
        delay = retry_delay(task.attempt, base_s=limits.retry_base_s, cap_s=limits.retry_cap_s)
        ended = await repository.end_attempt(
            task.id,
            attempt=task.attempt,
            status=TaskStatus.retrying,
            error=error,
            run_at=now + timedelta(seconds=delay),
            dispatched_at=None,
        )
        if ended is not None:
            record(
                session,
                ended,
                "task.retrying",
                data={"attempt": ended.attempt, "error": error, "delay_s": round(delay, 3)},
            )
        return ended
    ended = await repository.end_attempt(
        task.id, attempt=task.attempt, status=TaskStatus.failed, error=error, finished_at=now
    )
    if ended is not None:
        record(session, ended, "task.failed", data={"attempt": ended.attempt, "error": error})
        await repository.notify_finished(task.id)
    return ended
