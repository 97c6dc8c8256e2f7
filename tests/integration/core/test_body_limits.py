"""Request bodies are bounded per route before they are read: `api.max_body_bytes` everywhere
but `files:upload`, which takes files up to `files.max_direct_upload_bytes`."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.config import Settings
from app.main import create_app
from app.projects.models import Project
from tests.factories import auth_headers, make_project, make_user

LIMIT = 4096
PROBLEM = "application/problem+json"


@pytest.fixture
async def small(
    settings: Settings, db: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with request bodies capped at 4 KiB (`files:upload` keeps its 10 MiB)."""
    api = settings.api.model_copy(update={"max_body_bytes": LIMIT})
    application: FastAPI = create_app(settings.model_copy(update={"api": api}))
    async with application.router.lifespan_context(application):
        application.state.sessionmaker = db
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://taskgate.test") as c:
            yield c


class Chunks:
    """A request body sent in 1 KiB chunks, counting how many the server asked for."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.pulled += 1
            yield b" " * 1024


def _assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["type"].endswith("/payload-too-large")
    assert body["status"] == 413
    assert str(LIMIT) in body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]


class TestJsonBodies:
    async def test_a_declared_length_over_the_limit_is_refused_before_any_byte_is_read(
        self, small: httpx.AsyncClient
    ) -> None:
        body = Chunks(10_000)  # 10 MB announced

        response = await small.post(
            "/v1/auth/register",
            content=body,
            headers={"Content-Type": "application/json", "Content-Length": str(10_000 * 1024)},
        )

        _assert_too_large(response)
        assert body.pulled == 0

    async def test_a_streamed_body_is_refused_once_it_passes_the_limit(
        self, small: httpx.AsyncClient
    ) -> None:
        body = Chunks(10_000)  # chunked: no length to check first

        response = await small.post(
            "/v1/auth/register", content=body, headers={"Content-Type": "application/json"}
        )

        _assert_too_large(response)
        assert body.pulled <= LIMIT // 1024 + 1

    async def test_an_authenticated_route_refuses_it_the_same_way(
        self, small: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        project = await make_project(session, owner=user)

        response = await small.post(
            f"/v1/projects/{project.id}/tasks",
            json={"type": "echo", "input": {"text": "x" * LIMIT}},
            headers=auth_headers(user),
        )

        _assert_too_large(response)

    async def test_a_body_within_the_limit_is_served(
        self, small: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        response = await small.post(
            "/v1/auth/register",
            json={"email": "within@example.com", "password": "correct horse battery staple"},
        )

        assert response.status_code == 201
        assert await session.scalar(select(User).where(User.email == "within@example.com"))


class TestTokenForm:
    async def test_a_form_over_the_limit_is_a_413(self, small: httpx.AsyncClient) -> None:
        response = await small.post(
            "/v1/auth/token",
            data={"username": "a@example.com", "password": "x", "pad": "x" * LIMIT},
        )

        _assert_too_large(response)

    async def test_a_file_part_is_refused_before_it_is_stored(
        self, small: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)

        response = await small.post(
            "/v1/auth/token",
            data={"username": user.email, "password": "correct horse battery staple"},
            files={"upload": ("big.bin", b"x" * 1000, "application/octet-stream")},
        )

        assert response.status_code == 400
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"].endswith("/bad-request")


class TestDirectUploads:
    async def test_files_upload_keeps_its_own_larger_limit(
        self, small: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        project: Project = await make_project(session, owner=user)

        response = await small.post(
            f"/v1/projects/{project.id}/files:upload",
            files={"file": ("rows.csv", b"a,b\n" * 5000, "text/csv")},
            headers=auth_headers(user),
        )

        assert response.status_code == 201, response.text
        assert response.json()["size"] == 20_000


class TestOpenApi:
    async def test_every_route_that_takes_a_body_documents_the_413(
        self, client: httpx.AsyncClient
    ) -> None:
        document = (await client.get("/openapi.json")).json()

        with_bodies = [
            (path, method, operation)
            for path, operations in document["paths"].items()
            for method, operation in operations.items()
            if "requestBody" in operation
        ]

        assert with_bodies
        for path, method, operation in with_bodies:
            response = operation["responses"].get("413")
            assert response is not None, f"{method} {path} does not document its 413"
            assert PROBLEM in response["content"]
