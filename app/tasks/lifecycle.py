"""Tasks, the worker side: lease, heartbeat and end an attempt; no principal, every step
guarded by status and attempt, each with its event in the same transaction."""

from __future__ import annotations

import functools
import random
import uuid
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import TaskSettings
from app.core.db import after_commit, sessionmaker_of, utc_now
from app.core.sql import Params, driver_of
from app.events.statement import EventBatch
from app.tasks import statements
from app.tasks.models import ERROR_MESSAGE_LIMIT, Task, TaskStatus
from app.tasks.recording import record, recorded
from app.tasks.repository import FINISHED_CHANNEL, TaskRepository


async def lease(
    session: AsyncSession, task_id: uuid.UUID, *, worker: str, lease_s: float
) -> Task | None:
    """Take a queued task for this worker; None when another took it or it is not queued.

    Committed without waiting for the WAL flush (`synchronous_commit = off`): a lease lost in a
    PostgreSQL crash costs at most a re-run of the attempt (its finish then finds no lease and is
    discarded), and every later durable commit, such as the finish, flushes it first."""
    connection = await driver_of(session)
    now = utc_now()
    task = await statements.lease(
        connection, task_id, worker=worker, now=now, lease_until=now + timedelta(seconds=lease_s)
    )
    if task is not None:
        data = {"attempt": task.attempt, "worker": worker}
        await _record(session, connection, task, "task.started", data=data, durable=False)
    return task


async def _record(
    session: AsyncSession,
    connection: asyncpg.Connection,
    task: Task,
    kind: str,
    *,
    data: dict[str, Any],
    durable: bool = True,
    notify: bool = False,
) -> None:
    """`record` in one statement of its own: the event and its subscribers' rows; with
    `notify`, long-polls wake on commit; without `durable`, the commit does not wait for disk."""
    events = EventBatch([recorded(task, kind, data=data)])
    p = Params()
    also = ""
    if notify:
        also += f", pg_notify({p(FINISHED_CHANNEL)}, {p(str(task.id))}) IS NULL AS notified"
    if not durable:
        also += ", set_config('synchronous_commit', 'off', true) AS relaxed"
    row = await events.insert(connection, p, also=also)
    sessionmaker = sessionmaker_of(session)
    after_commit(session, functools.partial(events.written, row, sessionmaker))


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
    connection = await driver_of(session)
    ended = await statements.succeed(
        connection, task, result=result, result_key=result_key, now=utc_now()
    )
    if ended is not None:
        data = {"attempt": ended.attempt}
        await _record(session, connection, ended, "task.succeeded", data=data, notify=True)
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
