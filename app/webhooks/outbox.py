"""The outbox: every deliverable event gets its deliveries in the transaction that records it.

Webhooks subscribe to events (`subscribe`, at process start), both ways events are written. An
event recorded on a session (`events.service.record`) is kept there until the session next
flushes (the event rows are then written); then one `INSERT … SELECT` (`_fan_out_sql`) writes
its deliveries. An event written by a hot path's own statement (`events.statement`) gets the
same `INSERT … SELECT` as a part of that statement. Once committed, the new deliveries are
enqueued; whatever the broker refuses is left for the scheduler.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Sequence
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.core.db import utc_now
from app.core.sql import Params
from app.events import service as event_service
from app.events import statement as event_statement
from app.webhooks.kinds import EVENT_KINDS, is_deliverable
from app.webhooks.repository import DeliveryRepository
from app.worker import enqueue
from app.worker.names import Job, Queue

_OUTBOX_KEY = "taskgate_webhook_outbox"
# The highest `webhooks.timeout_s` allowed: an attempt ends by itself well before Celery's hard
# limit, which only ever stops a pool process that is stuck outside the event loop.
MAX_ATTEMPT_S = 60.0
DELIVERABLE_KINDS = sorted(EVENT_KINDS)


def subscribe() -> None:
    """Write webhook deliveries for the events this process records (idempotent): at the
    session's flush for `events.service.record`, in the same statement for `events.statement`."""
    event_service.subscribe(_track)
    event_statement.subscribe("webhooks", _fan_out, _wants)


def _wants(p: Params, project_sql: str, kind: str) -> str:
    """Whether an enabled endpoint of the project subscribes to `kind`."""
    if not is_deliverable(kind):
        return "false"
    return (
        "EXISTS (SELECT 1 FROM webhook_endpoints AS endpoint"  # noqa: S608 - placeholders only
        f" WHERE endpoint.project_id = {project_sql}"
        f" AND {_subscribed(f'CAST({p(kind)} AS text)')})"
    )


def _subscribed(kind_sql: str) -> str:
    """SQL: the endpoint (`endpoint`) is enabled and subscribed to the kind `kind_sql`."""
    return (
        f"endpoint.enabled AND ({kind_sql} = ANY(endpoint.event_kinds)"
        " OR '*' = ANY(endpoint.event_kinds))"
    )


def _deliverable(recorded: event_service.Recorded) -> bool:
    return recorded.event.project_id is not None and is_deliverable(recorded.event.kind)


def _fan_out_sql(p: Params, *, dispatch: bool) -> str:
    """A delivery for every (event in `recorded`, enabled endpoint of its project subscribed to
    its kind): no read round trip, and nothing if no endpoint subscribes. The delivery's body is
    frozen here, so every retry sends the same."""
    now = utc_now()
    return f"""
    INSERT INTO webhook_deliveries (
        id, endpoint_id, event_id, event_type, payload, state, attempt, schedule_start_attempt,
        next_attempt_at, dispatched_at, request_id, created_at
    )
    SELECT gen_random_uuid(), endpoint.id, event.id, event.kind,
           jsonb_build_object('type', event.kind, 'timestamp', event.timestamp,
                              'data', event.body),
           'pending', 0, 0, CAST({p(now)} AS timestamptz),
           CAST({p(now if dispatch else None)} AS timestamptz), event.request_id,
           CAST({p(now)} AS timestamptz)
    FROM recorded AS event
    JOIN webhook_endpoints AS endpoint ON endpoint.project_id = event.project_id
    WHERE event.kind = ANY(CAST({p(DELIVERABLE_KINDS)} AS text[]))
      AND {_subscribed("event.kind")}
    RETURNING id
    """  # noqa: S608 - every value is a placeholder


def _fan_out(
    p: Params, recorded: Sequence[event_service.Recorded]
) -> tuple[str, event_statement.Written] | None:
    if not any(map(_deliverable, recorded)):
        return None
    dispatch = enqueue.available()

    def written(
        delivery_ids: Sequence[uuid.UUID], sessionmaker: async_sessionmaker[AsyncSession] | None
    ) -> Awaitable[None] | None:
        if not dispatch:
            return None  # left undispatched: the scheduler publishes them
        return enqueue.enqueue_committed(
            sessionmaker,
            Job.deliver_webhook,
            [(str(delivery_id),) for delivery_id in delivery_ids],
            queue=Queue.webhooks,
            timeout_s=MAX_ATTEMPT_S,
            unsent=forget_dispatch,
        )

    return _fan_out_sql(p, dispatch=dispatch), written


def _track(session: AsyncSession, recorded: event_service.Recorded) -> None:
    """Keep a deliverable event on its session until the session's next flush."""
    if not _deliverable(recorded):
        return
    tracked: dict[uuid.UUID, event_service.Recorded] | None = session.info.get(_OUTBOX_KEY)
    if tracked is None:
        tracked = session.info[_OUTBOX_KEY] = {}
        # Listeners of this session only, gone with it.
        sa_event.listen(session.sync_session, "after_flush", _write_deliveries(session))
        sa_event.listen(session.sync_session, "after_soft_rollback", _forget)
    tracked[recorded.event.id] = recorded


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
        p = Params(named=True)
        rows = [event_statement.recorded_row(item) for item in pending]
        statement = (
            f"WITH recorded AS ({event_statement.recordset(p, rows)})"
            f" {_fan_out_sql(p, dispatch=dispatch)}"
        )
        # The event rows were inserted by this flush; the connection is the transaction's.
        delivery_ids = list(session.connection().execute(text(statement), p.as_dict()).scalars())
        if delivery_ids and dispatch:
            enqueue_deliveries(proxy, delivery_ids)

    return write


def _forget(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        session.info[_OUTBOX_KEY] = {}
