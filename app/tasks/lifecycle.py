"""Tasks, the worker side: lease, heartbeat and end an attempt; no principal, every step
guarded by status and attempt, each with its event in the same transaction."""

from __future__ import annotations

import functools
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import TaskSettings
from app.core.db import AfterCommit, after_commit, sessionmaker_of, utc_now
from app.core.sql import driver_connection, driver_of, driver_transaction
from app.events.service import Recorded
from app.events.statement import EventBatch, RowEvent
from app.tasks import dispatch, statements
from app.tasks.models import ERROR_MESSAGE_LIMIT, Task, TaskStatus
from app.tasks.recording import record, subject_of
from app.tasks.repository import TaskRepository
from app.worker import enqueue

log = logging.getLogger(__name__)

# Where a transition runs: its connection, in a transaction; what to call once that commits;
# the sessionmaker for follow-up work (None for a bare session).
Defer = Callable[[AfterCommit], None]


@dataclass(frozen=True)
class _On:
    connection: asyncpg.Connection
    defer: Defer
    sessionmaker: async_sessionmaker[AsyncSession] | None


async def _in_session(session: AsyncSession) -> _On:
    return _On(
        await driver_of(session),
        functools.partial(after_commit, session),
        sessionmaker_of(session),
    )


# One transition's statement: (connection, its event, alone?) -> what it did (`statements`).
Statement = Callable[[asyncpg.Connection, RowEvent, bool], Awaitable[statements.Transition]]
# The event's data, from the task after the transition (as the statement writes it in SQL).
EventData = Callable[[Task], dict[str, Any]]


async def _in_transaction(on: _On, run: Statement, kind: str, data: EventData) -> Task | None:
    """The transition in `on`'s transaction; when a subscriber wants its event, the event's
    body (the task as the API shows it now) and the subscriber's rows too."""
    event = RowEvent(kind)
    done = await run(on.connection, event, False)
    if done.handed:
        on.defer(functools.partial(dispatch.hand_on, on.sessionmaker, done.handed))
    if done.task is not None and done.wanted:
        await _fan_out(on, done.task, event, data(done.task))
    return done.task


async def _now(
    sessionmaker: async_sessionmaker[AsyncSession], run: Statement, kind: str, data: EventData
) -> Task | None:
    """The transition without an ORM session (the worker's hot path): one statement that
    commits by itself, or, when a subscriber wants its event, `_in_transaction`."""
    async with driver_connection(sessionmaker) as connection:
        alone = await run(connection, RowEvent(kind), True)
    if alone.refused:
        return None
    if not alone.wanted:
        await dispatch.hand_on(sessionmaker, alone.handed)
        return alone.task
    async with driver_transaction(sessionmaker) as (connection, later):
        return await _in_transaction(_On(connection, later.append, sessionmaker), run, kind, data)


def log_refused(task_id: uuid.UUID) -> None:
    log.info(
        "lease refused: the project runs its max_running_tasks; the task waits for a slot",
        extra={"task_id": str(task_id)},
    )


def _leasing(
    task_id: uuid.UUID, worker: str, lease_s: float, running_cap: int
) -> tuple[Statement, EventData]:
    async def run(
        connection: asyncpg.Connection, event: RowEvent, alone: bool
    ) -> statements.Transition:
        now = utc_now()
        done = await statements.lease(
            connection,
            task_id,
            worker=worker,
            now=now,
            lease_until=now + timedelta(seconds=lease_s),
            event=event,
            alone=alone,
            running_cap=running_cap,
        )
        if done.refused:
            log_refused(task_id)
        return done

    return run, lambda task: {"attempt": task.attempt, "worker": worker}


async def lease(
    session: AsyncSession, task_id: uuid.UUID, *, worker: str, lease_s: float, running_cap: int
) -> Task | None:
    """Take a queued task for this worker; None when another took it, it is not queued, or its
    project already runs its `max_running_tasks` (`running_cap`: the deployment's default):
    then it waits, unpublished, for a slot to be handed on (`statements.lease`). One lease per
    transaction: the project's lock is held until it commits.

    Committed without waiting for the WAL flush (`synchronous_commit = off`): a lease lost in a
    PostgreSQL crash costs at most a re-run of the attempt (its finish then finds no lease and is
    discarded), and every later durable commit, such as the finish, flushes it first."""
    run, data = _leasing(task_id, worker, lease_s, running_cap)
    return await _in_transaction(await _in_session(session), run, "task.started", data)


