"""Submits that arrive together in one API process share one statement and one commit
(`intake.py`, group commit): each still gets its own task, event and answer; a replay of one
idempotency key inside a group makes one task; a row that cannot be written fails alone."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import transaction, utc_now
from app.events.models import Event
from app.events.service import Recorded
from app.main import create_app
from app.projects.models import Project
from app.tasks import intake, recording
from app.tasks.models import TASK_COLUMNS, Priority, Task, TaskStatus, insert_values
from tests.factories import make_api_key

pytestmark = pytest.mark.usefixtures("live_project")


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The API with its own engine (for `client`): requests commit, and run at once."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def _key(db: async_sessionmaker[AsyncSession], project: Project) -> dict[str, str]:
    async with transaction(db) as session:
        _, secret = await make_api_key(session, project)
    return {"Authorization": f"Bearer {secret}"}


def _groups(app: FastAPI) -> tuple[int, int]:
    """(statements, submits) of this app's submit groups so far."""
    groups = intake.GROUPS.of(app.state.sessionmaker)
    return sum(g.runs for g in groups), sum(g.items for g in groups)


async def _submit_all(
    client: httpx.AsyncClient, project: Project, headers: list[dict[str, str]]
) -> list[httpx.Response]:
    return await asyncio.gather(
        *(
            client.post(
                f"/v1/projects/{project.id}/tasks",
                json={"type": "echo", "input": {"n": 1}},
                headers=each,
            )
            for each in headers
        )
    )


async def test_submits_at_once_share_statements_and_each_gets_its_task_and_event(
    client: httpx.AsyncClient,
    app: FastAPI,
    live_db: async_sessionmaker[AsyncSession],
    live_project: Project,
) -> None:
    auth = await _key(live_db, live_project)

    responses = await _submit_all(
        client, live_project, [{**auth, "X-Request-ID": f"group-{n}"} for n in range(12)]
    )

    assert [r.status_code for r in responses] == [202] * 12, responses[0].text
    statements, submits = _groups(app)
    assert submits >= 12
    assert statements < submits  # some went together
    async with live_db() as session:
        events = (
            await session.execute(
                select(Event.subject_id, Event.request_id).where(
                    Event.project_id == live_project.id, Event.kind == "task.created"
                )
            )
        ).all()
    by_task = {r.json()["id"]: r.headers["X-Request-ID"] for r in responses}
    assert sorted((str(s), q) for s, q in events) == sorted(by_task.items())


async def test_one_idempotency_key_submitted_at_once_makes_one_task(
    client: httpx.AsyncClient,
    live_db: async_sessionmaker[AsyncSession],
    live_project: Project,
) -> None:
    auth = await _key(live_db, live_project)

    responses = await _submit_all(
        client, live_project, [{**auth, "Idempotency-Key": "together"} for _ in range(8)]
    )

    assert sorted(r.status_code for r in responses) == [200] * 7 + [202]  # one new, 7 replays
    assert len({r.json()["id"] for r in responses}) == 1
    async with live_db() as session:
        tasks = (
            await session.scalars(select(Task.id).where(Task.project_id == live_project.id))
        ).all()
        events = (
            await session.scalars(
                select(Event.id).where(
                    Event.kind == "task.created", Event.project_id == live_project.id
                )
            )
        ).all()
    assert (len(tasks), len(events)) == (1, 1)


def _new_task(project: Project) -> tuple[dict[str, Any], Recorded]:
    """What submit hands `intake.insert_task` for an `echo` task of `project`."""
    task = Task(
        id=uuid.uuid4(),
        project_id=project.id,
        type="echo",
        status=TaskStatus.queued,
        priority=Priority.default,
        input={"n": 1},
        attempt=0,
        max_attempts=3,
        timeout_s=30,
        request_hash="0" * 64,
        created_at=utc_now(),
    )
    for column in TASK_COLUMNS:
        if column not in task.__dict__:
            setattr(task, column, None)
    return insert_values(task), recording.recorded(task, "task.created")


async def test_a_row_that_breaks_a_constraint_fails_alone_in_its_group(
    live_db: async_sessionmaker[AsyncSession],
    live_project: Project,
    other_live_project: Project,
) -> None:
    async with transaction(live_db) as session:
        await session.execute(delete(Project).where(Project.id == other_live_project.id))
    submits = [_new_task(live_project) for _ in range(3)] + [_new_task(other_live_project)]

    outcomes = await asyncio.gather(
        *(intake.insert_task(live_db, values, created) for values, created in submits),
        return_exceptions=True,
    )

    assert outcomes[:3] == [True, True, True]
    assert isinstance(outcomes[3], asyncpg.ForeignKeyViolationError)
    async with live_db() as session:
        count = await session.scalar(
            select(func.count()).select_from(Task).where(Task.project_id == live_project.id)
        )
    assert count == 3
