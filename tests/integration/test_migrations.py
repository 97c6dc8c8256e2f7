"""The migration chain on a real PostgreSQL: round trip, no drift, one head."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from app.migrations import alembic_config
from tests.integration.conftest import table_names
from tests.support import run_alembic


class TestMigrations:
    def test_there_is_exactly_one_head(self) -> None:
        heads = ScriptDirectory.from_config(alembic_config()).get_heads()

        assert len(heads) == 1

    async def test_upgrade_downgrade_upgrade_round_trips(self, empty_database: str) -> None:
        run_alembic(empty_database, "upgrade", "head")
        created = await table_names(empty_database)
        run_alembic(empty_database, "downgrade", "base")
        after_downgrade = await table_names(empty_database)
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
        assert await table_names(empty_database) == created

    def test_the_models_and_the_migrations_do_not_drift(self, database_url: str) -> None:
        result = run_alembic(database_url, "check")

        assert "No new upgrade operations detected" in result.stdout + result.stderr
