"""The worker's hot transitions as hand-written statements on asyncpg.

Each is the same guarded UPDATE as `TaskRepository`'s (by status, and by attempt for the lease
holder), and in the same statement it writes the transition's event
(`events.statement.insert_from_row`) and says whether an event subscriber wants that event.

`alone=True`: the statement commits by itself (one round trip), so it changes nothing when a
subscriber wants the event: their rows need the event's body, built in Python, in the same
transaction. The caller then makes the transition in a transaction (`alone=False`), and writes
the subscribers' rows there (`lifecycle.py`). No ORM, no session.

A lease takes a task only while its project is under its `max_running_tasks`: the room is
counted by `taskgate_lease_room` under the project's advisory lock, in the lease's own statement;
a task it refuses stays queued with its dispatch mark cleared (decision 0018). A success hands
the slot it frees to its project's next waiting task (`ix_tasks_waiting`), marked published in
the same statement; the caller publishes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from app.core.db import detached
from app.core.sql import Params, json_text
from app.events import statement as event_statement
from app.tasks.models import TASK_COLUMNS, Priority, Task, TaskStatus
from app.tasks.repository import FINISHED_CHANNEL, Claimed


@dataclass(frozen=True)
class Transition:
    """What a transition statement did: the task after it (None: nothing changed), and whether a
    subscriber wants its event (with `alone`, a wanted event means nothing changed yet).
    `refused`: a lease its project's `max_running_tasks` refused (the task waits, unpublished);
    `handed`: waiting tasks of the project a success marked published, for the caller to publish.
    """

    task: Task | None
    wanted: bool
    refused: bool = False
    handed: tuple[Claimed, ...] = ()


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
    before: str = "",
    after: str = "",
) -> Any:
    """The one row of the transition's statement: the task's columns (NULL when nothing
    changed), `wanted` and the columns of `also`. `before`, `after`: more CTEs, before the
    UPDATE (each ending with a comma) and after the event (each starting with one)."""
    insert = event_statement.insert_from_row(p, source="task", event=event, data_sql=data_sql)
    if alone:
        unwanted = event_statement.wanted(p, project_sql="tasks.project_id", kind=event.kind)
        project = f"(SELECT project_id FROM tasks WHERE id = {p(task_id)})"  # noqa: S608
        wanted = event_statement.wanted(p, project_sql=project, kind=event.kind)
        statement = (
            f"WITH {before}task AS ({update} AND NOT ({unwanted}) RETURNING *),\n"
            f"event AS ({insert}){after}\n"
            f"SELECT task.*, probe.wanted{also}"
            f" FROM (SELECT {wanted} AS wanted) AS probe LEFT JOIN task ON true"
        )
    else:
        wanted = event_statement.wanted(p, project_sql="task.project_id", kind=event.kind)
        statement = (
            f"WITH {before}task AS ({update} RETURNING *),\nevent AS ({insert}){after}\n"
            f"SELECT task.*, {wanted} AS wanted{also} FROM (SELECT) AS probe LEFT JOIN task ON true"
        )
    return await connection.fetchrow(statement, *p.values)


def _changed(row: Any) -> Task | None:
    return None if row["id"] is None else task_of(row)


async def lease(
    connection: asyncpg.Connection,
    task_id: uuid.UUID,
    *,
    worker: str,
    now: datetime,
    lease_until: datetime,
    event: event_statement.RowEvent,
    alone: bool,
    running_cap: int,
) -> Transition:
    """queued → running for one worker, with `event` (its data: the attempt and the worker);
    no task when it is not queued (or not due) any more, or when its project runs as many tasks
    as its `max_running_tasks` (`running_cap`: the deployment's default): then `refused`, and
    the task waits with its dispatch mark cleared. Its commit does not wait for disk."""
    p = Params()
    leasable = (
        f"WHERE tasks.id = {p(task_id)} AND tasks.status = 'queued'"
        f" AND (tasks.run_at IS NULL OR tasks.run_at <= {p(now)})"
    )
    before = (
        "room AS MATERIALIZED (SELECT taskgate_lease_room(tasks.project_id, 1,"  # noqa: S608 - placeholders only
        f" {p(running_cap)}) AS room FROM tasks {leasable}),\n"
        f"refused AS (UPDATE tasks SET dispatched_at = NULL {leasable}"
        " AND (SELECT room FROM room) = 0 RETURNING tasks.id),\n"
    )
    update = (
        f"UPDATE tasks SET {_leased(p, worker, lease_until, now)}"  # noqa: S608 - placeholders only
        f" {leasable} AND (SELECT room FROM room) > 0"
    )
    row = await _run(
        connection,
        p,
        update=update,
        task_id=task_id,
        event=event,
        data_sql=_lease_data(p, worker),
        also=f", {_RELAXED} AS relaxed, EXISTS (SELECT FROM refused) AS refused",
        alone=alone,
        before=before,
    )
    return Transition(_changed(row), bool(row["wanted"]), refused=bool(row["refused"]))


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
        f", {_HANDED} AS handed"
    )
    row = await _run(
        connection,
        p,
        update=update,
        task_id=task.id,
        event=event,
        data_sql="jsonb_build_object('attempt', task.attempt)",
        also=also,
        alone=alone,
        after=_handing_on(p, "SELECT task.project_id, 1 AS n FROM task", now),
    )
    return Transition(_changed(row), bool(row["wanted"]), handed=handed_of(row["handed"]))


def _handing_on(p: Params, freed: str, now: datetime) -> str:
    """CTEs ending in `handed`: for each project of `freed` (`project_id`, `n`: the slots it
    frees), its next `n` waiting tasks (queued, due, no message carries them), marked published.
    One short probe of `ix_tasks_waiting` per project, which is empty unless a project is at its
    cap. `waiting` is materialized: picked once, never re-run past the rows it locked."""
    at = p(now)
    return (
        ",\nwaiting AS MATERIALIZED (SELECT next.id"  # noqa: S608 - placeholders only
        f" FROM ({freed}) AS freed CROSS JOIN LATERAL (SELECT w.id FROM tasks AS w"
        " WHERE w.project_id = freed.project_id AND w.status = 'queued'"
        f" AND w.dispatched_at IS NULL AND coalesce(w.run_at, w.created_at) <= {at}"
        " ORDER BY coalesce(w.run_at, w.created_at) LIMIT freed.n FOR UPDATE SKIP LOCKED)"
        " AS next),\n"
        f"handed AS (UPDATE tasks SET dispatched_at = {at} FROM waiting"
        " WHERE tasks.id = waiting.id AND tasks.status = 'queued' AND tasks.dispatched_at IS NULL"
        " RETURNING tasks.id, tasks.project_id, tasks.type, tasks.priority, tasks.timeout_s,"
        " tasks.attempt, tasks.request_id)"
    )


# The tasks `handed` marked published, as one JSON array of arrays (`handed_of`).
_HANDED = (
    "(SELECT coalesce(jsonb_agg(jsonb_build_array(h.id, h.project_id, h.type, h.priority,"
    " h.timeout_s, h.attempt, h.request_id)), '[]'::jsonb) FROM handed AS h)"
)


def handed_of(value: Any) -> tuple[Claimed, ...]:
    """The tasks of a `handed` column, ready to publish."""
    rows = orjson.loads(value) if isinstance(value, str | bytes) else value
    return tuple(
        Claimed(
            uuid.UUID(id_), uuid.UUID(project), type_, Priority(priority), timeout, attempt, rid
        )
        for id_, project, type_, priority, timeout, attempt, rid in rows
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
    return {row["id"]: task_of(row) for row in rows if row["id"] is not None}


async def lease_many(
    connection: asyncpg.Connection,
    task_ids: Sequence[uuid.UUID],
    *,
    request_ids: Sequence[str | None],
    worker: str,
    now: datetime,
    lease_until: datetime,
    event: event_statement.RowEvent,
    running_cap: int,
) -> tuple[dict[uuid.UUID, Task], frozenset[uuid.UUID]]:
    """`lease` (alone) for several tasks in one statement that commits by itself, an event
    each: the tasks it leased, by id, and those their projects' `max_running_tasks` refused
    (oldest first within a project get the room). A task in neither was not queued or due, or a
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
    due = f"(tasks.run_at IS NULL OR tasks.run_at <= {p(now)})"
    placed = (
        "FROM candidate JOIN room ON room.project_id = candidate.project_id"
        " WHERE tasks.id = candidate.id AND tasks.status = 'queued'"
    )
    statement = (
        f"WITH item AS (SELECT DISTINCT ON (id) * FROM {item}),\n"  # noqa: S608 - placeholders only
        "candidate AS MATERIALIZED (SELECT tasks.id, tasks.project_id, item.request_id,"
        " row_number() OVER (PARTITION BY tasks.project_id ORDER BY tasks.created_at, tasks.id)"
        f" AS n FROM tasks JOIN item ON tasks.id = item.id WHERE tasks.status = 'queued'"
        f" AND {due} AND NOT ({unwanted})),\n"
        # Projects in the order of their lock keys, so concurrent statements never deadlock.
        "room AS MATERIALIZED (SELECT asked.project_id, taskgate_lease_room(asked.project_id,"
        f" asked.n, {p(running_cap)}) AS room FROM (SELECT project_id,"
        " CAST(count(*) AS integer) AS n FROM candidate GROUP BY project_id) AS asked"
        " ORDER BY taskgate_lease_key(asked.project_id), asked.project_id),\n"
        f"task AS (UPDATE tasks SET {_leased(p, worker, lease_until, now)} {placed}"
        f" AND {due} AND candidate.n <= room.room"
        " RETURNING tasks.*, candidate.request_id AS event_request_id),\n"
        f"refused AS (UPDATE tasks SET dispatched_at = NULL {placed}"
        " AND candidate.n > room.room RETURNING tasks.id),\n"
        f"event AS ({insert})\n"
        f"SELECT task.*, {_RELAXED} AS relaxed, ARRAY(SELECT id FROM refused) AS refused"
        " FROM (SELECT) AS probe LEFT JOIN task ON true"
    )
    rows = await connection.fetch(statement, *p.values)
    return _by_id(rows), frozenset(rows[0]["refused"])


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
) -> tuple[dict[uuid.UUID, Task], tuple[Claimed, ...]]:
    """`succeed` (alone, inline results) for several attempts in one statement that commits by
    itself, an event and a NOTIFY each: the tasks it ended, by id, and the waiting tasks handed
    the slots they freed. One it did not end lost its lease, or a subscriber wants its event;
    `succeed` says which."""
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
    freed = "SELECT task.project_id, count(*) AS n FROM task GROUP BY task.project_id"
    statement = (
        f"WITH item AS (SELECT * FROM {item}),\n"  # noqa: S608 - placeholders only
        "task AS (UPDATE tasks SET status = 'succeeded', lease_expires_at = NULL,"
        " result = CAST(item.result AS jsonb), result_key = NULL, error = NULL, progress = 1.0,"
        f" finished_at = {p(now)} FROM item"
        " WHERE tasks.id = item.id AND tasks.status = 'running' AND tasks.attempt = item.attempt"
        f" AND NOT ({unwanted}) RETURNING tasks.*, item.request_id AS event_request_id),\n"
        f"event AS ({insert}){_handing_on(p, freed, now)}\n"
        f"SELECT task.*, pg_notify({p(FINISHED_CHANNEL)}, CAST(task.id AS text)) IS NULL AS notified,"
        f" {_HANDED} AS handed FROM task"
    )
    rows = await connection.fetch(statement, *p.values)
    return _by_id(rows), handed_of(rows[0]["handed"]) if rows else ()
