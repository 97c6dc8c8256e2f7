"""Deleting a project empties its prefix in S3: the sweep step deletes every object under
`projects/<id>/` (uploads, staging copies, outputs, large results), leaves other projects alone,
and, run again, does nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.config import Settings, TaskSettings
from app.core.db import transaction, utc_now
from app.events.models import Event
from app.files.project_sweep import ProjectObjectSweep
from app.files.storage import Storage, object_key, project_prefix
from app.projects import access as project_access
from app.projects import service as project_service
from app.projects.models import DeletedProject, Project, Role
from app.worker.enqueue import Publisher
from app.worker.scheduler import steps, tick
from tests.factories import make_project
from tests.integration.files.conftest import make_file, object_bytes, run_task

GRACE = timedelta(hours=1)


async def _keys(storage: Storage, project_id: uuid.UUID) -> list[str]:
    keys, _ = await asyncio.to_thread(storage.list_keys, project_prefix(project_id), limit=1000)
    return keys


async def _delete(db: async_sessionmaker[AsyncSession], project: Project) -> None:
    access = project_access.ProjectAccess(project_id=project.id, role=Role.owner, principal=None)
    async with transaction(db) as session:
        await project_service.delete_project(session, access=access)


async def _swept_events(db: async_sessionmaker[AsyncSession], project_id: uuid.UUID) -> list[int]:
    async with db() as session:
        rows = await session.scalars(
            select(Event.data)
            .where(Event.subject_id == project_id, Event.kind == "project.objects_deleted")
            .order_by(Event.at)
        )
        return [data["objects"] for data in rows]


async def _fill(
    db: async_sessionmaker[AsyncSession],
    storage: Storage,
    limits: TaskSettings,
    project: Project,
) -> list[str]:
    """Two uploads, a staging object, and a task result too large for the row."""
    await make_file(db, storage, project, b"first")
    await make_file(db, storage, project, b"second")
    staging = object_key(project.id, "staging", str(uuid.uuid4()))
    await asyncio.to_thread(storage.put, staging, b"staged", content_type="a/b")
    task = await run_task(db, project, storage, limits, "echo", {"text": "x" * (80 * 1024)})
    assert task.result_key is not None  # stored in S3, not in the row
    keys = await _keys(storage, project.id)
    assert len(keys) == 4
    return keys


class TestProjectObjectSweep:
    async def test_deleting_a_project_empties_its_prefix_and_only_its_own(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        limits: TaskSettings,
        project: Project,
        owner: User,
    ) -> None:
        async with transaction(db) as session:
            other = await make_project(session, owner=owner)
        await _fill(db, storage, limits, project)
        kept = await make_file(db, storage, other, b"stays")
        await _delete(db, project)
        sweep = ProjectObjectSweep(storage, grace_s=GRACE.total_seconds())

        done = await sweep.sweep(db)

        assert done == {"project_objects_deleted": 4, "project_prefixes_emptied": 1}
        assert await _keys(storage, project.id) == []
        assert await object_bytes(storage, kept.key) == b"stays"
        assert await _swept_events(db, project.id) == [4]

    async def test_running_the_step_again_does_nothing(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        limits: TaskSettings,
        project: Project,
    ) -> None:
        await _fill(db, storage, limits, project)
        await _delete(db, project)
        sweep = ProjectObjectSweep(storage, grace_s=GRACE.total_seconds())
        await sweep.sweep(db)

        again = await sweep.sweep(db)

        assert again == {"project_objects_deleted": 0, "project_prefixes_emptied": 0}
        assert await _swept_events(db, project.id) == [4]

    async def test_an_output_written_after_the_sweep_goes_on_a_later_pass_then_the_row_goes(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
    ) -> None:
        await make_file(db, storage, project, b"upload")
        await _delete(db, project)
        sweep = ProjectObjectSweep(storage, grace_s=GRACE.total_seconds())
        await sweep.sweep(db)
        # An attempt that was running when the project went writes its output afterwards.
        late = object_key(project.id, "outputs", str(uuid.uuid4()))
        await asyncio.to_thread(storage.put, late, b"late", content_type="a/b")

        later = await sweep.sweep(db, now=utc_now() + GRACE + timedelta(seconds=1))
        last = await sweep.sweep(db, now=utc_now() + GRACE + timedelta(seconds=2))

        assert later == {"project_objects_deleted": 1, "project_prefixes_emptied": 1}
        assert await _keys(storage, project.id) == []
        assert await _swept_events(db, project.id) == [1, 1]
        assert last == {"project_objects_deleted": 0, "project_prefixes_emptied": 0}
        async with db() as session:
            assert await session.get(DeletedProject, project.id) is None

    async def test_a_large_prefix_is_emptied_batch_by_batch(
        self,
        db: async_sessionmaker[AsyncSession],
        settings: Settings,
        limits: TaskSettings,
        project: Project,
    ) -> None:
        small = Storage(
            s3=settings.s3, files=settings.files.model_copy(update={"retention_batch": 3})
        )
        await _fill(db, small, limits, project)
        await _delete(db, project)
        sweep = ProjectObjectSweep(small, grace_s=GRACE.total_seconds())

        first = await sweep.sweep(db)
        events_after_first = await _swept_events(db, project.id)
        second = await sweep.sweep(db)

        assert first == {"project_objects_deleted": 3, "project_prefixes_emptied": 0}
        assert events_after_first == []  # the prefix was not empty yet
        assert second == {"project_objects_deleted": 1, "project_prefixes_emptied": 1}
        assert await _swept_events(db, project.id) == [4]
        assert await _keys(storage=small, project_id=project.id) == []

    async def test_the_scheduler_runs_the_sweep(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        project: Project,
        publisher: Publisher,
        redis: Redis,
        settings: Settings,
    ) -> None:
        upload = await make_file(db, storage, project, b"upload")
        await _delete(db, project)

        done = await tick(db, publisher, redis, settings, steps=steps(settings))

        assert done["project_objects_deleted"] >= 1
        assert await object_bytes(storage, upload.key) is None


class _CrashAfterDeleting(Storage):
    """S3 as it is, but the process dies once a batch's objects are deleted, before the pass
    commits (its transaction rolls back, as a crash's would)."""

    def delete_many(self, keys: Iterable[str]) -> None:
        super().delete_many(keys)
        raise SystemExit("crashed after deleting")


class TestInterruptedSweep:
    async def test_a_pass_that_dies_after_deleting_is_taken_up_by_the_next(
        self,
        db: async_sessionmaker[AsyncSession],
        settings: Settings,
        limits: TaskSettings,
        project: Project,
    ) -> None:
        files = settings.files.model_copy(update={"retention_batch": 3})
        storage = Storage(s3=settings.s3, files=files)
        await _fill(db, storage, limits, project)
        await _delete(db, project)
        now = utc_now() + 2 * GRACE  # past the grace: an emptied prefix's row may go

        with pytest.raises(SystemExit):
            await ProjectObjectSweep(
                _CrashAfterDeleting(s3=settings.s3, files=files), grace_s=GRACE.total_seconds()
            ).sweep(db, now=now)
        async with db() as session:
            left_behind = await session.get(DeletedProject, project.id)
        assert left_behind is not None  # the crashed pass committed nothing
        assert len(await _keys(storage, project.id)) == 1

        resumed = await ProjectObjectSweep(storage, grace_s=GRACE.total_seconds()).sweep(
            db, now=now
        )

        assert resumed == {"project_objects_deleted": 1, "project_prefixes_emptied": 1}
        assert await _keys(storage, project.id) == []
        # The event counts what committed passes deleted: the crashed pass's three are not in it.
        assert await _swept_events(db, project.id) == [1]
        async with db() as session:
            assert await session.get(DeletedProject, project.id, populate_existing=True) is None
