"""Bodies of the audit log routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from app.events.models import ActorType, Event


class ActorRead(BaseModel):
    type: ActorType
    id: uuid.UUID | None  # a user or API key id; null for the system


class EventRead(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID | None
    kind: str
    actor: ActorRead
    subject_id: uuid.UUID | None
    data: dict[str, Any]
    request_id: str | None
    at: datetime

    @classmethod
    def of(cls, event: Event) -> EventRead:
        return cls(
            id=event.id,
            project_id=event.project_id,
            kind=event.kind,
            actor=ActorRead(type=event.actor_type, id=event.actor_id),
            subject_id=event.subject_id,
            data=event.data,
            request_id=event.request_id,
            at=event.at,
        )
