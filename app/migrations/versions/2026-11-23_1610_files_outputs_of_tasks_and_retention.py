"""files: which task wrote a file, and an index for the retention sweep

Outputs of tasks are files with `task_id` set; every file with `expires_at` (outputs, abandoned
presigned uploads, uploads when upload retention is configured) is deleted by the scheduler's
retention step once that time has passed.

Revision ID: 05bce470af57
Revises: 2752042de5e3
Create Date: 2026-11-23 16:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "05bce470af57"
down_revision: str | Sequence[str] | None = "2752042de5e3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("files", sa.Column("task_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_files_task_id_tasks"), "files", "tasks", ["task_id"], ["id"], ondelete="SET NULL"
    )
    op.create_index(
        "ix_files_expires_at",
        "files",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_files_expires_at",
        table_name="files",
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )
    op.drop_constraint(op.f("fk_files_task_id_tasks"), "files", type_="foreignkey")
    op.drop_column("files", "task_id")
