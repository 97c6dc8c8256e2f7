"""Retention: expired files and task results go (rows and objects); uploads stay unless asked."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import transaction, utc_now
from app.core.scheduling import StepContext
from app.events.models import Event
from app.files import worker_side
from app.files.models import File, FileStatus
from app.files.retention import FileRetention
from app.files.storage import Storage, object_key
from app.projects.models import Project
from app.tasks.models import Task, TaskStatus
from app.tasks.retention import ResultRetention
from app.worker.enqueue import Publisher
from app.worker.scheduler import tick
from tests.integration.files.conftest import make_file, object_bytes
from tests.support import free_port

DAY = timedelta(days=1)


async def sweep(
    db: async_sessionmaker[AsyncSession], storage: Storage, *, now: datetime | None = None
) -> dict[str, int]:
    """One batch of each retention step: expired files, then expired task results."""
    files = await FileRetention(storage).sweep(db, now=now)
    return {**files, **await ResultRetention(storage).sweep(db, now=now)}


async def _finished_task(
    db: async_sessionmaker[AsyncSession],
    storage: Storage,
    project: Project,
    *,
    finished_ago: timedelta,
    in_s3: bool,
) -> Task:
    task_id = uuid.uuid4()
    key = object_key(project.id, "results", f"{task_id}.json") if in_s3 else None
    if key is not None:
        await asyncio.to_thread(storage.put, key, b'{"big": true}', content_type="a/json")
    async with transaction(db) as session:
        task = Task(
            id=task_id,
            project_id=project.id,
            type="echo",
            input={},
            status=TaskStatus.succeeded,
            result=None if in_s3 else {"small": True},
            result_key=key,
            created_at=utc_now() - finished_ago,
            finished_at=utc_now() - finished_ago,
        )
        session.add(task)
    return task


async def _exists(db: async_sessionmaker[AsyncSession], file: File) -> bool:
    async with db() as session:
        return await session.get(File, file.id) is not None


class TestSweep:
    async def test_expired_outputs_go_and_everything_else_stays(
        self, db: async_sessionmaker[AsyncSession], storage: Storage, project: Project
    ) -> None:
        now = utc_now()
        expired = await make_file(db, storage, project, b"old", expires_at=now - DAY)
        abandoned = await make_file(
            db, storage, project, b"", status=FileStatus.pending, upload=False, expires_at=now
        )
        kept_output = await make_file(db, storage, project, b"new", expires_at=now + DAY)
        upload = await make_file(db, storage, project, b"user data")  # expires_at None

        done = await sweep(db, storage, now=now + timedelta(seconds=1))

        assert done["files_expired"] == 2
        assert not await _exists(db, expired)
        assert not await _exists(db, abandoned)
        assert await object_bytes(storage, expired.key) is None
        assert await _exists(db, kept_output)
        assert await object_bytes(storage, kept_output.key) == b"new"
        assert await _exists(db, upload)
        assert await object_bytes(storage, upload.key) == b"user data"
        async with db() as session:
            deleted = await session.scalars(
                select(Event.data).where(
                    Event.subject_id == expired.id, Event.kind == "file.deleted"
                )
            )
            assert [data["reason"] for data in deleted] == ["expired"]

    async def test_results_past_retention_are_dropped_with_their_objects(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        settings: Settings,
    ) -> None:
        retention = timedelta(days=settings.files.result_retention_days)
        old_inline = await _finished_task(
            db, storage, project, finished_ago=retention + DAY, in_s3=False
        )
        old_s3 = await _finished_task(
            db, storage, project, finished_ago=retention + DAY, in_s3=True
        )
        recent = await _finished_task(db, storage, project, finished_ago=DAY, in_s3=True)

        done = await sweep(db, storage)

        assert done["results_expired"] >= 2
        async with db() as session:
            for task in (old_inline, old_s3):
                expired = await session.get_one(Task, task.id, populate_existing=True)
                assert (expired.result, expired.result_key) == (None, None)
                assert expired.status == TaskStatus.succeeded
            kept = await session.get_one(Task, recent.id, populate_existing=True)
            assert kept.result_key is not None
        assert old_s3.result_key is not None
        assert await object_bytes(storage, old_s3.result_key) is None
        assert await object_bytes(storage, kept.result_key) is not None

    async def test_a_second_sweep_finds_nothing_more(
        self, db: async_sessionmaker[AsyncSession], storage: Storage, project: Project
    ) -> None:
        await make_file(db, storage, project, b"x", expires_at=utc_now() - DAY)
        await sweep(db, storage)

        again = await sweep(db, storage)

        assert again["files_expired"] == 0

    async def test_uploads_expire_only_when_upload_retention_is_set(
        self,
        storages: tuple[Storage, Storage],
        db: async_sessionmaker[AsyncSession],
        project: Project,
    ) -> None:
        default, with_retention = storages
        ready_at = utc_now()
        file = await make_file(db, default, project, b"u", status=FileStatus.pending, sha256=None)
        async with transaction(db) as session:
            resolved = await worker_side.resolve_for_task(
                session, project_id=project.id, file_id=file.id, storage=with_retention
            )

        assert resolved.expires_at is not None
        assert resolved.expires_at - ready_at == pytest.approx(
            timedelta(days=2), abs=timedelta(minutes=1)
        )


@pytest.fixture
def storages(settings: Settings) -> tuple[Storage, Storage]:
    """The default storage, and one whose uploads are kept two days once ready."""
    files = settings.files.model_copy(update={"upload_retention_days": 2.0})
    return Storage.from_settings(settings), Storage(s3=settings.s3, files=files)


@pytest.fixture
def context(db: async_sessionmaker[AsyncSession], redis: Redis, settings: Settings) -> StepContext:
    return StepContext(sessionmaker=db, redis=redis, settings=settings)


class TestSchedulerStep:
    async def test_the_scheduler_sweeps_once_per_interval(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        publisher: Publisher,
        redis: Redis,
        settings: Settings,
    ) -> None:
        steps = [FileRetention(storage), ResultRetention(storage)]
        expired = await make_file(db, storage, project, b"x", expires_at=utc_now() - DAY)

        first = await tick(db, publisher, redis, settings, steps=steps)
        second = await tick(db, publisher, redis, settings, steps=steps)

        assert first["files_expired"] >= 1
        assert "files_expired" not in second  # the next sweep is an interval away
        assert not await _exists(db, expired)

    async def test_a_full_batch_sweeps_again_on_the_next_pass(
        self, context: StepContext, storage: Storage, project: Project
    ) -> None:
        db = context.sessionmaker
        small = Storage(
            s3=storage.s3, files=storage.files.model_copy(update={"retention_batch": 1})
        )
        retention = FileRetention(small)
        for _ in range(2):
            await make_file(db, storage, project, b"x", expires_at=utc_now() - DAY)

        first = await retention(context)
        second = await retention(context)
        third = await retention(context)

        assert (first["files_expired"], second["files_expired"]) == (1, 1)
        assert third.get("files_expired", 0) == 0

    async def test_with_s3_down_nothing_is_deleted_and_the_step_waits_an_interval(
        self, context: StepContext, storage: Storage, project: Project
    ) -> None:
        db = context.sessionmaker
        dead = storage.s3.model_copy(update={"endpoint_url": f"http://127.0.0.1:{free_port()}"})
        retention = FileRetention(Storage(s3=dead, files=storage.files))
        expired = await make_file(db, storage, project, b"x", expires_at=utc_now() - DAY)

        done = await retention(context)

        assert done == {}
        assert await _exists(db, expired)
        assert await object_bytes(storage, expired.key) == b"x"
        assert await retention(context) == {}  # not retried before the interval
