"""S3 unreachable: file routes answer 503 with `Retry-After` and change nothing; attempts that
need S3 end as retryable `storage_unavailable` and are tried again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.config import Settings, TaskSettings
from app.files.models import File, FileStatus
from app.files.storage import Storage
from app.main import create_app
from app.projects.models import Project
from app.tasks.models import TaskStatus
from tests.factories import auth_headers
from tests.integration.files.conftest import event_kinds, make_file, run_task
from tests.support import free_port

PROBLEM = "application/problem+json"


@pytest.fixture
def dead_settings(settings: Settings) -> Settings:
    """The suite's settings with S3 at a port nothing listens on."""
    dead = settings.s3.model_copy(
        update={"endpoint_url": f"http://127.0.0.1:{free_port()}", "timeout_s": 1.0}
    )
    return settings.model_copy(update={"s3": dead})


@pytest.fixture
async def dead_client(
    dead_settings: Settings, db: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    application: FastAPI = create_app(dead_settings)
    async with application.router.lifespan_context(application):
        application.state.sessionmaker = db
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://taskgate.test") as c:
            yield c


def _unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["type"].endswith("/storage-unavailable")


async def _file_count(session: AsyncSession, project: Project) -> int:
    return (
        await session.scalar(
            select(func.count()).select_from(File).where(File.project_id == project.id)
        )
        or 0
    )


class TestRoutes:
    async def test_a_direct_upload_is_a_503_and_records_no_file(
        self,
        dead_client: httpx.AsyncClient,
        session: AsyncSession,
        project: Project,
        owner: User,
    ) -> None:
        response = await dead_client.post(
            f"/v1/projects/{project.id}/files:upload",
            files={"file": ("data.csv", b"a,b\n1,2\n", "text/csv")},
            headers=auth_headers(owner),
        )

        _unavailable(response)
        assert await _file_count(session, project) == 0

    async def test_completing_an_upload_is_a_503_and_the_file_stays_pending(
        self,
        dead_client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        session: AsyncSession,
        project: Project,
        owner: User,
    ) -> None:
        pending = await make_file(
            db, storage, project, b"abc", upload=False, status=FileStatus.pending, sha256=None
        )

        response = await dead_client.post(
            f"/v1/files/{pending.id}/complete", headers=auth_headers(owner)
        )

        _unavailable(response)
        file = await session.get_one(File, pending.id, populate_existing=True)
        assert file.status == FileStatus.pending
        assert "file.ready" not in await event_kinds(session, pending.id)


class TestAttempts:
    async def test_reading_an_input_file_ends_the_attempt_retryable(
        self,
        db: async_sessionmaker[AsyncSession],
        storage: Storage,
        dead_settings: Settings,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        file = await make_file(db, storage, project, b"a,b\n1,2\n", content_type="text/csv")

        task = await run_task(
            db,
            project,
            Storage.from_settings(dead_settings),
            limits,
            "file.checksum",
            {"file_id": str(file.id)},
            max_attempts=3,
        )

        assert task.status == TaskStatus.retrying
        assert task.error is not None
        assert task.error["type"] == "storage_unavailable"
        assert task.attempt == 1

    async def test_a_result_too_large_to_keep_inline_ends_the_attempt_retryable(
        self,
        db: async_sessionmaker[AsyncSession],
        dead_settings: Settings,
        project: Project,
        limits: TaskSettings,
    ) -> None:
        small_inline = limits.model_copy(update={"inline_result_bytes": 16})

        task = await run_task(
            db,
            project,
            Storage.from_settings(dead_settings),
            small_inline,
            "echo",
            {"message": "x" * 200},
            max_attempts=3,
        )

        assert task.status == TaskStatus.retrying
        assert task.error is not None
        assert task.error["type"] == "storage_unavailable"
        assert task.result_key is None
