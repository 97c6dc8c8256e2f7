"""Fixtures of the integration tests that need a database of their own."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from app.devstack import StackUrls
from tests.support import plain_dsn


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
