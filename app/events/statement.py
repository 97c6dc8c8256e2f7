"""Events written inside another domain's statement, with their subscribers' rows: one round trip.

`record` (service.py) adds an event to an ORM session and calls the subscribers there. On a hot
path the caller writes its own row, its events and every subscriber's rows in one hand-written
statement instead: `EventBatch.ctes` gives the common table expressions that insert the events
and let each statement subscriber insert its rows from them, and `EventBatch.written` hands each
subscriber the ids it wrote, once the statement has committed.

A statement subscriber reads the relation `recorded`, one row per event: `id`, `project_id`,
`kind`, `subject_id`, `at`, `timestamp` (ISO 8601, `Z`), `body` (the subject as the API shows it,
or else the event as the audit log shows it), `request_id` (the event's, else its subject's).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.context import request_id_var
from app.core.db import detached, utc_now
from app.core.sql import Params
from app.events.models import ActorType, Event
from app.events.schemas import EventRead
from app.events.service import Recorded

# (the ids a subscriber's statement wrote, a sessionmaker for follow-up work); after the commit.
Written = Callable[
    [Sequence[uuid.UUID], async_sessionmaker[AsyncSession] | None], Awaitable[None] | None
]
# (params, the events) -> (INSERT … SELECT … FROM recorded … RETURNING id, what to do with the
# ids once committed), or None when it has nothing to write for these events.
FanOut = Callable[[Params, Sequence[Recorded]], tuple[str, Written] | None]

# (params, SQL of the event's project id, the event's kind) -> SQL that is true when the
# subscriber would write rows for such an event (so a statement that writes an event from a row
# builds the event's body only when someone wants it).
Wants = Callable[[Params, str, str], str]

_subscribers: dict[str, FanOut] = {}
_wants: dict[str, Wants | None] = {}


def subscribe(name: str, fan_out: FanOut, wants: Wants | None = None) -> None:
    """Write `fan_out`'s rows in every event statement of this process (idempotent by name);
    `wants` (optional) says in SQL whether it would, for `wanted`."""
    _subscribers[name] = fan_out
    _wants[name] = wants


@dataclass(frozen=True, slots=True)
class RowEvent:
    """A system event that a statement writes about a row (`insert_from_row`): what Python
    decides of it (its id, kind, request id and time); the row gives its project, subject and
    data. No ORM object: a worker writes two per attempt."""

    kind: str
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    request_id: str | None = field(default_factory=request_id_var.get)
    at: datetime = field(default_factory=utc_now)

    def as_event(
        self, *, project_id: uuid.UUID, subject_id: uuid.UUID, data: dict[str, Any]
    ) -> Event:
        """The same event as the ORM (and subscribers) see it, once its row is known."""
        values = {
            "id": self.id,
            "project_id": project_id,
            "kind": self.kind,
            "actor_type": ActorType.system,
            "actor_id": None,
            "subject_id": subject_id,
            "data": data,
            "request_id": self.request_id,
            "at": self.at,
        }
        return detached(Event, values)


def insert_from_row(
    p: Params, *, source: str, event: RowEvent, data_sql: str, request_id_sql: str | None = None
) -> str:
    """A CTE body writing `event` about each row of the relation `source` (its `id` is the
    subject, its `project_id` the project), with `data_sql` (SQL over `source`) as its data:
    for a statement whose UPDATE … RETURNING decides what the event says.

    `request_id_sql` (SQL over `source`): one event per row of a batch, each with its own request
    id and a new event id (`event` gives the kind and the time)."""
    if request_id_sql is None:
        event_id, request_id = p(event.id), p(event.request_id)
    else:
        event_id, request_id = "gen_random_uuid()", request_id_sql
    return (
        "INSERT INTO events"  # noqa: S608 - placeholders and our own relation names only
        " (id, project_id, kind, actor_type, actor_id, subject_id, data, request_id, at)"
        f" SELECT {event_id}, {source}.project_id, {p(event.kind)},"
        f" '{ActorType.system.value}', NULL, {source}.id, {data_sql},"
        f" {request_id}, CAST({p(event.at)} AS timestamptz) FROM {source} RETURNING id"
    )


def wanted(p: Params, *, project_sql: str, kind: str) -> str:
    """SQL that is true when some statement subscriber wants an event of `kind` in the project
    `project_sql` (true when one cannot say)."""
    conditions = []
    for name in _subscribers:
        wants = _wants.get(name)
        if wants is None:
            return "true"
        conditions.append(f"({wants(p, project_sql, kind)})")
    return " OR ".join(conditions) or "false"


def _timestamp(recorded: Recorded) -> str:
    return recorded.event.at.isoformat().replace("+00:00", "Z")


def recorded_row(recorded: Recorded) -> dict[str, Any]:
    """An event as `recorded` holds it (JSON)."""
    event = recorded.event
    body = recorded.subject
    if body is None:
        body = EventRead.of(event).model_dump(mode="json")
    return {
        "id": str(event.id),
        "project_id": None if event.project_id is None else str(event.project_id),
        "kind": event.kind,
        "actor_type": event.actor_type.value,
        "actor_id": None if event.actor_id is None else str(event.actor_id),
        "subject_id": None if event.subject_id is None else str(event.subject_id),
        "data": event.data,
        "at": event.at.isoformat(),
        "timestamp": _timestamp(recorded),
        "body": body,
        "request_id": event.request_id or recorded.request_id,
        "own_request_id": event.request_id,
    }


RECORDSET_COLUMNS = (
    "id uuid, project_id uuid, kind text, actor_type text, actor_id uuid, subject_id uuid,"
    " data jsonb, at timestamptz, timestamp text, body jsonb, request_id text,"
    " own_request_id text"
)


def recordset(p: Params, rows: Sequence[dict[str, Any]]) -> str:
    """`SELECT … FROM` the events as `recorded` rows (for a `WITH recorded AS (…)`)."""
    rows_json = p.json(list(rows))
    return f"SELECT * FROM jsonb_to_recordset({rows_json}) AS e({RECORDSET_COLUMNS})"  # noqa: S608 - placeholders only


class EventBatch:
    """The events one statement writes, and what its subscribers add."""

    def __init__(self, recorded: Sequence[Recorded], *, events_written: bool = False) -> None:
        """`events_written`: the events are in already (`insert_from_row`); only the
        subscribers' rows are to be written."""
        self.recorded = list(recorded)
        self.events_written = events_written
        self._written: list[tuple[str, Written]] = []

    def ctes(self, p: Params, *, when: str) -> str:
        """CTEs (for after `WITH …,`) that insert the events, and each subscriber's rows, if the
        SQL condition `when` holds (e.g. `EXISTS (SELECT 1 FROM task)`: the row was new)."""
        parts = [
            f"recorded AS ({recordset(p, [recorded_row(r) for r in self.recorded])} WHERE {when})",
        ]
        if not self.events_written:
            parts.append(
                "recorded_events AS (INSERT INTO events"
                " (id, project_id, kind, actor_type, actor_id, subject_id, data, request_id, at)"
                " SELECT id, project_id, kind, actor_type, actor_id, subject_id, data,"
                " own_request_id, at FROM recorded RETURNING id)"
            )
        for index, fan_out in enumerate(_subscribers.values()):
            found = fan_out(p, self.recorded)
            if found is not None:
                name = f"subscriber_{index}"
                parts.append(f"{name} AS ({found[0]})")
                self._written.append((name, found[1]))
        return ",\n".join(parts)

    def outputs(self) -> str:
        """Select-list items (for after `SELECT …,`): the ids each subscriber wrote."""
        columns = [f"ARRAY(SELECT id FROM {name}) AS {name}" for name, _ in self._written]  # noqa: S608 - our CTE names
        return "".join(f", {column}" for column in columns)

    async def insert(self, connection: asyncpg.Connection) -> Any:
        """Write the events and their subscribers' rows as a statement of their own on
        `connection` (in the caller's transaction)."""
        p = Params()
        statement = f"WITH {self.ctes(p, when='true')}\nSELECT true AS written{self.outputs()}"
        return await connection.fetchrow(statement, *p.values)

    async def written(
        self, row: Any, sessionmaker: async_sessionmaker[AsyncSession] | None
    ) -> None:
        """Hand each subscriber its ids from the statement's result `row` (after the commit)."""
        for name, written in self._written:
            ids = row[name]
            if ids and (pending := written(list(ids), sessionmaker)) is not None:
                await pending
