"""Webhook endpoints, the outbox of their deliveries, and the log of every attempt."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TimestampMixin


class DeliveryState(enum.StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


class WebhookEndpoint(TimestampMixin, Base):
    __tablename__ = "webhook_endpoints"
    __table_args__ = (Index(None, "project_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(500))
    event_kinds: Mapped[list[str]] = mapped_column(ARRAY(String(64)), default=list)
    # Needed in clear to sign deliveries; never returned except on create and rotate.
    secret: Mapped[str] = mapped_column(String(128))
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_secret_expires_at: Mapped[datetime | None]
    enabled: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))
    failing_since: Mapped[datetime | None]
    # Who made it: when they leave the project (or are deactivated) it is disabled. NULL for
    # endpoints made before this was recorded; those stay as they are.
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )


class WebhookDelivery(TimestampMixin, Base):
    """One event for one endpoint: written in the event's transaction (the outbox), then sent
    until it succeeds or its retries run out. Its id is the `webhook-id` of every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index(None, "endpoint_id", "created_at"),
        # The scheduler's per-endpoint probe for due deliveries.
        Index(
            "ix_webhook_deliveries_pending_endpoint",
            "endpoint_id",
            "next_attempt_at",
            postgresql_where=text("state = 'pending'"),
        ),
        # Per-endpoint concurrency: claims (cleared after each attempt, so this stays small).
        Index(
            "ix_webhook_deliveries_claimed",
            "endpoint_id",
            "claimed_until",
            postgresql_where=text("claimed_until IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    endpoint_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(64))
    # The body `{type, timestamp, data}`, frozen when the event happened: retries send the same.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    state: Mapped[DeliveryState] = mapped_column(default=DeliveryState.pending)
    attempt: Mapped[int] = mapped_column(default=0)
    # The attempt count when the current retry schedule began (0, or where a redeliver was asked).
    schedule_start_attempt: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    response_status: Mapped[int | None]
    response_excerpt: Mapped[str | None] = mapped_column(String(1024))
    # Why the last attempt got no usable answer (timeout, refused target, …), or why it stopped.
    last_error: Mapped[str | None] = mapped_column(String(300))
    latency_ms: Mapped[int | None]
    next_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    # When a `webhooks.deliver` job was last published for it (NULL: the scheduler publishes it).
    dispatched_at: Mapped[datetime | None]
    # While set and in the future, a worker is attempting it; past, that worker died.
    claimed_until: Mapped[datetime | None]
    request_id: Mapped[str | None] = mapped_column(String(128))


class WebhookAttempt(Base):
    """The log of one attempt of a delivery: what the receiver answered, or what went wrong."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (Index(None, "delivery_id", "attempt"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    attempt: Mapped[int]
    started_at: Mapped[datetime]
    latency_ms: Mapped[int]
    response_status: Mapped[int | None]
    response_excerpt: Mapped[str | None] = mapped_column(String(1024))
    # Why no usable answer came: `timeout`, `connection`, `refused_target: …`, … (NULL: one came).
    error: Mapped[str | None] = mapped_column(String(300))
    next_attempt_at: Mapped[datetime | None]
