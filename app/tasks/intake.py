"""Submit's write in one statement: the task row, its `task.created` event and every event
subscriber's rows (the webhook outbox), committed by itself. One round trip and no ORM flush,
where the session-based write took a BEGIN, three statements and a COMMIT.

The statement inserts nothing but the task when its idempotency key is taken (the caller then
reads the original); the events and their subscribers' rows exist exactly when the task does.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.sql import Params, driver_connection
from app.events.service import Recorded
from app.events.statement import EventBatch
from app.tasks.models import JSON_COLUMNS


def _value(p: Params, column: str, value: Any) -> str:
    if column in JSON_COLUMNS:
        return p.json(value)
    return p(value.value if isinstance(value, enum.Enum) else value)


async def insert_task(
    sessionmaker: async_sessionmaker[AsyncSession],
    values: dict[str, Any],
    recorded: Recorded,
) -> bool:
    """Insert the task of `values` with its event `recorded`; False (and nothing written) when
    its project already has a task with its idempotency key."""
    p = Params()
    events = EventBatch([recorded])
    columns = ", ".join(values)
    placeholders = ", ".join(_value(p, column, value) for column, value in values.items())
    statement = (
        f"WITH task AS (INSERT INTO tasks ({columns}) VALUES ({placeholders})"  # noqa: S608 - our column names and placeholders only
        " ON CONFLICT (project_id, idempotency_key) DO NOTHING RETURNING id),\n"
        f"{events.ctes(p, when='EXISTS (SELECT 1 FROM task)')}\n"
        f"SELECT EXISTS (SELECT 1 FROM task) AS inserted{events.outputs()}"
    )
    # A project deleted meanwhile violates the task's foreign key: a 404 (`projects.exceptions`
    # registers it with `core.errors.when_parent_vanishes`).
    async with driver_connection(sessionmaker) as connection:
        row = await connection.fetchrow(statement, *p.values)
    inserted = bool(row["inserted"])
    if inserted:
        await events.written(row, sessionmaker)
    return inserted
