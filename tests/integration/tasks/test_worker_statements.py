"""The worker's hand-written transitions (`app/tasks/statements.py` via `lifecycle`): the same
rows and events as before, the lease committed without waiting for disk, the finish durably.
On committing sessions: `synchronous_commit` is per transaction, and the rolled-back `db`
fixture keeps one transaction for the whole test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import connect_args, create_engine, create_sessionmaker, transaction
from app.events.models import ActorType, Event
from app.projects.models import Project
from app.tasks import lifecycle
from app.tasks.models import Priority, Task, TaskStatus
from app.tasks.schemas import TaskRead
from app.webhooks.models import WebhookDelivery
from tests.integration.tasks.conftest import RUNNING_CAP, event_kinds, make_task, reload
from tests.integration.webhooks.conftest import make_endpoint


@pytest.fixture
async def durable_db(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Committing sessions whose connections commit durably unless a transaction says otherwise
    (the test servers run with `synchronous_commit = off` for speed; production does not)."""
    args = connect_args(settings.database)
    args["server_settings"] = {**args["server_settings"], "synchronous_commit": "on"}
    engine = create_engine(settings.database, connect_args=args)
    yield create_sessionmaker(engine)
    await engine.dispose()


async def _leased(db: async_sessionmaker[AsyncSession], project: Project) -> tuple[Task, Task]:
    """A queued task, and its lease by worker `w1`."""
    task = await make_task(db, project)
    async with transaction(db) as session:
        leased = await lifecycle.lease(
            session, task.id, worker="w1", lease_s=30, running_cap=RUNNING_CAP
        )
    assert leased is not None
    return task, leased


async def _commit_mode(session: AsyncSession) -> str:
    return str(await session.scalar(text("SHOW synchronous_commit")))


class TestLease:
    async def test_leases_with_its_event_and_does_not_wait_for_the_disk(
        self, durable_db: async_sessionmaker[AsyncSession], live_project: Project
    ) -> None:
        task = await make_task(
            durable_db, live_project, priority=Priority.high, request_id="req-w-1"
        )

        async with transaction(durable_db) as session:
            leased = await lifecycle.lease(
                session, task.id, worker="w1", lease_s=30, running_cap=RUNNING_CAP
            )
            mode = await _commit_mode(session)

        assert leased is not None
        assert (leased.status, leased.priority, leased.attempt) == (
            TaskStatus.running,
            Priority.high,
            1,
        )
        assert leased.lease_expires_at is not None
        assert mode == "off"  # in this transaction only (SET LOCAL), as the next one shows
        stored = await reload(durable_db, task.id)
        assert (stored.status, stored.worker, stored.attempt) == (TaskStatus.running, "w1", 1)
        async with durable_db() as session:
            event = await session.scalar(select(Event).where(Event.subject_id == task.id))
            assert await _commit_mode(session) == "on"
        assert event is not None
        assert event.kind == "task.started"
        assert event.actor_type == ActorType.system
        assert event.data == {"attempt": 1, "worker": "w1"}

    async def test_a_task_that_is_not_queued_is_not_leased_and_records_nothing(
        self, durable_db: async_sessionmaker[AsyncSession], live_project: Project
    ) -> None:
        task = await make_task(durable_db, live_project, status=TaskStatus.succeeded)

        async with transaction(durable_db) as session:
            assert (
                await lifecycle.lease(
                    session, task.id, worker="w1", lease_s=30, running_cap=RUNNING_CAP
                )
                is None
            )

        assert await event_kinds(durable_db, task.id) == []


class TestSucceed:
    async def test_succeeds_durably_with_the_result_inline_and_its_event(
        self, durable_db: async_sessionmaker[AsyncSession], live_project: Project
    ) -> None:
        task, leased = await _leased(durable_db, live_project)

        async with transaction(durable_db) as session:
            ended = await lifecycle.succeed(session, leased, result={"n": 2**70})
            mode = await _commit_mode(session)

        assert ended is not None
        assert mode == "on"
        stored = await reload(durable_db, task.id)
        assert stored.status == TaskStatus.succeeded
        assert stored.result == {"n": 2**70}
        assert stored.finished_at is not None
        assert stored.lease_expires_at is None
        assert await event_kinds(durable_db, task.id) == ["task.started", "task.succeeded"]

    async def test_a_result_kept_in_s3_leaves_sql_null(
        self, durable_db: async_sessionmaker[AsyncSession], live_project: Project
    ) -> None:
        task, leased = await _leased(durable_db, live_project)

        async with transaction(durable_db) as session:
            await lifecycle.succeed(session, leased, result=None, result_key="projects/x/r")
            is_null = await session.scalar(
                text("SELECT result IS NULL FROM tasks WHERE id = :id"), {"id": task.id}
            )

        assert is_null is True
        assert (await reload(durable_db, task.id)).result_key == "projects/x/r"

    async def test_an_attempt_that_lost_its_lease_changes_nothing(
        self, durable_db: async_sessionmaker[AsyncSession], live_project: Project
    ) -> None:
        task, _ = await _leased(durable_db, live_project)
        stale = await reload(durable_db, task.id)
        stale.attempt = 0  # an earlier attempt, reaped and superseded

        async with transaction(durable_db) as session:
            assert await lifecycle.succeed(session, stale, result={"late": True}) is None

        stored = await reload(durable_db, task.id)
        assert (stored.status, stored.result) == (TaskStatus.running, None)
        assert await event_kinds(durable_db, task.id) == ["task.started"]


