"""The outbox: every deliverable event gets its deliveries in the transaction that records it.

`event_service.record` hands each new event to `track`; the service that caused the event may
attach its subject as the API shows it (`attach_subject`, e.g. the task). When the session next
flushes (the event rows are then written), one `INSERT … SELECT` writes a delivery for every
enabled endpoint of the project subscribed to the event's kind: no read round trip, and nothing
if no endpoint subscribes. The delivery's body is frozen then, so every retry sends the same.
After commit the new deliveries are published, if this process has a publisher installed.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession, async_session
from sqlalchemy.orm import Session

from app.core.db import after_commit, utc_now
from app.events.models import Event
from app.events.schemas import EventRead
from app.webhooks import dispatch
from app.webhooks.kinds import is_deliverable
from app.webhooks.repository import FAN_OUT

_OUTBOX_KEY = "taskgate_webhook_outbox"


@dataclass
class _Pending:
    event: Event
    subject: dict[str, Any] | None = None
    request_id: str | None = None


def track(session: AsyncSession, event: Event) -> None:
    """Queue deliveries of `event` (if deliverable) for the session's next flush."""
    if event.project_id is None or not is_deliverable(event.kind):
        return
    session.info.setdefault(_OUTBOX_KEY, {})[event.id] = _Pending(event)


def attach_subject(
    session: AsyncSession,
    event: Event,
    subject: dict[str, Any],
    *,
    request_id: str | None = None,
) -> None:
    """Use `subject` (JSON, as the API shows the object) as the `data` of the event's webhooks.

    Call it right after `record`. `request_id` (the request that created the object) is sent
    as `X-Request-ID` when the event itself has none, e.g. a task finishing on a worker.
    """
    pending = session.info.get(_OUTBOX_KEY, {}).get(event.id)
    if pending is not None:
        pending.subject, pending.request_id = subject, request_id


def _timestamp(event: Event) -> str:
    return event.at.isoformat().replace("+00:00", "Z")


def _row(pending: _Pending) -> dict[str, Any]:
    event = pending.event
    data = pending.subject
    if data is None:
        data = EventRead.of(event).model_dump(mode="json")
    return {
        "event_id": str(event.id),
        "project_id": str(event.project_id),
        "kind": event.kind,
        "payload": {"type": event.kind, "timestamp": _timestamp(event), "data": data},
        "request_id": event.request_id or pending.request_id,
    }


@sa_event.listens_for(Session, "after_flush")
def _write_deliveries(session: Session, _flush_context: Any) -> None:
    tracked: dict[uuid.UUID, _Pending] = session.info.pop(_OUTBOX_KEY, {})
    # An event rolled back with a savepoint left the session: it has no row to refer to.
    pending = [item for item in tracked.values() if item.event in session]
    if not pending:
        return
    proxy = async_session(session)
    publisher = dispatch.installed() if proxy is not None else None
    now = utc_now()
    # The event rows were inserted by this flush; the connection is the transaction's.
    delivery_ids = list(
        session.connection()
        .execute(
            FAN_OUT,
            {
                "events": [_row(item) for item in pending],
                "now": now,
                "dispatched_at": now if publisher is not None else None,
            },
        )
        .scalars()
    )
    if delivery_ids and publisher is not None and proxy is not None:
        after_commit(proxy, functools.partial(publisher.publish_soon, delivery_ids))


@sa_event.listens_for(Session, "after_soft_rollback")
def _forget(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_OUTBOX_KEY, None)
