from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.config import ProjectDefaults, Settings, TaskSettings
from app.core.db import transaction, utc_now
from app.events.models import Event
from app.projects.models import Project
from app.tasks.models import Task, TaskStatus
from tests.factories import make_project, make_user

# The deployment's default `max_running_tasks`, as a worker passes it to every lease.
RUNNING_CAP = ProjectDefaults().max_running_tasks


@pytest.fixture
def limits(settings: Settings) -> TaskSettings:
    """Short leases and no backoff, so lifecycle tests run in a fraction of a second."""
    return settings.tasks.model_copy(
        update={"lease_s": 2.0, "heartbeat_s": 0.2, "retry_base_s": 0.0, "retry_cap_s": 0.0}
    )


@pytest.fixture
async def project(db: async_sessionmaker[AsyncSession]) -> Project:
    async with transaction(db) as session:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
    return project


async def _committed_project(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[Project]:
    async with transaction(db) as session:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
    yield project
    async with transaction(db) as session:
        await session.execute(delete(Project).where(Project.id == project.id))
        await session.execute(delete(User).where(User.id == owner.id))


@pytest.fixture
async def live_project(live_db: async_sessionmaker[AsyncSession]) -> AsyncIterator[Project]:
    """A committed project, deleted with its tasks and events afterwards."""
    async for project in _committed_project(live_db):
        yield project


@pytest.fixture
async def other_live_project(
    live_db: async_sessionmaker[AsyncSession],
) -> AsyncIterator[Project]:
    """A second committed project (another tenant), cleaned up the same way."""
    async for project in _committed_project(live_db):
        yield project


async def make_task(db: async_sessionmaker[AsyncSession], project: Project, **fields: Any) -> Task:
    """A queued task row, as submit would write it (without the HTTP layer)."""
    values: dict[str, Any] = {
        "project_id": project.id,
        "type": "echo",
        "input": {},
        "status": TaskStatus.queued,
        "max_attempts": 3,
        "timeout_s": 30,
        "created_at": utc_now(),
        **fields,
    }
    async with transaction(db) as session:
        task = Task(**values)
        session.add(task)
    return task


async def reload(db: async_sessionmaker[AsyncSession], task_id: uuid.UUID) -> Task:
    async with db() as session:
        return await session.get_one(Task, task_id)


async def event_kinds(db: async_sessionmaker[AsyncSession], task_id: uuid.UUID) -> list[str]:
    async with db() as session:
        rows = await session.scalars(
            select(Event.kind).where(Event.subject_id == task_id).order_by(Event.at, Event.id)
        )
        return list(rows)
