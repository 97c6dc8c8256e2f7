"""The audit log: every mutation records an event in the transaction that makes it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.context import request_id_var
from app.core.db import utc_now
from app.core.pagination import decode_keyset, keyset, page_of
from app.events.models import ActorType, Event
from app.events.repository import EventRepository
from app.webhooks import outbox as webhook_outbox

if TYPE_CHECKING:
    from app.auth.principal import Principal

# Values under these keys never reach the log, however deep they are nested.
SECRET_KEYS = frozenset(
    {
        "password",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "api_key",
        "authorization",
        "key_secret",
    }
)
REDACTED = "[redacted]"


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: REDACTED if str(key).lower() in SECRET_KEYS else _redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(item) for item in value]
    return value


def record(
    session: AsyncSession,
    kind: str,
    *,
    project_id: uuid.UUID | None,
    subject_id: uuid.UUID | None,
    actor: Principal | None,
    data: dict[str, Any] | None = None,
) -> Event:
    """Add an audit event to `session` (saved with the caller's transaction); `actor=None` is the
    system. The request id comes from the context; values under secret-looking keys are redacted."""
    event = Event(
        id=uuid.uuid4(),
        project_id=project_id,
        kind=kind,
        actor_type=actor.actor_type if actor is not None else ActorType.system,
        actor_id=actor.actor_id if actor is not None else None,
        subject_id=subject_id,
        data=_redact(data or {}),
        request_id=request_id_var.get(),
        at=utc_now(),
    )
    session.add(event)
    webhook_outbox.track(session, event)  # its webhook deliveries join this transaction
    return event


async def list_events(
    session: AsyncSession,
    *,
    project_id: uuid.UUID,
    kind: str | None = None,
    subject_id: uuid.UUID | None = None,
    since: datetime | None = None,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[Event], str | None]:
    """A page of the project's events, newest first (callers check the role)."""
    rows = await EventRepository(session).list_for_project(
        project_id,
        kind=kind,
        subject_id=subject_id,
        since=since,
        after=decode_keyset(cursor),
        limit=limit + 1,
    )
    return page_of(rows, limit=limit, position=lambda event: keyset(event.at, event.id))
