"""One attempt on a worker, run in-process against the real database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import orjson
import pytest
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings, TaskSettings
from app.core.db import transaction, utc_now
from app.files.storage import Storage
from app.projects.models import Project
from app.tasks import scheduling
from app.tasks.models import Task, TaskStatus
from app.tasks.runner import Shutdown, execute
from app.tasktypes.base import TaskContext, TaskType
from app.tasktypes.builtin import EchoInput
from app.tasktypes.registry import Registry, get_registry
from app.worker import enqueue
from app.worker.enqueue import Publisher
from tests.integration.tasks.conftest import RUNNING_CAP, event_kinds, make_task, reload
from tests.integration.tasks.test_scheduler import queued_task_ids


@pytest.fixture
def storage(settings: Settings) -> Storage:
    return Storage.from_settings(settings)


async def _execute(
    db: async_sessionmaker[AsyncSession],
    task: Task,
    limits: TaskSettings,
    storage: Storage,
    shutdown: Shutdown | None = None,
) -> None:
    await execute(
        db,
        task.id,
        registry=get_registry(),
        limits=limits,
        worker="test-worker",
        storage=storage,
        running_cap=RUNNING_CAP,
        shutdown=shutdown,
    )


async def _until(
    db: async_sessionmaker[AsyncSession], task: Task, condition: Callable[[Task], bool]
) -> Task:
    """The task as soon as `condition` holds for it (polled for at most 5 s)."""
    for _ in range(100):
        current = await reload(db, task.id)
        if condition(current):
            return current
        await asyncio.sleep(0.05)
    raise AssertionError("the task did not get there within 5 s")


async def _until_running(db: async_sessionmaker[AsyncSession], task: Task) -> None:
    await _until(db, task, lambda current: current.status == TaskStatus.running)


async def _request_cancel(db: async_sessionmaker[AsyncSession], task: Task) -> None:
    """What `POST /tasks/{id}/cancel` does to a running task."""
    async with transaction(db) as session:
        await session.execute(
            update(Task).where(Task.id == task.id).values(cancel_requested_at=utc_now())
        )


class TestExecute:
    async def test_runs_a_queued_task_to_success(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        task = await make_task(db, project, input={"hello": "world"})

        await _execute(db, task, limits, storage)

        done = await reload(db, task.id)
        assert done.status == TaskStatus.succeeded
        assert done.result == {"hello": "world"}
        assert done.attempt == 1
        assert done.started_at is not None
        assert done.finished_at is not None
        assert done.lease_expires_at is None
        assert await event_kinds(db, task.id) == ["task.started", "task.succeeded"]

    async def test_a_second_delivery_of_a_finished_task_does_nothing(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        task = await make_task(db, project)
        await _execute(db, task, limits, storage)

        await _execute(db, task, limits, storage)

        assert (await reload(db, task.id)).attempt == 1
        assert await event_kinds(db, task.id) == ["task.started", "task.succeeded"]

    async def test_a_task_not_yet_due_is_not_started(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        task = await make_task(db, project, run_at=utc_now() + timedelta(hours=1))

        await _execute(db, task, limits, storage)

        assert (await reload(db, task.id)).status == TaskStatus.queued

    async def test_a_retryable_failure_with_attempts_left_is_retried_later(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        task = await make_task(db, project, type="fail", input={"message": "boom"})

        await _execute(db, task, limits, storage)

        failed = await reload(db, task.id)
        assert failed.status == TaskStatus.retrying
        assert failed.error == {"type": "fail", "message": "boom"}
        assert failed.run_at is not None
        assert failed.dispatched_at is None
        assert await event_kinds(db, task.id) == ["task.started", "task.retrying"]

    async def test_a_task_that_always_fails_runs_exactly_max_attempts_times(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        task = await make_task(db, project, type="fail", max_attempts=3)

        for _ in range(5):
            async with transaction(db) as session:
                await scheduling.promote_due_retries(session, limit=10)
            await _execute(db, task, limits, storage)

        done = await reload(db, task.id)
        assert done.status == TaskStatus.failed
        assert done.attempt == 3
        kinds = await event_kinds(db, task.id)
        assert kinds.count("task.started") == 3
        assert kinds.count("task.retrying") == 2
        assert kinds.count("task.failed") == 1

    async def test_a_non_retryable_failure_fails_at_once(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        task = await make_task(db, project, type="fail", input={"retryable": False})

        await _execute(db, task, limits, storage)

        done = await reload(db, task.id)
        assert done.status == TaskStatus.failed
        assert done.attempt == 1

    async def test_input_the_handler_rejects_fails_without_retry(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        task = await make_task(db, project, type="sleep", input={"seconds": "long"})

        await _execute(db, task, limits, storage)

        done = await reload(db, task.id)
        assert done.status == TaskStatus.failed
        assert done.error is not None
        assert done.error["type"] == "input"

    async def test_an_unknown_type_fails_without_retry(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        task = await make_task(db, project, type="gone.away")

        await _execute(db, task, limits, storage)

        done = await reload(db, task.id)
        assert done.status == TaskStatus.failed
        assert done.error is not None
        assert done.error["type"] == "unknown_type"

    async def test_an_attempt_over_its_timeout_is_retried_then_failed(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        task = await make_task(
            db, project, type="sleep", input={"seconds": 30}, timeout_s=1, max_attempts=2
        )

        await _execute(db, task, limits, storage)
        after_first = await reload(db, task.id)
        async with transaction(db) as session:
            await scheduling.promote_due_retries(session, limit=10)
        await _execute(db, task, limits, storage)

        assert after_first.status == TaskStatus.retrying
        assert after_first.error is not None
        assert after_first.error["type"] == "timeout"
        done = await reload(db, task.id)
        assert done.status == TaskStatus.failed
        assert done.error is not None
        assert done.error["type"] == "timeout"
        assert done.attempt == 2

    async def test_a_result_over_the_inline_limit_is_kept_in_s3(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        task = await make_task(db, project, input={"blob": "x" * 70_000})

        await _execute(db, task, limits, storage)

        done = await reload(db, task.id)
        assert done.status == TaskStatus.succeeded
        assert done.result is None
        assert done.result_key == f"projects/{project.id}/results/{task.id}.json"
        with storage.open(done.result_key) as stored:
            assert orjson.loads(stored.read()) == {"blob": "x" * 70_000}

    async def test_progress_is_recorded_while_running(
        self,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        db, project = live_db, live_project
        task = await make_task(db, project, type="sleep", input={"seconds": 2})

        running = asyncio.create_task(_execute(db, task, limits, storage))
        midway = await _until(db, task, lambda current: current.progress is not None)
        await running

        assert midway.status == TaskStatus.running
        assert midway.progress is not None
        assert 0 < midway.progress < 1
        assert (await reload(db, task.id)).progress == 1.0


class TestCancelWhileRunning:
    @pytest.mark.parametrize(
        ("task_type", "task_input"),
        [
            pytest.param("sleep", {"seconds": 30}, id="async handler"),
            pytest.param("cpu.primes", {"n": 200_000_000}, id="cpu-bound handler in a thread"),
        ],
    )
    async def test_a_running_task_stops_and_ends_canceled(
        self,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        limits: TaskSettings,
        storage: Storage,
        task_type: str,
        task_input: dict[str, int],
    ) -> None:
        db, project = live_db, live_project
        task = await make_task(db, project, type=task_type, input=task_input)
        running = asyncio.create_task(_execute(db, task, limits, storage))
        await _until_running(db, task)

        await _request_cancel(db, task)
        await asyncio.wait_for(running, timeout=5)

        done = await reload(db, task.id)
        assert done.status == TaskStatus.canceled
        assert (await event_kinds(db, task.id))[-1] == "task.canceled"


class TestWarmShutdown:
    async def test_an_attempt_still_running_after_the_grace_is_released_at_once(
        self,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        limits: TaskSettings,
        storage: Storage,
        publisher: Publisher,
        redis: Redis,
    ) -> None:
        db, project = live_db, live_project
        task = await make_task(db, project, type="sleep", input={"seconds": 30})
        asked: list[float] = []
        shutdown = Shutdown(lambda: asked[0] if asked else None, grace_s=0.2)
        with enqueue.using(publisher):
            running = asyncio.create_task(_execute(db, task, limits, storage, shutdown))
        await _until_running(db, task)

        asked.append(time.monotonic())
        await asyncio.wait_for(running, timeout=5)

        released = await reload(db, task.id)
        assert (released.status, released.worker, released.lease_expires_at) == (
            TaskStatus.queued,
            None,
            None,
        )
        # Published again at once, not once the lease expires.
        assert released.dispatched_at is not None
        assert str(task.id) in await queued_task_ids(redis, "default")
        assert (await event_kinds(db, task.id))[-2:] == ["task.started", "task.requeued"]

    async def test_an_attempt_that_ends_within_the_grace_keeps_its_outcome(
        self,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        db, project = live_db, live_project
        task = await make_task(db, project, type="sleep", input={"seconds": 0.5})
        shutdown = Shutdown(time.monotonic, grace_s=5)  # asked to stop as it starts

        await asyncio.wait_for(_execute(db, task, limits, storage, shutdown), timeout=5)

        assert (await reload(db, task.id)).status == TaskStatus.succeeded

    async def test_a_released_attempt_with_none_left_fails(
        self,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        db, project = live_db, live_project
        task = await make_task(db, project, type="sleep", input={"seconds": 30}, max_attempts=1)
        shutdown = Shutdown(time.monotonic, grace_s=0)

        await asyncio.wait_for(_execute(db, task, limits, storage, shutdown), timeout=5)

        failed = await reload(db, task.id)
        assert (failed.status, failed.error) == (
            TaskStatus.failed,
            {"type": "worker_shutdown", "message": "the worker shut down before the attempt ended"},
        )
        assert (await event_kinds(db, task.id))[-1] == "task.failed"


class TestLeaseLost:
    async def test_an_attempt_whose_lease_was_reaped_writes_nothing(
        self,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        db, project = live_db, live_project
        task = await make_task(db, project, type="sleep", input={"seconds": 1})
        running = asyncio.create_task(_execute(db, task, limits, storage))
        await _until_running(db, task)

        # As if the worker had stalled: its lease expires and the scheduler takes the task back.
        async with transaction(db) as session:
            await session.execute(
                update(Task)
                .where(Task.id == task.id)
                .values(lease_expires_at=utc_now() - timedelta(seconds=1))
            )
            await scheduling.reap_expired_leases(session, limit=10)
        await asyncio.wait_for(running, timeout=5)

        done = await reload(db, task.id)
        assert done.status == TaskStatus.queued
        assert done.result is None
        assert "task.succeeded" not in await event_kinds(db, task.id)


class TestUnstorableResult:
    async def test_a_result_jsonb_cannot_hold_fails_the_task_clearly(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
    ) -> None:
        async def not_a_number(_data: EchoInput, _context: TaskContext) -> dict[str, float]:
            return {"x": float("nan")}

        registry = Registry(
            [TaskType(name="nan", description="", input_model=EchoInput, handler=not_a_number)]
        )
        task = await make_task(db, project, type="nan")

        await execute(
            db,
            task.id,
            registry=registry,
            limits=limits,
            worker="test-worker",
            storage=storage,
            running_cap=RUNNING_CAP,
        )

        done = await reload(db, task.id)
        assert done.status == TaskStatus.failed
        assert done.error is not None
        assert done.error["type"] == "invalid_result"
