"""Every operation of the served OpenAPI document against every kind of caller: the status, the
problem type of a refusal, that a refused write changed nothing, and that a caller with no
access to the project learns nothing: its 404 is the one of ids that exist nowhere.

The rows are in `access_matrix.py`, keyed by operation id; a route added without a row, or a row
left for a route that is gone, fails `test_every_operation_has_a_row_and_every_row_an_operation`.
One world serves the whole module (one transaction, rolled back at its end); operations that
consume an object get a fresh one per case, and deleting the project gets a world of its own.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.config import Settings
from app.core.db import transaction
from app.core.errors import PROBLEM_JSON
from app.files.storage import Storage
from app.main import create_app
from tests.integration.access_matrix import (
    CALLERS,
    ROWS,
    UNAUTHENTICATED,
    Access,
    Fresh,
    Row,
    World,
    build_world,
)
from tests.integration.auth.conftest import problem_identity

METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}
# Route path -> the page it serves to anyone: FastAPI's pages of the document, and the console's
# static files (decision 0019; `/console` itself redirects to its directory).
UNDOCUMENTED = {
    "/openapi.json": "/openapi.json",
    "/docs": "/docs",
    "/docs/oauth2-redirect": "/docs/oauth2-redirect",
    "/redoc": "/redoc",
    "/console": "/console/",
}


@pytest.fixture(scope="module")
async def matrix_db(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """The `db` fixture for the whole module: one connection, rolled back at the end."""
    async with engine.connect() as conn:
        outer = await conn.begin()
        yield async_sessionmaker(
            bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        await outer.rollback()


@pytest.fixture(scope="module")
async def matrix_app(
    settings: Settings, matrix_db: async_sessionmaker[AsyncSession]
) -> AsyncIterator[FastAPI]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.sessionmaker = matrix_db
        yield app


@pytest.fixture(scope="module")
async def matrix_client(matrix_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=matrix_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://taskgate.test") as client:
        yield client


@pytest.fixture(scope="module")
async def world(settings: Settings, matrix_db: async_sessionmaker[AsyncSession]) -> World:
    async with transaction(matrix_db) as session:
        return await build_world(session, Storage.from_settings(settings))


async def test_every_operation_has_a_row_and_every_row_an_operation(
    matrix_client: httpx.AsyncClient,
) -> None:
    document = (await matrix_client.get("/openapi.json")).json()
    served = {
        operation["operationId"]: (method.upper(), path, bool(operation.get("security")))
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if method in METHODS
    }

    assert sorted(set(served) - set(ROWS)) == [], "operations without a row in access_matrix.py"
    assert sorted(set(ROWS) - set(served)) == [], "rows for operations that are gone"
    for operation_id, (method, path, secured) in served.items():
        row = ROWS[operation_id]
        assert (row.method, row.path) == (method, path), operation_id
        assert secured == (row.least is not Access.public), operation_id


async def test_every_route_outside_the_document_is_a_public_page_of_it(
    matrix_app: FastAPI, matrix_client: httpx.AsyncClient
) -> None:
    outside = {
        route.path
        for route in iter_route_contexts(matrix_app.routes)
        if not (isinstance(route.original_route, APIRoute) and route.include_in_schema)
    }

    assert outside <= UNDOCUMENTED.keys(), "routes that neither the document nor the matrix know"
    for page in sorted(UNDOCUMENTED.values()):
        assert (await matrix_client.get(page)).status_code == 200, page


async def _state(
    db: async_sessionmaker[AsyncSession], row: Row, world: World, fresh: Fresh
) -> object:
    if row.state is None:
        return None
    async with db() as session:
        return await row.state(session, world, fresh)


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("operation", list(ROWS))
async def test_access(
    matrix_client: httpx.AsyncClient,
    matrix_db: async_sessionmaker[AsyncSession],
    world: World,
    operation: str,
    caller: str,
) -> None:
    row = ROWS[operation]
    here, fresh = world, {}
    if row.own_world or row.fresh is not None:
        async with transaction(matrix_db) as session:
            here = await build_world(session, world.storage) if row.own_world else world
            fresh = await row.fresh(session, here) if row.fresh is not None else {}
    call = row.call(here, fresh)
    before = await _state(matrix_db, row, here, fresh)

    response = await matrix_client.request(
        row.method, row.path.format(**call.params), headers=here.headers[caller], **call.options
    )

    status, problem = row.expected(caller)
    assert response.status_code == status, f"{row.method} {row.path} as {caller}: {response.text}"
    if problem is not None:
        assert response.headers["content-type"].startswith(PROBLEM_JSON)
        assert response.json()["type"].endswith(f"/{problem}"), response.text
        assert await _state(matrix_db, row, here, fresh) == before, "a refused call wrote"
    assert "x-request-id" in response.headers
    if row.least is not Access.public and caller not in UNAUTHENTICATED:
        # API.md: the RateLimit-* headers are on every authenticated response, refusals too.
        assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"} <= set(
            response.headers
        ), response.headers
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if status == 404:  # exactly what the same call about ids that exist nowhere gets
        nowhere = {name: uuid.uuid4() for name in call.params}
        missing = await matrix_client.request(
            row.method, row.path.format(**nowhere), headers=here.headers[caller], **call.options
        )
        assert problem_identity(response) == problem_identity(missing)
        assert response.headers.get("ratelimit-limit") == missing.headers.get("ratelimit-limit")
