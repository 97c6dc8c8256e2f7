"""index task results to expire

Revision ID: 6c1f0e2a9b7d
Revises: 05bce470af57
Create Date: 2026-11-23 16:40:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6c1f0e2a9b7d"
down_revision: str | Sequence[str] | None = "05bce470af57"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_tasks_results_to_expire",
        "tasks",
        ["finished_at"],
        unique=False,
        postgresql_where=sa.text(
            "status = 'succeeded' AND (result IS NOT NULL OR result_key IS NOT NULL)"
        ),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_tasks_results_to_expire",
        table_name="tasks",
        postgresql_where=sa.text(
            "status = 'succeeded' AND (result IS NOT NULL OR result_key IS NOT NULL)"
        ),
    )
