"""The worker's lease and finish for attempts that run at once in one process, grouped.

A worker process runs several attempts on its one loop (the `threads` pool's jobs, the tasks of
a job that carries several): their leases, and their successes with inline results, go to
PostgreSQL as one statement and one commit per group (`core.batching.GroupCommit`), each task
with its own guarded UPDATE row, its own event and, on success, its NOTIFY
(`statements.lease_many`, `succeed_many`). A lone attempt goes at once, through the one-task
statements of `lifecycle` (`lease_now`, `succeed_now`), and so does any task of a group that the
group's statement did not take: it was not queued any more (or not due), lost its lease, or an
event subscriber wants its event (then its transition runs in a transaction of its own with the
subscriber's rows). Guarantees stay those of one task at a time: a transition happens once,
guarded by status and attempt, in the statement that writes its event.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.batching import GroupCommit
from app.core.context import request_id_var
from app.core.db import utc_now
from app.core.sql import driver_connection
from app.events.statement import RowEvent
from app.tasks import lifecycle, statements
from app.tasks.models import Task

# Most transitions one statement takes.
MAX_GROUP = 64


@dataclass(frozen=True)
class _Lease:
    task_id: uuid.UUID
    request_id: str | None


class _Groups:
    """One process's groups for one sessionmaker (its pool)."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self.leases: dict[tuple[str, float], GroupCommit[_Lease, Task | None]] = {}
        self.successes = GroupCommit(self._succeed, max_items=MAX_GROUP)

    def lease_group(self, worker: str, lease_s: float) -> GroupCommit[_Lease, Task | None]:
        key = (worker, lease_s)
        if (group := self.leases.get(key)) is None:

            async def run(items: Sequence[_Lease]) -> list[Task | None]:
                return await self._lease(items, worker=worker, lease_s=lease_s)

            group = self.leases[key] = GroupCommit(run, max_items=MAX_GROUP)
        return group

    async def _lease(
        self, items: Sequence[_Lease], *, worker: str, lease_s: float
    ) -> list[Task | None]:
        if len(items) == 1:
            return [await self._lease_one(items[0], worker, lease_s)]
        now = utc_now()
        async with driver_connection(self.sessionmaker) as connection:
            leased = await statements.lease_many(
                connection,
                [item.task_id for item in items],
                request_ids=[item.request_id for item in items],
                worker=worker,
                now=now,
                lease_until=now + timedelta(seconds=lease_s),
                event=RowEvent("task.started", request_id=None, at=now),
            )
        results: list[Task | None] = []
        alone: dict[int, Awaitable[Task | None]] = {}
        seen: set[uuid.UUID] = set()
        for index, item in enumerate(items):
            results.append(leased.get(item.task_id) if item.task_id not in seen else None)
            if item.task_id not in seen and results[-1] is None:
                # Not queued, or a subscriber wants the event: one task at a time.
                alone[index] = self._lease_one(item, worker, lease_s)
            seen.add(item.task_id)  # the same task twice in one group: one attempt only
        return await _with_each(results, alone)

    async def _lease_one(self, item: _Lease, worker: str, lease_s: float) -> Task | None:
        # The group runs in the task of whoever started it: each event gets its own request id.
        token = request_id_var.set(item.request_id)
        try:
            return await lifecycle.lease_now(
                self.sessionmaker, item.task_id, worker=worker, lease_s=lease_s
            )
        finally:
            request_id_var.reset(token)

    async def _succeed(self, items: Sequence[statements.Success]) -> list[Task | None]:
        if len(items) == 1:
            return [await self._succeed_one(items[0])]
        now = utc_now()
        async with driver_connection(self.sessionmaker) as connection:
            ended = await statements.succeed_many(
                connection,
                items,
                now=now,
                event=RowEvent("task.succeeded", request_id=None, at=now),
            )
        results: list[Task | None] = [ended.get(item.task.id) for item in items]
        alone = {  # lost its lease, or a subscriber wants the event: one task at a time
            index: self._succeed_one(item)
            for index, item in enumerate(items)
            if results[index] is None
        }
        return await _with_each(results, alone)

    async def _succeed_one(self, item: statements.Success) -> Task | None:
        token = request_id_var.set(item.request_id)
        try:
            return await lifecycle.succeed_now(self.sessionmaker, item.task, result=item.result)
        finally:
            request_id_var.reset(token)


async def _with_each(
    results: list[Task | None], alone: Mapping[int, Awaitable[Task | None]]
) -> list[Task | None]:
    """`results` with the transitions that go one task at a time run at once (each on a
    connection of its own) and put in their places."""
    for index, task in zip(alone, await asyncio.gather(*alone.values()), strict=True):
        results[index] = task
    return results


_groups: weakref.WeakKeyDictionary[async_sessionmaker[AsyncSession], _Groups] = (
    weakref.WeakKeyDictionary()
)


def _of(sessionmaker: async_sessionmaker[AsyncSession]) -> _Groups:
    if (groups := _groups.get(sessionmaker)) is None:
        groups = _groups[sessionmaker] = _Groups(sessionmaker)
    return groups


async def lease(
    sessionmaker: async_sessionmaker[AsyncSession],
    task_id: uuid.UUID,
    *,
    worker: str,
    lease_s: float,
) -> Task | None:
    """`lifecycle.lease_now`, grouped with the leases this process takes at the same time."""
    group = _of(sessionmaker).lease_group(worker, lease_s)
    return await group(_Lease(task_id, request_id_var.get()))


async def succeed(
    sessionmaker: async_sessionmaker[AsyncSession], task: Task, *, result: Any
) -> Task | None:
    """`lifecycle.succeed_now` for an inline result, grouped with the attempts of this process
    that succeed at the same time."""
    return await _of(sessionmaker).successes(statements.Success(task, result, request_id_var.get()))
