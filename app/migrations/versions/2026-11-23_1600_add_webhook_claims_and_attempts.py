"""add webhook delivery claims and the attempt log

Deliveries get their last error, a dispatch marker, a claim lease (so a killed worker's delivery
is attempted again) and the attempt count their retry schedule starts from (a redeliver restarts
it); per-endpoint indexes serve the scheduler's probe (replacing the global due index) and the
concurrency count; every attempt is logged in `webhook_attempts`.

Revision ID: 2752042de5e3
Revises: c1be722307b4
Create Date: 2026-11-23 16:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "2752042de5e3"
down_revision: str | Sequence[str] | None = "c1be722307b4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "webhook_deliveries",
        sa.Column(
            "schedule_start_attempt", sa.Integer(), server_default=sa.text("0"), nullable=False
        ),
    )
    op.add_column(
        "webhook_deliveries", sa.Column("last_error", sa.String(length=300), nullable=True)
    )
    op.add_column(
        "webhook_deliveries", sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "webhook_deliveries", sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True)
    )
    # Replaced by the per-endpoint index: a global one made the planner scan every due delivery
    # of a stuck endpoint once per endpoint.
    op.drop_index(
        "ix_webhook_deliveries_due",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_pending_endpoint",
        "webhook_deliveries",
        ["endpoint_id", "next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_claimed",
        "webhook_deliveries",
        ["endpoint_id", "claimed_until"],
        unique=False,
        postgresql_where=sa.text("claimed_until IS NOT NULL"),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("delivery_id", sa.Uuid(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_excerpt", sa.String(length=1024), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name=op.f("fk_webhook_attempts_delivery_id_webhook_deliveries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
    )
    op.create_index(
        op.f("ix_webhook_attempts_delivery_id_attempt"),
        "webhook_attempts",
        ["delivery_id", "attempt"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_webhook_attempts_delivery_id_attempt"), table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index(
        "ix_webhook_deliveries_claimed",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("claimed_until IS NOT NULL"),
    )
    op.drop_index(
        "ix_webhook_deliveries_pending_endpoint",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_column("webhook_deliveries", "claimed_until")
    op.drop_column("webhook_deliveries", "dispatched_at")
    op.drop_column("webhook_deliveries", "last_error")
    op.drop_column("webhook_deliveries", "schedule_start_attempt")
