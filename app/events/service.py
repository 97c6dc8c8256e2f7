"""The audit log: every mutation records an event in the transaction that makes it.

Other domains react to events by subscribing (`subscribe`, at process start): each subscriber
is called with every event as it is recorded, inside the same transaction, and may add its own
rows to it (the webhook outbox does). Events know nothing of their subscribers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.context import request_id_var
from app.core.db import detached, utc_now
from app.core.pagination import decode_keyset, keyset, page_of
from app.events.models import ActorType, Event
from app.events.repository import EventRepository

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


@dataclass(frozen=True)
class Recorded:
    """An event as subscribers see it, with what the recording service knew of its subject."""

    event: Event
    # The subject as the API shows it (JSON), when the service has it at hand (e.g. the task).
    subject: dict[str, Any] | None = None
    # The request the subject came from, when the event has none of its own (a task finishing
    # on a worker carries the id of the request that submitted it).
    request_id: str | None = None


Subscriber = Callable[[AsyncSession, Recorded], None]
_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> None:
    """Call `subscriber` with every event recorded in this process from now on (idempotent)."""
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)


def _event_values(
    kind: str,
    *,
    project_id: uuid.UUID | None,
    subject_id: uuid.UUID | None,
    actor: Principal | None,
    data: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "project_id": project_id,
        "kind": kind,
        "actor_type": actor.actor_type if actor is not None else ActorType.system,
        "actor_id": actor.actor_id if actor is not None else None,
        "subject_id": subject_id,
        "data": _redact(data or {}),
        "request_id": request_id_var.get(),
        "at": utc_now(),
    }


def new_event(
    kind: str,
    *,
    project_id: uuid.UUID | None,
    subject_id: uuid.UUID | None,
    actor: Principal | None,
    data: dict[str, Any] | None = None,
) -> Event:
    """An event as `record` writes it, for a statement that writes it itself (never added to a
    session)."""
    values = _event_values(
        kind, project_id=project_id, subject_id=subject_id, actor=actor, data=data
    )
    return detached(Event, values)


def record(
    session: AsyncSession,
    kind: str,
    *,
    project_id: uuid.UUID | None,
    subject_id: uuid.UUID | None,
    actor: Principal | None,
    data: dict[str, Any] | None = None,
    subject: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> Event:
    """Add an audit event to `session` (saved with the caller's transaction); `actor=None` is the
    system. The request id comes from the context; values under secret-looking keys are redacted.
    `subject` and `request_id` are for subscribers (see `Recorded`)."""
    values = _event_values(
        kind, project_id=project_id, subject_id=subject_id, actor=actor, data=data
    )
    event = Event(**values)
    session.add(event)
    recorded = Recorded(event, subject=subject, request_id=request_id)
    for subscriber in _subscribers:
        subscriber(session, recorded)
    return event


# Webhook events name the receivers' URLs and what they answered: for admins and owners, who
# manage the endpoints, not for every member of the project.
ADMIN_ONLY_KINDS = ("webhook.",)


async def list_events(
    session: AsyncSession,
    *,
    project_id: uuid.UUID,
    kind: str | None = None,
    subject_id: uuid.UUID | None = None,
    since: datetime | None = None,
    limit: int,
    cursor: str | None = None,
    admin: bool = False,
) -> tuple[list[Event], str | None]:
    """A page of the project's events, newest first (callers check the role); the kinds of
    `ADMIN_ONLY_KINDS` only for `admin`."""
    rows = await EventRepository(session).list_for_project(
        project_id,
        kind=kind,
        subject_id=subject_id,
        since=since,
        after=decode_keyset(cursor),
        limit=limit + 1,
        hidden_prefixes=() if admin else ADMIN_ONLY_KINDS,
    )
    return page_of(rows, limit=limit, position=lambda event: keyset(event.at, event.id))
