"""The outbox: every deliverable event gets its deliveries in the transaction that records it.

Webhooks subscribe to events (`subscribe`, at process start). Each recorded event of a project
is kept on its session until the session next flushes (the event rows are then written); then
one `INSERT … SELECT` writes a delivery for every enabled endpoint of the project subscribed to
the event's kind: no read round trip, and nothing if no endpoint subscribes. The delivery's body
is frozen then, so every retry sends the same. Once committed, the new deliveries are enqueued;
whatever the broker refuses is left for the scheduler.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.core.db import utc_now
from app.events import service as event_service
from app.events.schemas import EventRead
from app.webhooks.kinds import is_deliverable
from app.webhooks.repository import FAN_OUT, DeliveryRepository
from app.worker import enqueue
from app.worker.names import Job, Queue

_OUTBOX_KEY = "taskgate_webhook_outbox"
# The highest `webhooks.timeout_s` allowed: an attempt ends by itself well before Celery's hard
# limit, which only ever stops a pool process that is stuck outside the event loop.
MAX_ATTEMPT_S = 60.0


def subscribe() -> None:
    """Write webhook deliveries for the events this process records (idempotent)."""
    event_service.subscribe(_track)


def _track(session: AsyncSession, recorded: event_service.Recorded) -> None:
    """Keep a deliverable event on its session until the session's next flush."""
    if recorded.event.project_id is None or not is_deliverable(recorded.event.kind):
        return
    tracked: dict[uuid.UUID, event_service.Recorded] | None = session.info.get(_OUTBOX_KEY)
    if tracked is None:
        tracked = session.info[_OUTBOX_KEY] = {}
        # Listeners of this session only, gone with it.
        sa_event.listen(session.sync_session, "after_flush", _write_deliveries(session))
        sa_event.listen(session.sync_session, "after_soft_rollback", _forget)
    tracked[recorded.event.id] = recorded


def _timestamp(recorded: event_service.Recorded) -> str:
    return recorded.event.at.isoformat().replace("+00:00", "Z")


def _row(recorded: event_service.Recorded) -> dict[str, Any]:
    event = recorded.event
    data = recorded.subject
    if data is None:
        data = EventRead.of(event).model_dump(mode="json")
    return {
        "event_id": str(event.id),
        "project_id": str(event.project_id),
        "kind": event.kind,
        "payload": {"type": event.kind, "timestamp": _timestamp(recorded), "data": data},
        "request_id": event.request_id or recorded.request_id,
    }


async def forget_dispatch(session: AsyncSession, messages: Sequence[enqueue.Message]) -> None:
    """Deliveries the broker refused: the scheduler publishes them on its next pass."""
    await DeliveryRepository(session).forget_dispatch(
        [uuid.UUID(message.args[0]) for message in messages]
    )


def enqueue_deliveries(session: AsyncSession, delivery_ids: Sequence[uuid.UUID]) -> None:
    """Publish one `webhooks.deliver` job per delivery once `session` commits."""
    for delivery_id in delivery_ids:
        enqueue.enqueue(
            session,
            Job.deliver_webhook,
            str(delivery_id),
            queue=Queue.webhooks,
            timeout_s=MAX_ATTEMPT_S,
            unsent=forget_dispatch,
        )


def _write_deliveries(proxy: AsyncSession) -> Any:
    def write(session: Session, _flush_context: Any) -> None:
        tracked: dict[uuid.UUID, event_service.Recorded] = session.info.pop(_OUTBOX_KEY, {})
        session.info[_OUTBOX_KEY] = {}
        # An event rolled back with a savepoint left the session: it has no row to refer to.
        pending = [item for item in tracked.values() if item.event in session]
        if not pending:
            return
        dispatch = enqueue.available()
        now = utc_now()
        # The event rows were inserted by this flush; the connection is the transaction's.
        delivery_ids = list(
            session.connection()
            .execute(
                FAN_OUT,
                {
                    "events": [_row(item) for item in pending],
                    "now": now,
                    "dispatched_at": now if dispatch else None,
                },
            )
            .scalars()
        )
        if delivery_ids and dispatch:
            enqueue_deliveries(proxy, delivery_ids)

    return write


def _forget(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        session.info[_OUTBOX_KEY] = {}
