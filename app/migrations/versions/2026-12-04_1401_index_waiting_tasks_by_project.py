"""index waiting tasks by project

Queued tasks that no message carries, per project and by when they became due: the next one is
handed the slot a finishing attempt frees (`max_running_tasks`, decision 0018).

Built in the run's transaction (its advisory lock and lock timeout hold), which blocks writes to
`tasks` while it scans the table. On a large table, build it first without blocking, with the
same definition: `CREATE INDEX CONCURRENTLY ix_tasks_waiting ON tasks (project_id,
coalesce(run_at, created_at)) WHERE status = 'queued' AND dispatched_at IS NULL`; this revision
then finds it and builds nothing (docs/operations.md, Migrations).

Revision ID: 9a4d2c7e1b60
Revises: 5b81e3f0c2d4
Create Date: 2026-12-04 14:01:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9a4d2c7e1b60"
down_revision: str | Sequence[str] | None = "5b81e3f0c2d4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_tasks_waiting",
        "tasks",
        ["project_id", sa.text("coalesce(run_at, created_at)")],
        unique=False,
        postgresql_where=sa.text("status = 'queued' AND dispatched_at IS NULL"),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index(
        "ix_tasks_waiting",
        table_name="tasks",
        postgresql_where=sa.text("status = 'queued' AND dispatched_at IS NULL"),
    )
