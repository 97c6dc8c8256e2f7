"""The worker's lease and finish for attempts that run at once in one process, grouped.

A worker process runs several attempts on its one loop (the `threads` pool's jobs, the tasks of
a job that carries several): their leases, and their successes with inline results, go to
PostgreSQL as one statement and one commit per group (`core.batching.GroupCommit`), each task
with its own guarded UPDATE row, its own event and, on success, its NOTIFY
(`statements.lease_many`, `succeed_many`). A lone attempt goes at once, through the one-task
statements of `lifecycle` (`lease_now`, `succeed_now`), and so does any task of a group that the
group's statement did not take: it was not queued any more (or not due), lost its lease, or an
event subscriber wants its event (then its transition runs in a transaction of its own with the
subscriber's rows). A lease its project's `max_running_tasks` refused is not tried again: the
task waits for a freed slot (decision 0018). Guarantees stay those of one task at a time: a
transition happens once, guarded by status and attempt, in the statement that writes its event.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.batching import Groups
from app.core.context import request_id_var
from app.core.db import utc_now
from app.core.sql import driver_connection
from app.events.statement import RowEvent
from app.tasks import dispatch, lifecycle, statements
from app.tasks.models import Task

T = TypeVar("T")


@dataclass(frozen=True)
class _Lease:
    task_id: uuid.UUID
    request_id: str | None


Sessionmaker = async_sessionmaker[AsyncSession]


async def _lease(
    sessionmaker: Sessionmaker,
    items: Sequence[_Lease],
    *,
    worker: str,
    lease_s: float,
    running_cap: int,
) -> list[Task | None]:
    if len(items) == 1:
        return [await _lease_one(sessionmaker, items[0], worker, lease_s, running_cap)]
    now = utc_now()
    async with driver_connection(sessionmaker) as connection:
        leased, refused = await statements.lease_many(
            connection,
            [item.task_id for item in items],
            request_ids=[item.request_id for item in items],
            worker=worker,
            now=now,
            lease_until=now + timedelta(seconds=lease_s),
            event=RowEvent("task.started", request_id=None, at=now),
            running_cap=running_cap,
        )
    results: list[Task | None] = []
    alone: dict[int, Awaitable[Task | None]] = {}
    seen: set[uuid.UUID] = set()
    for index, item in enumerate(items):
        results.append(leased.get(item.task_id) if item.task_id not in seen else None)
        if item.task_id in refused and item.task_id not in seen:
            lifecycle.log_refused(item.task_id)
        elif item.task_id not in seen and results[-1] is None:
            # Not queued, or a subscriber wants the event: one task at a time.
            alone[index] = _lease_one(sessionmaker, item, worker, lease_s, running_cap)
        seen.add(item.task_id)  # the same task twice in one group: one attempt only
    return await _with_each(results, alone)


async def _lease_one(
    sessionmaker: Sessionmaker, item: _Lease, worker: str, lease_s: float, running_cap: int
) -> Task | None:
    lease_now = lifecycle.lease_now(
        sessionmaker, item.task_id, worker=worker, lease_s=lease_s, running_cap=running_cap
    )
    return await _as_request(item.request_id, lease_now)


async def _succeed(
    sessionmaker: Sessionmaker, items: Sequence[statements.Success]
) -> list[Task | None]:
    if len(items) == 1:
        return [await _succeed_one(sessionmaker, items[0])]
    now = utc_now()
    async with driver_connection(sessionmaker) as connection:
        ended, handed = await statements.succeed_many(
            connection,
            items,
            now=now,
            event=RowEvent("task.succeeded", request_id=None, at=now),
        )
    await dispatch.hand_on(sessionmaker, handed)
    results: list[Task | None] = [ended.get(item.task.id) for item in items]
    alone = {  # lost its lease, or a subscriber wants the event: one task at a time
        index: _succeed_one(sessionmaker, item)
        for index, item in enumerate(items)
        if results[index] is None
    }
    return await _with_each(results, alone)


async def _succeed_one(sessionmaker: Sessionmaker, item: statements.Success) -> Task | None:
    succeed_now = lifecycle.succeed_now(sessionmaker, item.task, result=item.result)
    return await _as_request(item.request_id, succeed_now)


async def _as_request(request_id: str | None, transition: Awaitable[T]) -> T:
    """Await `transition` with the request id of the attempt it belongs to: a group runs in the
    task of whichever caller started it, and each event carries its own request id."""
    token = request_id_var.set(request_id)
    try:
        return await transition
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


# The leases of one worker id, lease length and default cap, and the successes, per
# sessionmaker (pool).
LEASES: Groups[Sessionmaker, tuple[str, float, int], _Lease, Task | None] = Groups(
    lambda sessionmaker, key: functools.partial(
        _lease, sessionmaker, worker=key[0], lease_s=key[1], running_cap=key[2]
    )
)
SUCCESSES: Groups[Sessionmaker, None, statements.Success, Task | None] = Groups(
    lambda sessionmaker, _: functools.partial(_succeed, sessionmaker)
)


async def lease(
    sessionmaker: async_sessionmaker[AsyncSession],
    task_id: uuid.UUID,
    *,
    worker: str,
    lease_s: float,
    running_cap: int,
) -> Task | None:
    """`lifecycle.lease_now`, grouped with the leases this process takes at the same time."""
    group = LEASES(sessionmaker, (worker, lease_s, running_cap))
    return await group(_Lease(task_id, request_id_var.get()))


async def succeed(
    sessionmaker: async_sessionmaker[AsyncSession], task: Task, *, result: Any
) -> Task | None:
    """`lifecycle.succeed_now` for an inline result, grouped with the attempts of this process
    that succeed at the same time."""
    success = statements.Success(task, result, request_id_var.get())
    return await SUCCESSES(sessionmaker, None)(success)
