"""Fixtures of the integration tests that need a database of their own."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import delete
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.db import create_sessionmaker, transaction
from app.devstack import StackUrls
from app.projects.models import Project
from tests.factories import make_project, make_user
from tests.support import plain_dsn


@pytest.fixture
def live_db(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that really commit, for tests whose API, worker or second coroutine runs on a
    pool of its own (the rolled-back `db` shares one connection, which two must never use at
    once)."""
    return create_sessionmaker(engine)


@pytest.fixture
async def owner_and_project(
    live_db: async_sessionmaker[AsyncSession],
) -> AsyncIterator[tuple[User, Project]]:
    """A committed user and their project, deleted afterwards."""
    async with transaction(live_db) as session:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
    yield owner, project
    async with transaction(live_db) as session:
        await session.execute(delete(Project).where(Project.id == project.id))
        await session.execute(delete(User).where(User.id == owner.id))


@pytest.fixture
async def empty_database(stack: StackUrls) -> AsyncIterator[str]:
    """A new, empty database on the suite's PostgreSQL (dropped afterwards): its URL."""
    name = f"taskgate_migrations_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(plain_dsn(stack.database_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(stack.database_url).set(database=name).render_as_string(hide_password=False)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def table_names(database_url: str) -> set[str]:
    """The tables of `database_url`'s public schema, Alembic's own left out."""
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename <> 'alembic_version'"
        )
    finally:
        await conn.close()
    return {row["tablename"] for row in rows}
