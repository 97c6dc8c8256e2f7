"""A project's `max_running_tasks`: concurrent leases never take it over its cap, a refused task
waits unpublished until a finishing attempt hands it the slot (or the scheduler publishes it
within the cap), and other projects never notice (decision 0018)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import ProjectDefaults, Settings, TaskSettings
from app.core.db import create_engine, create_sessionmaker, transaction, utc_now
from app.core.sql import driver_connection
from app.events.statement import RowEvent
from app.projects.models import Project
from app.projects.settings import effective_settings, read_settings
from app.tasks import lifecycle, statements
from app.tasks.models import Task, TaskStatus
from app.worker import enqueue
from app.worker.enqueue import Publisher
from app.worker.scheduler import tick
from tests.integration.tasks.conftest import RUNNING_CAP, event_kinds, make_task, reload
from tests.integration.tasks.test_scheduler import queued_task_ids

Sessionmakers = list[async_sessionmaker[AsyncSession]]


@pytest.fixture
async def workers(settings: Settings) -> AsyncIterator[Sessionmakers]:
    """Three pools of their own, as three worker processes have: their leases really race."""
    engines = [create_engine(settings.database) for _ in range(3)]
    yield [create_sessionmaker(engine) for engine in engines]
    for engine in engines:
        await engine.dispose()


async def _cap(db: async_sessionmaker[AsyncSession], project: Project, cap: int | None) -> None:
    settings = {} if cap is None else {"max_running_tasks": cap}
    async with transaction(db) as session:
        await session.execute(
            update(Project).where(Project.id == project.id).values(settings=settings)
        )


async def _queued(
    db: async_sessionmaker[AsyncSession], project: Project, count: int, **fields: Any
) -> list[uuid.UUID]:
    """`count` queued tasks, published as submit publishes them, oldest first."""
    fields.setdefault("dispatched_at", utc_now())
    return [(await make_task(db, project, **fields)).id for _ in range(count)]


async def _running(db: async_sessionmaker[AsyncSession], project: Project) -> int:
    async with db() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Task)
            .where(Task.project_id == project.id, Task.status == TaskStatus.running)
        )
    return int(count or 0)


async def _lease_one(
    db: async_sessionmaker[AsyncSession], task_id: uuid.UUID, worker: str
) -> Task | None:
    return await lifecycle.lease_now(
        db, task_id, worker=worker, lease_s=30, running_cap=RUNNING_CAP
    )


async def _lease_group(
    db: async_sessionmaker[AsyncSession], task_ids: list[uuid.UUID], worker: str
) -> list[uuid.UUID]:
    now = utc_now()
    async with driver_connection(db) as connection:
        leased, _ = await statements.lease_many(
            connection,
            task_ids,
            request_ids=[None] * len(task_ids),
            worker=worker,
            now=now,
            lease_until=now + timedelta(seconds=30),
            event=RowEvent("task.started", request_id=None, at=now),
            running_cap=RUNNING_CAP,
        )
    return list(leased)


async def _race(workers: Sessionmakers, task_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Every task leased at once: one at a time and in groups of four, over three pools."""
    singles, grouped = task_ids[: len(task_ids) // 2], task_ids[len(task_ids) // 2 :]
    attempts = [
        _lease_one(workers[index % 3], task_id, f"w{index % 3}")
        for index, task_id in enumerate(singles)
    ] + [
        _lease_group(workers[index % 3], grouped[start : start + 4], f"g{index % 3}")
        for index, start in enumerate(range(0, len(grouped), 4))
    ]
    leased: list[uuid.UUID] = []
    for outcome in await asyncio.gather(*attempts):
        if isinstance(outcome, list):
            leased.extend(outcome)
        elif outcome is not None:
            leased.append(outcome.id)
    return leased


async def _succeed_all(db: async_sessionmaker[AsyncSession], task_ids: list[uuid.UUID]) -> None:
    for task_id in task_ids:
        assert await lifecycle.succeed_now(db, await reload(db, task_id), result={}) is not None


class TestConcurrentLeases:
    async def test_a_lease_waits_for_an_uncommitted_lease_of_its_project_and_counts_it(
        self,
        workers: Sessionmakers,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        other_live_project: Project,
    ) -> None:
        await _cap(live_db, live_project, 1)
        first, second = await _queued(live_db, live_project, 2)
        [elsewhere] = await _queued(live_db, other_live_project, 1)

        async with transaction(workers[0]) as session:
            held = await lifecycle.lease(
                session, first, worker="w0", lease_s=30, running_cap=RUNNING_CAP
            )
            racing = asyncio.ensure_future(_lease_one(workers[1], second, "w1"))
            other = await _lease_one(workers[2], elsewhere, "w2")  # another project: no wait
            await asyncio.sleep(0.3)
            assert not racing.done()  # it waits for this lease's lock, not for its snapshot
        refused = await racing

        assert held is not None
        assert other is not None
        assert refused is None
        assert await _running(live_db, live_project) == 1
        assert (await reload(live_db, second)).dispatched_at is None

    async def test_never_put_a_project_over_its_cap_while_other_projects_lease_freely(
        self,
        workers: Sessionmakers,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        other_live_project: Project,
    ) -> None:
        await _cap(live_db, live_project, 2)
        capped = await _queued(live_db, live_project, 48)
        free = await _queued(live_db, other_live_project, 24)

        for round_ in range(4):
            waiting = [t for t in capped if (await reload(live_db, t)).status == TaskStatus.queued]
            leased = await _race(workers, waiting + (free if round_ == 0 else []))

            mine = [t for t in leased if t in capped]
            assert await _running(live_db, live_project) == len(mine) == 2, round_
            if round_ == 0:
                assert sorted(map(str, set(leased) - set(mine))) == sorted(map(str, free))
            refused = [await reload(live_db, t) for t in waiting if t not in mine]
            assert {(t.status, t.dispatched_at) for t in refused} == {(TaskStatus.queued, None)}
            assert [await event_kinds(live_db, t.id) for t in refused[:5]] == [[]] * 5
            await _succeed_all(live_db, mine)

    async def test_far_under_a_large_cap_leases_share_lanes_and_still_stop_at_the_cap(
        self,
        workers: Sessionmakers,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
    ) -> None:
        # 300: the first leases go through one lane each (under 300 - 3 * 64), the last ones
        # through every lane.
        await _cap(live_db, live_project, 300)
        task_ids = await _queued(live_db, live_project, 360)

        first = await _race(workers, task_ids)
        assert len(first) <= 300
        assert await _running(live_db, live_project) == len(first)
        second = await _race(workers, [t for t in task_ids if t not in first])

        assert len(first) + len(second) == 300
        assert await _running(live_db, live_project) == 300


class TestRefusedTasks:
    async def test_wait_unpublished_until_a_finish_hands_over_its_slot(
        self,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        publisher: Publisher,
        redis: Redis,
    ) -> None:
        await _cap(live_db, live_project, 1)
        first, second, third = await _queued(live_db, live_project, 3)
        held = await _lease_one(live_db, first, "w")
        assert held is not None
        assert await _lease_one(live_db, second, "w") is None
        assert await _lease_one(live_db, third, "w") is None
        assert (await reload(live_db, second)).dispatched_at is None

        with enqueue.using(publisher):
            assert await lifecycle.succeed_now(live_db, held, result={}) is not None

        handed, left = await reload(live_db, second), await reload(live_db, third)
        assert (handed.status, handed.dispatched_at is not None) == (TaskStatus.queued, True)
        assert str(second) in await queued_task_ids(redis, "default")
        assert left.dispatched_at is None  # one slot freed, one task handed it
        leased = await _lease_one(live_db, second, "w")
        assert leased is not None
        assert await event_kinds(live_db, second) == ["task.started"]

    async def test_a_failed_or_canceled_attempt_hands_over_its_slot_too(
        self,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        publisher: Publisher,
        limits: TaskSettings,
    ) -> None:
        await _cap(live_db, live_project, 1)
        first, second, third = await _queued(live_db, live_project, 3)
        held = await _lease_one(live_db, first, "w")
        assert held is not None
        assert await _lease_one(live_db, second, "w") is None

        with enqueue.using(publisher):
            async with transaction(live_db) as session:
                await lifecycle.fail_attempt(
                    session, held, error_type="x", message="x", retryable=True, limits=limits
                )
            assert (await reload(live_db, second)).dispatched_at is not None
            again = await _lease_one(live_db, second, "w")
            assert again is not None
            assert await _lease_one(live_db, third, "w") is None
            async with transaction(live_db) as session:
                await lifecycle.end_canceled(session, again)

        assert (await reload(live_db, third)).dispatched_at is not None

    async def test_the_scheduler_publishes_only_what_fits_under_each_cap(
        self,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        other_live_project: Project,
        publisher: Publisher,
        redis: Redis,
        settings: Settings,
    ) -> None:
        await _cap(live_db, live_project, 3)
        await _queued(live_db, live_project, 1, status=TaskStatus.running)
        [published] = await _queued(live_db, live_project, 1)  # its message is on its way
        waiting = await _queued(live_db, live_project, 6, dispatched_at=None)
        free = await _queued(live_db, other_live_project, 4, dispatched_at=None)

        await tick(live_db, publisher, redis, settings)
        await tick(live_db, publisher, redis, settings)  # nothing more fits: nothing more sent

        sent = await queued_task_ids(redis, "default")
        assert [t for t in waiting if str(t) in sent] == waiting[:1]
        assert all(str(t) in sent for t in free)
        assert str(published) not in sent
        assert [(await reload(live_db, t)).dispatched_at is None for t in waiting] == [False] + [
            True
        ] * 5


class TestTheCapInSql:
    @pytest.mark.parametrize(
        "stored",
        [
            {},
            {"max_running_tasks": 2},
            {"max_running_tasks": 100_000},
            {"max_running_tasks": 100_001},
            {"max_running_tasks": 0},
            {"max_running_tasks": -1},
            {"max_running_tasks": 2.0},
            {"max_running_tasks": 2.5},
            {"max_running_tasks": True},
            {"max_running_tasks": "2"},
            {"max_running_tasks": None},
            {"max_running_tasks": [2]},
            {"max_running_tasks": 5, "unknown": 1},
        ],
    )
    async def test_reads_stored_settings_as_the_application_does(
        self, db: async_sessionmaker[AsyncSession], stored: dict[str, Any]
    ) -> None:
        defaults = ProjectDefaults(max_running_tasks=7)
        expected = effective_settings(read_settings(stored), defaults).max_running_tasks

        async with driver_connection(db) as connection:
            found = await connection.fetchval(
                "SELECT taskgate_running_cap(CAST($1 AS jsonb), 7)",
                json.dumps(stored),
            )

        assert found == expected
