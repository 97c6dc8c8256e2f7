"""record who created each webhook endpoint

Endpoints are disabled when their creator leaves the project or is deactivated. Existing rows get
NULL (their creator was never recorded): they are not disabled automatically.

Revision ID: 7875f8766911
Revises: 6c1f0e2a9b7d
Create Date: 2026-12-03 08:49:42.612749+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7875f8766911"
down_revision: str | Sequence[str] | None = "6c1f0e2a9b7d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_endpoints", sa.Column("created_by", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_webhook_endpoints_created_by_users"),
        "webhook_endpoints",
        "users",
        ["created_by"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_webhook_endpoints_created_by_users"), "webhook_endpoints", type_="foreignkey"
    )
    op.drop_column("webhook_endpoints", "created_by")
