"""Projects deleted before the sweep of their objects existed get their `deleted_projects` row
from their `project.deleted` events, so the sweep empties their prefixes too."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from tests.support import plain_dsn, run_alembic

BEFORE_BACKFILL = "3e64c2eb86b5"


class TestDeletedProjectsBackfill:
    async def test_each_deleted_project_gets_one_row_from_its_first_event(
        self, empty_database: str
    ) -> None:
        run_alembic(empty_database, "upgrade", BEFORE_BACKFILL)
        gone = uuid.uuid4()
        first, second = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
        conn = await asyncpg.connect(plain_dsn(empty_database))
        try:
            for at, kind in ((first, "project.deleted"), (second, "project.deleted")):
                await conn.execute(
                    "INSERT INTO events (id, project_id, kind, actor_type, subject_id, data, at)"
                    " VALUES ($1, NULL, $2, 'system', $3, '{}', $4)",
                    uuid.uuid4(),
                    kind,
                    gone,
                    at,
                )
            await conn.execute(
                "INSERT INTO events (id, project_id, kind, actor_type, subject_id, data, at)"
                " VALUES ($1, NULL, 'user.deactivated', 'system', $2, '{}', $3)",
                uuid.uuid4(),
                uuid.uuid4(),
                first,
            )
            run_alembic(empty_database, "upgrade", "head")
            rows = await conn.fetch(
                "SELECT project_id, deleted_at, checked_at FROM deleted_projects"
            )
        finally:
            await conn.close()

        assert [tuple(row) for row in rows] == [(gone, first, None)]
