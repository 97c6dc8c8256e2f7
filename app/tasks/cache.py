"""A read-through cache in Redis of finished tasks, for `GET /v1/tasks/{id}`.

A terminal task changes only when its result expires (`retention.py`) or its project goes, so a
task read once it is terminal is kept `cache.task_ttl_s` under its own id; the next reads skip
PostgreSQL's row read. The cache holds the row, never an answer: each read still checks the
caller's access to the row's project (an API key's project needs no query; a user's membership
is still looked up), so one project's task can never be served to another's caller, and presigned
result URLs are made fresh. A result's expiry forgets its entry once committed. Redis failing
opens a breaker: reads go to PostgreSQL until it has passed (`core/readcache.py`).
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import orjson
from redis.asyncio import Redis

from app.core import readcache
from app.core.config import CacheSettings
from app.core.db import detached
from app.core.readcache import ReadCache
from app.tasks.models import TASK_COLUMNS, TERMINAL_STATUSES, Task

KIND = "task"


def _decoder(kind: type[Any] | None) -> Callable[[Any], Any] | None:
    if kind is uuid.UUID:
        return uuid.UUID
    if kind is datetime:
        return datetime.fromisoformat
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind
    return None


def _python_type(column: Any) -> type[Any] | None:
    try:
        kind: type[Any] = column.type.python_type
    except NotImplementedError:  # JSON: kept as decoded
        return None
    return kind


# How each column comes back from its JSON form (None: as it is).
_DECODERS = {
    column.name: _decoder(_python_type(column))
    for column in Task.__table__.columns
    if column.name in TASK_COLUMNS
}


def _encode(task: Task) -> bytes:
    """The row as JSON; `TypeError` for what JSON cannot hold exactly (an integer past 64 bits)."""
    return orjson.dumps({column: getattr(task, column) for column in TASK_COLUMNS}, default=str)


def _decode(raw: bytes | str) -> Task:
    values = orjson.loads(raw)
    for column, decode in _DECODERS.items():
        value = values.get(column)
        if decode is not None and value is not None:
            values[column] = decode(value)
    return detached(Task, values)


class TaskCache:
    """One per API process (`app.state.task_cache`), on its Redis client."""

    def __init__(self, redis: Redis, settings: CacheSettings) -> None:
        self.rows = ReadCache(
            redis, kind=KIND, ttl_s=settings.task_ttl_s, breaker_s=settings.breaker_s
        )

    async def get(self, task_id: uuid.UUID) -> Task | None:
        """The cached terminal task, or None (not cached, or Redis away)."""
        raw = await self.rows.get(task_id)
        return None if raw is None else _decode(raw)

    async def put(self, task: Task) -> None:
        """Keep `task` if it is terminal (an unfinished one changes at any moment)."""
        if task.status not in TERMINAL_STATUSES:
            return
        try:
            encoded = _encode(task)
        except TypeError:  # read from PostgreSQL every time, as without the cache
            return
        await self.rows.put(task.id, encoded)


async def forget(redis: Redis, task_ids: Iterable[uuid.UUID]) -> None:
    """Drop the cached copies of these tasks (they changed); after their change has committed."""
    await readcache.forget(redis, KIND, task_ids)