async def lease_now(
    sessionmaker: async_sessionmaker[AsyncSession],
    task_id: uuid.UUID,
    *,
    worker: str,
    lease_s: float,
    running_cap: int,
) -> Task | None:
    """`lease` without an ORM session (`_now`)."""
    run, data = _leasing(task_id, worker, lease_s, running_cap)
    return await _now(sessionmaker, run, "task.started", data)


async def _fan_out(on: _On, task: Task, written: RowEvent, data: dict[str, Any]) -> None:
    """The subscribers' rows for an event the transition's statement wrote, with its body (the
    task as the API shows it now), in the same transaction; published once it commits."""
    event = written.as_event(project_id=task.project_id, subject_id=task.id, data=data)
    body = Recorded(event, subject=subject_of(task), request_id=task.request_id)
    fan_out = EventBatch([body], events_written=True)
    row = await fan_out.insert(on.connection)
    on.defer(functools.partial(fan_out.written, row, on.sessionmaker))


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


def _succeeding(task: Task, result: Any, result_key: str | None) -> tuple[Statement, EventData]:
    async def run(
        connection: asyncpg.Connection, event: RowEvent, alone: bool
    ) -> statements.Transition:
        return await statements.succeed(
            connection,
            task,
            result=result,
            result_key=result_key,
            now=utc_now(),
            event=event,
            alone=alone,
        )

    return run, lambda ended: {"attempt": ended.attempt}


async def succeed(
    session: AsyncSession, task: Task, *, result: Any, result_key: str | None = None
) -> Task | None:
    """End the attempt as succeeded, with its result inline or (large) under `result_key` in S3."""
    run, data = _succeeding(task, result, result_key)
    return await _in_transaction(await _in_session(session), run, "task.succeeded", data)


async def succeed_now(
    sessionmaker: async_sessionmaker[AsyncSession],
    task: Task,
    *,
    result: Any,
    result_key: str | None = None,
) -> Task | None:
    """`succeed` without an ORM session (`_now`)."""
    run, data = _succeeding(task, result, result_key)
    return await _now(sessionmaker, run, "task.succeeded", data)


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
        await _hand_on_slot(session, ended)
    return ended


async def release(session: AsyncSession, task: Task) -> Task | None:
    """Give back an attempt that a warm shutdown stopped: the task is queued again at once
    (`task.requeued`) and published, or ends as an expired lease would (out of attempts, or
    asked to cancel); None if the attempt had lost its lease."""
    repository = TaskRepository(session)
    released = await repository.release(task.id, attempt=task.attempt, now=utc_now())
    if released is None:
        return None
    if released.status == TaskStatus.queued:
        data = {"reason": "worker_shutdown", "attempt": released.attempt}
        record(session, released, "task.requeued", data=data)
    else:
        kind = "task.canceled" if released.status == TaskStatus.canceled else "task.failed"
        record(session, released, kind, data={"attempt": released.attempt, "error": released.error})
        await repository.notify_finished(task.id)
    # Its own slot is free too: the project's oldest waiting task, often this one, goes out now.
    await _hand_on_slot(session, released)
    return released


async def _hand_on_slot(session: AsyncSession, ended: Task) -> None:
    """The attempt's slot is free: its project's next waiting task (one a full project's cap
    refused) is published once this commits, not on the scheduler's next pass."""
    if not enqueue.available():
        return
    for waiting in await TaskRepository(session).take_waiting(ended.project_id, now=utc_now()):
        dispatch.dispatch(session, waiting)


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
            await _hand_on_slot(session, ended)
        return ended
    ended = await repository.end_attempt(
        task.id, attempt=task.attempt, status=TaskStatus.failed, error=error, finished_at=now
    )
    if ended is not None:
        record(session, ended, "task.failed", data={"attempt": ended.attempt, "error": error})
        await repository.notify_finished(task.id)
        await _hand_on_slot(session, ended)
    return ended
