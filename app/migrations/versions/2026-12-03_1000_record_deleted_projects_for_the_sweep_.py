"""record deleted projects for the sweep of their objects

Revision ID: 3e64c2eb86b5
Revises: 7875f8766911
Create Date: 2026-12-03 10:00:52.828430+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3e64c2eb86b5"
down_revision: str | Sequence[str] | None = "7875f8766911"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deleted_projects",
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("objects_deleted", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", name=op.f("pk_deleted_projects")),
    )


def downgrade() -> None:
    op.drop_table("deleted_projects")
