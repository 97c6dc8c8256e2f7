"""Leases and successes of attempts that run at once in one process, grouped into one statement
(`app/tasks/grouped.py`): each task still gets its own guarded transition, its own event (with
its caller's request id), its NOTIFY; what the group cannot take goes one at a time."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings, TaskSettings
from app.core.context import request_id_var
from app.events.models import Event
from app.files.storage import Storage
from app.projects.models import Project
from app.tasks import grouped, runner
from app.tasks.models import Task, TaskStatus
from app.tasks.repository import FINISHED_CHANNEL
from app.tasktypes.registry import get_registry
from app.webhooks.models import WebhookDelivery
from tests.integration.tasks.conftest import RUNNING_CAP, event_kinds, make_task, reload
from tests.integration.webhooks.conftest import make_endpoint

T = TypeVar("T")


async def _as(request_id: str, call: Callable[[], Awaitable[T]]) -> T:
    """`call()` in a context of its own with `request_id` (as each job has)."""
    request_id_var.set(request_id)
    return await call()


async def _events(db: async_sessionmaker[AsyncSession], task_id: uuid.UUID) -> list[Event]:
    async with db() as session:
        rows = await session.scalars(
            select(Event).where(Event.subject_id == task_id).order_by(Event.at, Event.id)
        )
        return list(rows)


async def _lease_all(
    db: async_sessionmaker[AsyncSession], task_ids: list[uuid.UUID]
) -> list[Task | None]:
    return await asyncio.gather(
        *(
            _as(
                f"req-{index}",
                functools.partial(
                    grouped.lease, db, t, worker="w", lease_s=30, running_cap=RUNNING_CAP
                ),
            )
            for index, t in enumerate(task_ids)
        )
    )


@pytest.fixture
async def listener(settings: Settings) -> AsyncIterator[list[str]]:
    """The ids NOTIFY'd on the channel long-polls wait on."""
    heard: list[str] = []
    url = settings.database.url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(url)
    await connection.add_listener(FINISHED_CHANNEL, lambda *args: heard.append(args[3]))
    yield heard
    await connection.close()


class TestGroupedLeases:
    async def test_leases_taken_together_are_one_statement_and_each_task_one_attempt(
        self, live_db: async_sessionmaker[AsyncSession], live_project: Project
    ) -> None:
        queued = [await make_task(live_db, live_project) for _ in range(4)]
        done = await make_task(live_db, live_project, status=TaskStatus.succeeded)
        ids = [t.id for t in queued] + [done.id, queued[0].id]  # and one asked for twice
        group = grouped.LEASES(live_db, ("w", 30, RUNNING_CAP))
        runs = group.runs

        leased = await _lease_all(live_db, ids)

        assert group.runs == runs + 1
        assert [t.id if t else None for t in leased[:4]] == [t.id for t in queued]
        assert all(t is not None and (t.attempt, t.worker) == (1, "w") for t in leased[:4])
        assert leased[4:] == [None, None]  # not queued; the same task again
        for index, task in enumerate(queued):
            stored = await reload(live_db, task.id)
            assert (stored.status, stored.attempt) == (TaskStatus.running, 1)
            [event] = await _events(live_db, task.id)
            assert (event.kind, event.data, event.request_id) == (
                "task.started",
                {"attempt": 1, "worker": "w"},
                f"req-{index}",
            )
        assert await event_kinds(live_db, done.id) == []

    async def test_a_task_whose_event_a_subscriber_wants_is_leased_with_its_deliveries(
        self,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        other_live_project: Project,
    ) -> None:
        await make_endpoint(live_db, other_live_project, "https://example.com/all")
        plain = await make_task(live_db, live_project)
        watched, also_watched = [await make_task(live_db, other_live_project) for _ in range(2)]

        leased = await _lease_all(live_db, [plain.id, watched.id, also_watched.id])

        assert [task.id if task else None for task in leased] == [
            plain.id,
            watched.id,
            also_watched.id,
        ]
        assert all(task is not None and task.attempt == 1 for task in leased)
        async with live_db() as session:
            kinds = await session.execute(
                select(Event.subject_id, Event.kind).join(
                    WebhookDelivery, WebhookDelivery.event_id == Event.id
                )
            )
            delivered = {(subject, kind) for subject, kind in kinds}
        assert {(watched.id, "task.started"), (also_watched.id, "task.started")} <= delivered
        assert all(subject != plain.id for subject, _ in delivered)
        assert await event_kinds(live_db, plain.id) == ["task.started"]
        assert await event_kinds(live_db, watched.id) == ["task.started"]


class TestGroupedSuccesses:
    async def test_successes_together_end_each_attempt_with_its_result_event_and_notify(
        self,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        listener: list[str],
    ) -> None:
        tasks = [await make_task(live_db, live_project) for _ in range(3)]
        leased = [t for t in await _lease_all(live_db, [t.id for t in tasks]) if t is not None]
        stale = await reload(live_db, tasks[2].id)
        stale.attempt = 0  # an attempt that lost its lease: changes nothing
        results: list[Any] = [{"n": 1}, None]

        ended = await asyncio.gather(
            *(
                _as(f"fin-{i}", functools.partial(grouped.succeed, live_db, task, result=result))
                for i, (task, result) in enumerate(
                    [*zip(leased[:2], results, strict=True), (stale, 9)]
                )
            )
        )

        assert [t.status if t else None for t in ended] == [
            TaskStatus.succeeded,
            TaskStatus.succeeded,
            None,
        ]
        assert (await reload(live_db, tasks[0].id)).result == {"n": 1}
        async with live_db() as session:
            kind = await session.scalar(
                text("SELECT jsonb_typeof(result) FROM tasks WHERE id = :id"),
                {"id": tasks[1].id},
            )
        assert kind == "null"  # a JSON null, as one task at a time stores it
        assert (await reload(live_db, tasks[2].id)).status == TaskStatus.running
        for index, task in enumerate(tasks[:2]):
            events = await _events(live_db, task.id)
            assert [(e.kind, e.request_id) for e in events][1] == ("task.succeeded", f"fin-{index}")
            assert events[1].data == {"attempt": 1}
        assert await event_kinds(live_db, tasks[2].id) == ["task.started"]
        for _ in range(50):
            if len(listener) >= 2:
                break
            await asyncio.sleep(0.02)
        assert sorted(listener) == sorted(str(t.id) for t in tasks[:2])


class TestOneJobSeveralTasks:
    async def test_each_task_of_the_job_runs_once_and_ends_on_its_own(
        self,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        limits: TaskSettings,
        settings: Settings,
    ) -> None:
        echoes = [await make_task(live_db, live_project, input={"n": n}) for n in range(3)]
        unknown = await make_task(live_db, live_project, type="no.such.type")

        await runner.execute_all(
            live_db,
            [t.id for t in echoes] + [unknown.id, echoes[0].id],  # one delivered twice
            registry=get_registry(),
            limits=limits,
            worker="w",
            storage=Storage.from_settings(settings),
            running_cap=RUNNING_CAP,
        )

        for n, task in enumerate(echoes):
            done = await reload(live_db, task.id)
            assert (done.status, done.attempt, done.result) == (TaskStatus.succeeded, 1, {"n": n})
            assert await event_kinds(live_db, task.id) == ["task.started", "task.succeeded"]
        failed = await reload(live_db, unknown.id)
        assert (failed.status, failed.attempt) == (TaskStatus.failed, 1)
