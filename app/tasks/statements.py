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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.core.db import detached
from app.core.sql import Params, json_text
from app.events import statement as event_statement
from app.tasks.models import TASK_COLUMNS, Priority, Task, TaskStatus
from app.tasks.repository import FINISHED_CHANNEL


@dataclass(frozen=True)
class Transition:
    """What a transition statement did: the task after it (None: nothing changed), and whether a
    subscriber wants its event (with `alone`, a wanted event means nothing changed yet)."""

    task: Task | None
    wanted: bool


def task_of(row: Any) -> Task:
    """A (transient, detached) `Task` from a `RETURNING *` row."""
    values = {column: row[column] for column in TASK_COLUMNS}
    values["status"] = TaskStatus(values["status"])
    values["priority"] = Priority(values["priority"])
    return detached(Task, values)


async def _run(
    connection: asyncpg.Connection,
    p: Params,
    *,
    update: str,
    task_id: uuid.UUID,
    event: event_statement.RowEvent,
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
    event: event_statement.RowEvent,
    alone: bool,
) -> Transition:
    """queued → running for one worker, with `event` (its data: the attempt and the worker);
    no task when it is not queued (or not due) any more. Its commit does not wait for disk."""
    p = Params()
    update = (
        f"UPDATE tasks SET {_leased(p, worker, lease_until, now)}"  # noqa: S608 - placeholders only
        f" WHERE id = {p(task_id)} AND status = 'queued'"
        f" AND (run_at IS NULL OR run_at <= {p(now)})"
    )
    data = _lease_data(p, worker)
    also = f", {_RELAXED} AS relaxed"
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
    event: event_statement.RowEvent,
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


# The lease's commit does not wait for the WAL flush (`lifecycle.lease`).
_RELAXED = "set_config('synchronous_commit', 'off', true)"


def _leased(p: Params, worker: str, lease_until: datetime, now: datetime) -> str:
    return (
        "status = 'running', attempt = tasks.attempt + 1,"
        f" worker = {p(worker)}, lease_expires_at = {p(lease_until)}, started_at = {p(now)},"
        " progress = NULL, progress_message = NULL"
    )


def _lease_data(p: Params, worker: str) -> str:
    return f"jsonb_build_object('attempt', task.attempt, 'worker', CAST({p(worker)} AS text))"


def _by_id(rows: Sequence[Any]) -> dict[uuid.UUID, Task]:
    return {row["id"]: task_of(row) for row in rows}


async def lease_many(
    connection: asyncpg.Connection,
    task_ids: Sequence[uuid.UUID],
    *,
    request_ids: Sequence[str | None],
    worker: str,
    now: datetime,
    lease_until: datetime,
    event: event_statement.RowEvent,
) -> dict[uuid.UUID, Task]:
    """`lease` (alone) for several tasks in one statement that commits by itself, an event
    each: the tasks it leased, by id. A task it did not lease was not queued or due, or a
    subscriber wants its event; `lease` says which, one task at a time."""
    p = Params()
    item = p.unnest({"id": ("uuid", task_ids), "request_id": ("text", request_ids)})
    unwanted = event_statement.wanted(p, project_sql="tasks.project_id", kind=event.kind)
    insert = event_statement.insert_from_row(
        p,
        source="task",
        event=event,
        data_sql=_lease_data(p, worker),
        request_id_sql="task.event_request_id",
    )
    statement = (
        f"WITH item AS (SELECT * FROM {item}),\n"  # noqa: S608 - placeholders only
        f"task AS (UPDATE tasks SET {_leased(p, worker, lease_until, now)} FROM item"
        " WHERE tasks.id = item.id AND tasks.status = 'queued'"
        f" AND (tasks.run_at IS NULL OR tasks.run_at <= {p(now)}) AND NOT ({unwanted})"
        " RETURNING tasks.*, item.request_id AS event_request_id),\n"
        f"event AS ({insert})\n"
        f"SELECT task.*, {_RELAXED} AS relaxed FROM task"
    )
    return _by_id(await connection.fetch(statement, *p.values))


@dataclass(frozen=True)
class Success:
    """One attempt's inline result, for `succeed_many`."""

    task: Task
    result: Any
    request_id: str | None


async def succeed_many(
    connection: asyncpg.Connection,
    successes: Sequence[Success],
    *,
    now: datetime,
    event: event_statement.RowEvent,
) -> dict[uuid.UUID, Task]:
    """`succeed` (alone, inline results) for several attempts in one statement that commits by
    itself, an event and a NOTIFY each: the tasks it ended, by id. One it did not end lost its
    lease, or a subscriber wants its event; `succeed` says which."""
    p = Params()
    item = p.unnest(
        {
            "id": ("uuid", [s.task.id for s in successes]),
            "attempt": ("int", [s.task.attempt for s in successes]),
            "result": ("text", [json_text(s.result) for s in successes]),
            "request_id": ("text", [s.request_id for s in successes]),
        }
    )
    unwanted = event_statement.wanted(p, project_sql="tasks.project_id", kind=event.kind)
    insert = event_statement.insert_from_row(
        p,
        source="task",
        event=event,
        data_sql="jsonb_build_object('attempt', task.attempt)",
        request_id_sql="task.event_request_id",
    )
    statement = (
        f"WITH item AS (SELECT * FROM {item}),\n"  # noqa: S608 - placeholders only
        "task AS (UPDATE tasks SET status = 'succeeded', lease_expires_at = NULL,"
        " result = CAST(item.result AS jsonb), result_key = NULL, error = NULL, progress = 1.0,"
        f" finished_at = {p(now)} FROM item"
        " WHERE tasks.id = item.id AND tasks.status = 'running' AND tasks.attempt = item.attempt"
        f" AND NOT ({unwanted}) RETURNING tasks.*, item.request_id AS event_request_id),\n"
        f"event AS ({insert})\n"
        f"SELECT task.*, pg_notify({p(FINISHED_CHANNEL)}, CAST(task.id AS text)) IS NULL AS notified"
        " FROM task"
    )
    return _by_id(await connection.fetch(statement, *p.values))
