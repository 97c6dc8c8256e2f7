"""The append-only audit log."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utc_now


class ActorType(enum.StrEnum):
    user = "user"
    api_key = "api_key"
    system = "system"


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index(None, "project_id", "at", "id"),
        Index(None, "project_id", "kind", "at"),
        Index(None, "subject_id", "at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    # NULL for events outside any project (a user registering).
    project_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(64))
    actor_type: Mapped[ActorType]
    actor_id: Mapped[uuid.UUID | None]
    subject_id: Mapped[uuid.UUID | None]
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    request_id: Mapped[str | None] = mapped_column(String(128))
    at: Mapped[datetime] = mapped_column(default=utc_now)
