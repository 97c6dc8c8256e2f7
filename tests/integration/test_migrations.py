"""The migration chain on a real PostgreSQL: round trip, no drift, one head."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from app.devstack import StackUrls
from app.migrations import alembic_config
from tests.support import plain_dsn, run_alembic


@pytest.fixture
async def empty_database(stack: StackUrls) -> AsyncIterator[str]:
    name = f"taskgate_migrations_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(plain_dsn(stack.database_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(stack.database_url).set(database=name).render_as_string(hide_password=False)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def _tables(database_url: str) -> set[str]:
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        rows = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
    finally:
        await conn.close()
    return {row["tablename"] for row in rows}


class TestMigrations:
    def test_there_is_exactly_one_head(self) -> None:
        heads = ScriptDirectory.from_config(alembic_config()).get_heads()

        assert len(heads) == 1

    async def test_upgrade_downgrade_upgrade_round_trips(self, empty_database: str) -> None:
        run_alembic(empty_database, "upgrade", "head")
        created = await _tables(empty_database)
        run_alembic(empty_database, "downgrade", "base")
        after_downgrade = await _tables(empty_database)
        run_alembic(empty_database, "upgrade", "head")

        assert created >= {
            "users",
            "projects",
            "project_members",
            "api_keys",
            "tasks",
            "events",
            "webhook_endpoints",
            "webhook_deliveries",
            "files",
        }
        assert after_downgrade == set()
        assert await _tables(empty_database) == created

    def test_the_models_and_the_migrations_do_not_drift(self, database_url: str) -> None:
        result = run_alembic(database_url, "check")

        assert "No new upgrade operations detected" in result.stdout + result.stderr