class TestSubscribersOfTheTransitions:
    async def test_a_subscribed_endpoint_gets_both_events_with_the_task_as_it_was(
        self, durable_db: async_sessionmaker[AsyncSession], live_project: Project
    ) -> None:
        await make_endpoint(durable_db, live_project, "https://example.com/all")
        await make_endpoint(durable_db, live_project, "https://example.com/none", events=["x.y"])
        task, leased = await _leased(durable_db, live_project)
        async with transaction(durable_db) as session:
            ended = await lifecycle.succeed(session, leased, result={"ok": True})
        assert ended is not None

        async with durable_db() as session:
            rows = (
                await session.execute(
                    select(Event.kind, Event.at, WebhookDelivery.payload)
                    .join(WebhookDelivery, WebhookDelivery.event_id == Event.id)
                    .where(Event.subject_id == task.id)
                    .order_by(Event.at)
                )
            ).all()
        assert [kind for kind, _, _ in rows] == ["task.started", "task.succeeded"]
        for (kind, at, payload), state in zip(rows, (leased, ended), strict=True):
            assert payload == {
                "type": kind,
                "timestamp": at.isoformat().replace("+00:00", "Z"),
                "data": TaskRead.model_validate(state).model_dump(mode="json"),
            }

    async def test_without_a_subscriber_no_delivery_is_written(
        self, durable_db: async_sessionmaker[AsyncSession], live_project: Project
    ) -> None:
        task, leased = await _leased(durable_db, live_project)
        async with transaction(durable_db) as session:
            await lifecycle.succeed(session, leased, result={"ok": True})

        async with durable_db() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .join(Event, Event.id == WebhookDelivery.event_id)
                .where(Event.subject_id == task.id)
            )
        assert count == 0
        assert await event_kinds(durable_db, task.id) == ["task.started", "task.succeeded"]


class TestTheWorkersPath:
    """`lease_now` / `succeed_now`: one statement that commits by itself, or a transaction when
    a subscriber wants the event (its rows need the event's body)."""

    async def _deliveries(self, db: async_sessionmaker[AsyncSession], task: Task) -> list[str]:
        async with db() as session:
            rows = await session.scalars(
                select(Event.kind)
                .join(WebhookDelivery, WebhookDelivery.event_id == Event.id)
                .where(Event.subject_id == task.id)
                .order_by(Event.at)
            )
            return list(rows)

    async def test_without_a_subscriber_each_transition_is_one_statement(
        self, durable_db: async_sessionmaker[AsyncSession], live_project: Project
    ) -> None:
        task = await make_task(durable_db, live_project)

        leased = await lifecycle.lease_now(
            durable_db, task.id, worker="w2", lease_s=30, running_cap=RUNNING_CAP
        )
        assert leased is not None
        assert leased.attempt == 1
        assert (
            await lifecycle.lease_now(
                durable_db, task.id, worker="w3", lease_s=30, running_cap=RUNNING_CAP
            )
            is None
        )
        ended = await lifecycle.succeed_now(durable_db, leased, result={"n": 1})

        assert ended is not None
        assert ended.status == TaskStatus.succeeded
        stored = await reload(durable_db, task.id)
        assert (stored.status, stored.worker, stored.result) == (
            TaskStatus.succeeded,
            "w2",
            {"n": 1},
        )
        assert await event_kinds(durable_db, task.id) == ["task.started", "task.succeeded"]
        assert await self._deliveries(durable_db, task) == []

    async def test_with_a_subscriber_the_transitions_write_its_deliveries_too(
        self, durable_db: async_sessionmaker[AsyncSession], live_project: Project
    ) -> None:
        await make_endpoint(durable_db, live_project, "https://example.com/all")
        task = await make_task(durable_db, live_project)

        leased = await lifecycle.lease_now(
            durable_db, task.id, worker="w2", lease_s=30, running_cap=RUNNING_CAP
        )
        assert leased is not None
        ended = await lifecycle.succeed_now(durable_db, leased, result={"n": 1})

        assert ended is not None
        assert await event_kinds(durable_db, task.id) == ["task.started", "task.succeeded"]
        assert await self._deliveries(durable_db, task) == ["task.started", "task.succeeded"]

    async def test_a_lost_lease_changes_nothing_on_either_path(
        self, durable_db: async_sessionmaker[AsyncSession], live_project: Project
    ) -> None:
        task, _ = await _leased(durable_db, live_project)
        stale = await reload(durable_db, task.id)
        stale.attempt = 0

        assert await lifecycle.succeed_now(durable_db, stale, result={"late": True}) is None
        await make_endpoint(durable_db, live_project, "https://example.com/all")
        assert await lifecycle.succeed_now(durable_db, stale, result={"late": True}) is None

        assert (await reload(durable_db, task.id)).status == TaskStatus.running
        assert await event_kinds(durable_db, task.id) == ["task.started"]
