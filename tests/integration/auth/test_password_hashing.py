"""Sign-in and register while argon2 is busy: no pooled connection waits for a hash, and past a
bounded queue the API sheds the request instead of queueing it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.models import RefreshToken, User
from app.core.config import Settings
from app.core.db import create_sessionmaker, transaction
from app.core.security import PASSWORD_HASHING
from app.events.models import Event
from app.main import create_app
from tests.factories import DEFAULT_PASSWORD, make_user

PASSWORD = "correct horse battery staple"


@asynccontextmanager
async def hashing_occupied() -> AsyncIterator[None]:
    """Every hashing slot taken, as by other requests' hashes, until the block ends."""
    borrowers = [object() for _ in range(int(PASSWORD_HASHING.limiter.total_tokens))]
    for borrower in borrowers:
        await PASSWORD_HASHING.limiter.acquire_on_behalf_of(borrower)
    try:
        yield
    finally:
        for borrower in borrowers:
            PASSWORD_HASHING.limiter.release_on_behalf_of(borrower)


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until `condition()` holds (a request reaching the hasher: a few queries)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


def _sign_in(client: httpx.AsyncClient, email: str, password: str) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(
        client.post("/v1/auth/token", data={"username": email, "password": password})
    )


def _register(client: httpx.AsyncClient, email: str) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(
        client.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    )


@pytest.fixture
async def tiny_pool(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, AsyncEngine]]:
    """The API on a pool of one connection, committing for real (its rows are deleted after)."""
    database = settings.database.model_copy(update={"pool_size": 1, "max_overflow": 0})
    app: FastAPI = create_app(settings.model_copy(update={"database": database}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client, app.state.engine
        async with transaction(app.state.sessionmaker) as session:
            users = select(User.id).where(User.email.like("pool-%@example.com"))
            await session.execute(delete(Event).where(Event.subject_id.in_(users)))
            await session.execute(delete(User).where(User.email.like("pool-%@example.com")))


class TestNoConnectionHeldWhileHashing:
    async def test_a_sign_in_waiting_for_the_hasher_holds_no_connection(
        self, tiny_pool: tuple[httpx.AsyncClient, AsyncEngine], engine: AsyncEngine
    ) -> None:
        client, pool_engine = tiny_pool
        async with transaction(create_sessionmaker(engine)) as session:
            user = await make_user(session, email=f"pool-{uuid.uuid4().hex[:8]}@example.com")

        async with hashing_occupied():
            login = _sign_in(client, user.email, DEFAULT_PASSWORD)
            await until(lambda: PASSWORD_HASHING.waiting == 1)
            held = pool_engine.pool.checkedout()  # type: ignore[attr-defined]

        assert held == 0
        assert (await login).status_code == 200

    async def test_a_registration_waiting_for_the_hasher_holds_no_connection(
        self, tiny_pool: tuple[httpx.AsyncClient, AsyncEngine]
    ) -> None:
        client, pool_engine = tiny_pool

        async with hashing_occupied():
            register = _register(client, f"pool-{uuid.uuid4().hex[:8]}@example.com")
            await until(lambda: PASSWORD_HASHING.waiting == 1)
            held = pool_engine.pool.checkedout()  # type: ignore[attr-defined]

        assert held == 0
        assert (await register).status_code == 201


@pytest.fixture
async def one_waiting(
    settings: Settings, db: async_sessionmaker[AsyncSession]
) -> AsyncIterator[httpx.AsyncClient]:
    """The API with room for one hash waiting behind the running ones."""
    security = settings.security.model_copy(update={"password_hash_max_waiting": 1})
    app = create_app(settings.model_copy(update={"security": security}))
    async with app.router.lifespan_context(app):
        app.state.sessionmaker = db
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client


class TestShedding:
    async def test_past_the_queue_bound_sign_in_and_register_are_a_503_that_changes_nothing(
        self, one_waiting: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        other = await make_user(session)
        newcomer = f"new-{uuid.uuid4().hex[:8]}@example.com"

        async with hashing_occupied():
            queued = _sign_in(one_waiting, user.email, DEFAULT_PASSWORD)
            await until(lambda: PASSWORD_HASHING.waiting == 1)
            shed = [
                _sign_in(one_waiting, other.email, DEFAULT_PASSWORD),
                _register(one_waiting, newcomer),
            ]
            # Answered at once, or (not shed) queued behind the first.
            await until(lambda: all(task.done() for task in shed) or PASSWORD_HASHING.waiting == 3)

        for response in await asyncio.gather(*shed):
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1"
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"].endswith("/password-hashing-busy")
            assert response.json()["request_id"] == response.headers["x-request-id"]
        assert await session.scalar(select(User).where(User.email == newcomer)) is None
        await session.refresh(other)
        assert other.last_login_at is None
        tokens = select(func.count()).select_from(RefreshToken)
        assert await session.scalar(tokens.where(RefreshToken.user_id == other.id)) == 0
        assert (await queued).status_code == 200
