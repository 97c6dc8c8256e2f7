"""The worker's hot transitions as hand-written statements on asyncpg.

Each is the same guarded UPDATE as `TaskRepository`'s (by status, and by attempt for the lease
holder), and in the same statement it writes the transition's event
(`events.statement.insert_from_row`) and says whether an event subscriber wants that event.

`alone=True`: the statement commits by itself (one round trip), so it changes nothing when a
subscriber wants the event: their rows need the event's body, built in Python, in the same
transaction. The caller then makes the transition in a transaction (`alone=False`), and writes
the subscribers' rows there (`lifecycle.py`). No ORM, no session.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.core.sql import Params
from app.events import statement as event_statement
from app.events.models import Event
from app.tasks.models import TASK_COLUMNS, Priority, Task, TaskStatus
from app.tasks.repository import FINISHED_CHANNEL


@dataclass(frozen=True)
class Transition:
    """What a transition statement did: the task after it (None: nothing changed), and whether a
    subscriber wants its event (with `alone`, a wanted event means nothing changed yet)."""

    task: Task | None
    wanted: bool


def task_of(row: Any) -> Task:
    """A (transient) `Task` from a `RETURNING *` row."""
    task = Task(**{column: row[column] for column in TASK_COLUMNS})
    task.status = TaskStatus(task.status)
    task.priority = Priority(task.priority)
    return task


async def _run(
    connection: asyncpg.Connection,
    p: Params,
    *,
    update: str,
    task_id: uuid.UUID,
    event: Event,
    data_sql: str,
    also: str,
    alone: bool,
) -> Transition:
    insert = event_statement.insert_from_row(p, source="task", event=event, data_sql=data_sql)
    if alone:
        unwanted = event_statement.wanted(p, project_sql="tasks.project_id", kind=event.kind)
        project = f"(SELECT project_id FROM tasks WHERE id = {p(task_id)})"  # noqa: S608
        wanted = event_statement.wanted(p, project_sql=project, kind=event.kind)
        statement = (
            f"WITH task AS ({update} AND NOT ({unwanted}) RETURNING *),\nevent AS ({insert})\n"
            f"SELECT task.*, probe.wanted{also}"
            f" FROM (SELECT {wanted} AS wanted) AS probe LEFT JOIN task ON true"
        )
    else:
        wanted = event_statement.wanted(p, project_sql="task.project_id", kind=event.kind)
        statement = (
            f"WITH task AS ({update} RETURNING *),\nevent AS ({insert})\n"
            f"SELECT task.*, {wanted} AS wanted{also} FROM task"
        )
    row = await connection.fetchrow(statement, *p.values)
    if row is None or row["id"] is None:
        return Transition(None, bool(row is not None and row["wanted"]))
    return Transition(task_of(row), bool(row["wanted"]))


async def lease(
    connection: asyncpg.Connection,
    task_id: uuid.UUID,
    *,
    worker: str,
    now: datetime,
    lease_until: datetime,
    event: Event,
    alone: bool,
) -> Transition:
    """queued → running for one worker, with `event` (its data: the attempt and the worker);
    no task when it is not queued (or not due) any more. Its commit does not wait for disk."""
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
    return await _run(
        connection,
        p,
        update=update,
        task_id=task_id,
        event=event,
        data_sql=data,
        also=also,
        alone=alone,
    )


async def succeed(
    connection: asyncpg.Connection,
    task: Task,
    *,
    result: Any,
    result_key: str | None,
    now: datetime,
    event: Event,
    alone: bool,
) -> Transition:
    """running → succeeded for the attempt that holds the lease, with `event` and a NOTIFY for
    long-polls; no task if it lost the lease. The result is inline JSON, or SQL NULL when it is
    kept in S3 under `result_key`."""
    p = Params()
    stored = "NULL" if result_key is not None else p.json(result)
    update = (
        f"UPDATE tasks SET status = 'succeeded', lease_expires_at = NULL, result = {stored},"  # noqa: S608 - placeholders only
        f" result_key = {p(result_key)}, error = NULL, progress = 1.0, finished_at = {p(now)}"
        f" WHERE id = {p(task.id)} AND status = 'running' AND attempt = {p(task.attempt)}"
    )
    also = (
        f", CASE WHEN task.id IS NOT NULL"
        f" THEN pg_notify({p(FINISHED_CHANNEL)}, CAST(task.id AS text)) END IS NULL AS notified"
    )
    return await _run(
        connection,
        p,
        update=update,
        task_id=task.id,
        event=event,
        data_sql="jsonb_build_object('attempt', task.attempt)",
        also=also,
        alone=alone,
    )
