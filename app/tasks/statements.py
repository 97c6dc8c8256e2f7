"""The worker's hot transitions as hand-written statements on the session's asyncpg connection.

Each is the same guarded UPDATE as `TaskRepository`'s (by status, and by attempt for the lease
holder), returning the whole row; `lifecycle.py` then writes the transition's event and its
subscribers' rows in one more statement (`events.statement`), in the same transaction. No ORM
unit of work, no statement compilation.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from app.core.sql import Params
from app.tasks.models import TASK_COLUMNS, Priority, Task, TaskStatus

LEASE = """
UPDATE tasks
SET status = 'running', attempt = attempt + 1, worker = $2, lease_expires_at = $4,
    started_at = $3, progress = NULL, progress_message = NULL
WHERE id = $1 AND status = 'queued' AND (run_at IS NULL OR run_at <= $3)
RETURNING *
"""


def task_of(row: Any) -> Task:
    """A (transient) `Task` from a `RETURNING *` row."""
    task = Task(**{column: row[column] for column in TASK_COLUMNS})
    task.status = TaskStatus(task.status)
    task.priority = Priority(task.priority)
    return task


async def lease(
    connection: asyncpg.Connection,
    task_id: uuid.UUID,
    *,
    worker: str,
    now: datetime,
    lease_until: datetime,
) -> Task | None:
    """queued → running for one worker; None when it is not queued (or not due) any more."""
    row = await connection.fetchrow(LEASE, task_id, worker, now, lease_until)
    return None if row is None else task_of(row)


async def succeed(
    connection: asyncpg.Connection,
    task: Task,
    *,
    result: Any,
    result_key: str | None,
    now: datetime,
) -> Task | None:
    """running → succeeded for the attempt that holds the lease; None if it lost the lease. The
    result is inline JSON, or SQL NULL when it is kept in S3 under `result_key`."""
    p = Params()
    stored = "NULL" if result_key is not None else p.json(result)
    statement = (
        f"UPDATE tasks SET status = 'succeeded', lease_expires_at = NULL, result = {stored},"  # noqa: S608 - placeholders only
        f" result_key = {p(result_key)}, error = NULL, progress = 1.0, finished_at = {p(now)}"
        f" WHERE id = {p(task.id)} AND status = 'running' AND attempt = {p(task.attempt)}"
        " RETURNING *"
    )
    row = await connection.fetchrow(statement, *p.values)
    return None if row is None else task_of(row)
