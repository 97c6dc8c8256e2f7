"""Submit's write in one statement: the task row, its `task.created` event and every event
subscriber's rows (the webhook outbox), committed by itself. One round trip and no ORM flush,
where the session-based write took a BEGIN, three statements and a COMMIT.

Submits that arrive together in one API process share that statement (group commit,
`core.batching`): one INSERT of all their rows, their events and their subscribers' rows, and
one commit; a lone submit goes at once, alone. The statement inserts nothing but the task when
its idempotency key is taken (the caller then reads the original); the events and their
subscribers' rows exist exactly when the task does.
"""

from __future__ import annotations

import enum
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.batching import Groups
from app.core.sql import Params, driver_connection, json_text
from app.events.service import Recorded
from app.events.statement import EventBatch
from app.tasks.models import JSON_COLUMNS, Task


def _value(p: Params, column: str, value: Any) -> str:
    if column in JSON_COLUMNS:
        return p.json(value)
    return p(_plain(value))


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


@dataclass(frozen=True)
class _Submit:
    values: dict[str, Any]
    recorded: Recorded


async def insert_task(
    sessionmaker: async_sessionmaker[AsyncSession],
    values: dict[str, Any],
    recorded: Recorded,
) -> bool:
    """Insert the task of `values` with its event `recorded`; False (and nothing written) when
    its project already has a task with its idempotency key."""
    # A group per column list: one statement has one.
    return await GROUPS(sessionmaker, tuple(values))(_Submit(values, recorded))


async def _insert(
    sessionmaker: async_sessionmaker[AsyncSession],
    columns: tuple[str, ...],
    items: Sequence[_Submit],
) -> Sequence[bool | BaseException]:
    if len(items) == 1:
        return [await _insert_one(sessionmaker, items[0])]
    try:
        return await _insert_many(sessionmaker, columns, items)
    except asyncpg.IntegrityConstraintViolationError:
        # One row broke a constraint (its project was deleted meanwhile): the others must not
        # share its error. One at a time, each gets its own answer.
        return [await _one_or_error(sessionmaker, item) for item in items]


async def _one_or_error(
    sessionmaker: async_sessionmaker[AsyncSession], item: _Submit
) -> bool | BaseException:
    try:
        return await _insert_one(sessionmaker, item)
    except asyncpg.IntegrityConstraintViolationError as exc:  # raised to its own caller only
        error: BaseException = exc
        return error


async def _insert_one(sessionmaker: async_sessionmaker[AsyncSession], item: _Submit) -> bool:
    p = Params()
    events = EventBatch([item.recorded])
    names = ", ".join(item.values)
    placeholders = ", ".join(_value(p, column, value) for column, value in item.values.items())
    rows = f"VALUES ({placeholders})"
    inserted = await _write(sessionmaker, p, events, names, rows)
    return bool(inserted)


async def _write(
    sessionmaker: async_sessionmaker[AsyncSession],
    p: Params,
    events: EventBatch,
    names: str,
    rows: str,
) -> list[uuid.UUID]:
    """Insert `rows` (SQL: VALUES or a SELECT) into the task columns `names`, with the events
    (and their subscribers' rows) of the tasks it inserted: the ids of those tasks."""
    statement = (
        f"WITH task AS (INSERT INTO tasks ({names}) {rows}"  # noqa: S608 - our column names and placeholders only
        " ON CONFLICT (project_id, idempotency_key) DO NOTHING RETURNING id),\n"
        f"{events.ctes(p, when='e.subject_id IN (SELECT id FROM task)')}\n"
        f"SELECT ARRAY(SELECT id FROM task) AS inserted{events.outputs()}"
    )
    # A project deleted meanwhile violates the task's foreign key: a 404 (`projects.exceptions`
    # registers it with `core.errors.when_parent_vanishes`).
    async with driver_connection(sessionmaker) as connection:
        row = await connection.fetchrow(statement, *p.values)
    inserted: list[uuid.UUID] = list(row["inserted"])
    if inserted:
        await events.written(row, sessionmaker)
    return inserted


@functools.cache
def _array_type(column: str) -> str:
    """The SQL type of an array of `column`'s values (text for strings and JSON: the INSERT
    checks lengths, a CAST to varchar(n) would cut)."""
    kind = Task.__table__.c[column].type
    if column in JSON_COLUMNS or isinstance(kind, String):
        return "text"
    for python_type, sql_type in _SQL_TYPES:
        if kind.python_type is python_type:
            return sql_type
    raise TypeError(f"no array type for tasks.{column} ({kind!r})")


_SQL_TYPES = (
    (uuid.UUID, "uuid"),
    (int, "integer"),
    (float, "double precision"),
    (datetime, "timestamptz"),
)


async def _insert_many(
    sessionmaker: async_sessionmaker[AsyncSession],
    columns: tuple[str, ...],
    items: Sequence[_Submit],
) -> list[bool]:
    """`_insert_one` for several tasks in one statement: their rows from arrays (one statement
    text whatever their number), an event each for the rows it inserted."""
    p = Params()
    events = EventBatch([item.recorded for item in items])
    arrays = {}
    for column in columns:
        encode = json_text if column in JSON_COLUMNS else _plain
        arrays[column] = (_array_type(column), [encode(item.values[column]) for item in items])
    selected = ", ".join(
        f"CAST(item.{column} AS jsonb)" if column in JSON_COLUMNS else f"item.{column}"
        for column in columns
    )
    names = ", ".join(columns)
    rows = f"SELECT {selected} FROM {p.unnest(arrays)}"  # noqa: S608 - our column names and placeholders only
    inserted = set(await _write(sessionmaker, p, events, names, rows))
    return [item.values["id"] in inserted for item in items]


GROUPS: Groups[async_sessionmaker[AsyncSession], tuple[str, ...], _Submit, bool] = Groups(
    lambda sessionmaker, columns: functools.partial(_insert, sessionmaker, columns)
)
