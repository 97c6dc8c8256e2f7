from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.config import Settings, TaskSettings
from app.core.db import transaction, utc_now
from app.events.models import Event
from app.files.models import File, FileStatus
from app.files.storage import Storage, object_key
from app.projects.models import Project
from app.tasks.models import Task, TaskStatus
from app.tasks.runner import execute
from app.tasktypes.registry import get_registry
from tests.factories import make_project, make_user
from tests.integration.tasks.conftest import RUNNING_CAP


@pytest.fixture
def storage(settings: Settings) -> Storage:
    return Storage.from_settings(settings)


@pytest.fixture
async def owner(db: async_sessionmaker[AsyncSession]) -> User:
    async with transaction(db) as session:
        return await make_user(session)


@pytest.fixture
async def project(db: async_sessionmaker[AsyncSession], owner: User) -> Project:
    async with transaction(db) as session:
        return await make_project(session, owner=owner)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain client for presigned URLs, straight to the S3 server."""
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def make_file(
    db: async_sessionmaker[AsyncSession],
    storage: Storage,
    project: Project,
    data: bytes,
    *,
    filename: str = "data.bin",
    content_type: str = "application/octet-stream",
    upload: bool = True,
    **fields: Any,
) -> File:
    """A ready file of `project` with `data` in S3 (as a direct upload would leave it)."""
    file_id = uuid.uuid4()
    key = object_key(project.id, "uploads", str(file_id))
    if upload:
        await asyncio.to_thread(storage.put, key, data, content_type=content_type)
    values: dict[str, Any] = {
        "id": file_id,
        "project_id": project.id,
        "key": key,
        "filename": filename,
        "content_type": content_type,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "status": FileStatus.ready,
        "created_at": utc_now(),
        **fields,
    }
    async with transaction(db) as session:
        file = File(**values)
        session.add(file)
    return file


async def object_bytes(storage: Storage, key: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""

    def read() -> bytes | None:
        if storage.head(key) is None:
            return None
        with storage.open(key) as reader:
            return reader.read()

    return await asyncio.to_thread(read)


async def event_kinds(session: AsyncSession, subject_id: uuid.UUID) -> list[str]:
    rows = await session.scalars(
        select(Event.kind).where(Event.subject_id == subject_id).order_by(Event.at, Event.id)
    )
    return list(rows)


@pytest.fixture
def limits(settings: Settings) -> TaskSettings:
    # No heartbeat while a short handler runs: the test's sessions share one connection, and a
    # handler's file lookups would otherwise interleave with it.
    return settings.tasks.model_copy(update={"lease_s": 60.0, "heartbeat_s": 30.0})


async def run_task(
    db: async_sessionmaker[AsyncSession],
    project: Project,
    storage: Storage,
    limits: TaskSettings,
    type: str,
    input: dict[str, Any],
    *,
    max_attempts: int = 1,
) -> Task:
    """Insert a queued task (as submit would, without its checks) and run one attempt of it."""
    async with transaction(db) as session:
        task = Task(
            project_id=project.id,
            type=type,
            input=input,
            status=TaskStatus.queued,
            max_attempts=max_attempts,
            timeout_s=60,
            created_at=utc_now(),
        )
        session.add(task)
    await execute(
        db,
        task.id,
        registry=get_registry(),
        limits=limits,
        worker="test-worker",
        storage=storage,
        running_cap=RUNNING_CAP,
    )
    async with db() as session:
        return await session.get_one(Task, task.id, populate_existing=True)
