"""The worker's hot transitions as hand-written statements on asyncpg.

Each is the same guarded UPDATE as `TaskRepository`'s (by status, and by attempt for the lease
holder), and in the same statement it writes the transition's event (`events.statement.
insert_from_row`) and says whether any event subscriber wants that event. Only then does
`lifecycle.py` build the event's body (the task as the API shows it) and write the
subscribers' rows, in one more statement of the same transaction. No ORM, no session.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from app.core.sql import Params
from app.events import statement as event_statement
from app.events.models import Event
from app.tasks.models import TASK_COLUMNS, Priority, Task, TaskStatus
from app.tasks.repository import FINISHED_CHANNEL


def task_of(row: Any) -> Task:
    """A (transient) `Task` from a `RETURNING *` row."""
    task = Task(**{column: row[column] for column in TASK_COLUMNS})
    task.status = TaskStatus(task.status)
    task.priority = Priority(task.priority)
    return task


def _with_event(p: Params, update: str, event: Event, data_sql: str, also: str = "") -> str:
    insert = event_statement.insert_from_row(p, source="task", event=event, data_sql=data_sql)
    wanted = event_statement.wanted(p, project_sql="task.project_id", kind=event.kind)
    return (
        f"WITH task AS ({update} RETURNING *),\nevent AS ({insert})\n"
        f"SELECT task.*, {wanted} AS wanted{also} FROM task"
    )


async def lease(
    connection: asyncpg.Connection,
    task_id: uuid.UUID,
    *,
    worker: str,
    now: datetime,
    lease_until: datetime,
    event: Event,
) -> tuple[Task, bool] | None:
    """queued → running for one worker, with `event` (its data: the attempt and the worker);
    None when the task is not queued (or not due) any more. Also returns whether a subscriber
    wants the event. The transaction commits without waiting for disk (SET LOCAL)."""
    p = Params()
    update = (
        "UPDATE tasks SET status = 'running', attempt = attempt + 1,"  # noqa: S608 - placeholders only
        f" worker = {p(worker)}, lease_expires_at = {p(lease_until)}, started_at = {p(now)},"
        " progress = NULL, progress_message = NULL"
        f" WHERE id = {p(task_id)} AND status = 'queued'"
        f" AND (run_at IS NULL OR run_at <= {p(now)})"
    )
    data = f"jsonb_build_object('attempt', task.attempt, 'worker', CAST({p(worker)} AS text))"
    also = ", set_config('synchronous_commit', 'off', true) AS relaxed"
    row = await connection.fetchrow(_with_event(p, update, event, data, also), *p.values)
    return None if row is None else (task_of(row), bool(row["wanted"]))


async def succeed(
    connection: asyncpg.Connection,
    task: Task,
    *,
    result: Any,
    result_key: str | None,
    now: datetime,
    event: Event,
) -> tuple[Task, bool] | None:
    """running → succeeded for the attempt that holds the lease, with `event` and a NOTIFY for
    long-polls; None if it lost the lease. The result is inline JSON, or SQL NULL when it is
    kept in S3 under `result_key`. Also returns whether a subscriber wants the event."""
    p = Params()
    stored = "NULL" if result_key is not None else p.json(result)
    update = (
        f"UPDATE tasks SET status = 'succeeded', lease_expires_at = NULL, result = {stored},"  # noqa: S608 - placeholders only
        f" result_key = {p(result_key)}, error = NULL, progress = 1.0, finished_at = {p(now)}"
        f" WHERE id = {p(task.id)} AND status = 'running' AND attempt = {p(task.attempt)}"
    )
    also = f", pg_notify({p(FINISHED_CHANNEL)}, CAST(task.id AS text)) IS NULL AS notified"
    data = "jsonb_build_object('attempt', task.attempt)"
    row = await connection.fetchrow(_with_event(p, update, event, data, also), *p.values)
    return None if row is None else (task_of(row), bool(row["wanted"]))
