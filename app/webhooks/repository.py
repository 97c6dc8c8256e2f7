"""Webhook statements. Delivery state changes are guarded UPDATEs, never read-then-write."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, or_, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import KeysetCursor
from app.webhooks.models import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEndpoint

# Due deliveries to publish, at most as many per endpoint as it has free slots. Per endpoint, so
# the cost is one short index probe each, however many deliveries wait behind a slow receiver.
# `FOR UPDATE` cannot go with these joins, so the UPDATE that marks them re-checks instead.
_DUE_WITH_FREE_SLOTS = text(
    """
    SELECT due.id
    FROM webhook_endpoints AS endpoint
    CROSS JOIN LATERAL (
        SELECT count(*) AS n
        FROM webhook_deliveries
        WHERE endpoint_id = endpoint.id AND claimed_until > :now AND state = 'pending'
    ) AS in_flight
    CROSS JOIN LATERAL (
        SELECT id, next_attempt_at
        FROM webhook_deliveries
        WHERE endpoint_id = endpoint.id AND state = 'pending' AND next_attempt_at <= :now
          AND (claimed_until IS NULL OR claimed_until <= :now)
          AND (dispatched_at IS NULL OR (:redispatch AND dispatched_at < :stale_before))
        ORDER BY endpoint_id, next_attempt_at  -- the order of its index: one short probe
        LIMIT greatest(
            CASE WHEN endpoint.failing_since IS NULL THEN :concurrency ELSE 1 END - in_flight.n, 0
        )
    ) AS due
    ORDER BY due.next_attempt_at
    LIMIT :limit
    """
)


def _unclaimed(now: datetime) -> Any:
    return or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until <= now)


class EndpointRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, endpoint_id: uuid.UUID) -> WebhookEndpoint | None:
        return await self.session.get(WebhookEndpoint, endpoint_id, populate_existing=True)

    async def count_for_project(self, project_id: uuid.UUID) -> int:
        count = await self.session.scalar(
            select(func.count())
            .select_from(WebhookEndpoint)
            .where(WebhookEndpoint.project_id == project_id)
        )
        return count or 0

    async def list_for_project(
        self, project_id: uuid.UUID, *, after: KeysetCursor | None, limit: int
    ) -> Sequence[WebhookEndpoint]:
        """Newest first, `limit` rows after the cursor `after`."""
        query = select(WebhookEndpoint).where(WebhookEndpoint.project_id == project_id)
        if after is not None:
            query = query.where(
                tuple_(WebhookEndpoint.created_at, WebhookEndpoint.id) < tuple_(after.at, after.id)
            )
        query = query.order_by(WebhookEndpoint.created_at.desc(), WebhookEndpoint.id.desc())
        return (await self.session.scalars(query.limit(limit))).all()

    async def update(
        self, endpoint_id: uuid.UUID, *where: Any, **values: Any
    ) -> WebhookEndpoint | None:
        statement = (
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, *where)
            .values(**values)
            .returning(WebhookEndpoint)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def delete(self, endpoint_id: uuid.UUID) -> None:
        await self.session.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))

    async def lock_for_delivery(self, delivery_id: uuid.UUID) -> WebhookEndpoint | None:
        """The delivery's endpoint, locked so claims on one endpoint count its slots one at a time.

        `FOR NO KEY UPDATE` does not block the outbox inserting deliveries that reference it.
        """
        query = (
            select(WebhookEndpoint)
            .join(WebhookDelivery, WebhookDelivery.endpoint_id == WebhookEndpoint.id)
            .where(WebhookDelivery.id == delivery_id)
            .with_for_update(key_share=True, of=WebhookEndpoint)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(query)).one_or_none()

    async def lock(self, endpoint_id: uuid.UUID) -> bool:
        """Take the row lock claims take, first: endpoint before delivery, so no deadlock."""
        found = await self.session.scalar(
            select(WebhookEndpoint.id)
            .where(WebhookEndpoint.id == endpoint_id)
            .with_for_update(key_share=True)
        )
        return found is not None

    async def disable(self, endpoint_id: uuid.UUID, *, reason: str) -> WebhookEndpoint | None:
        """enabled → disabled once; None when it was already disabled (or is gone)."""
        return await self.update(
            endpoint_id,
            WebhookEndpoint.enabled.is_(True),
            enabled=False,
            disabled_reason=reason[:200],
        )

    async def disable_created_by(
        self, user_id: uuid.UUID, *, project_id: uuid.UUID | None, reason: str
    ) -> Sequence[WebhookEndpoint]:
        """Disable the enabled endpoints the user created, in one project (or in every one,
        None); the disabled rows."""
        statement = update(WebhookEndpoint).where(
            WebhookEndpoint.created_by == user_id, WebhookEndpoint.enabled.is_(True)
        )
        if project_id is not None:
            statement = statement.where(WebhookEndpoint.project_id == project_id)
        statement = (
            statement.values(enabled=False, disabled_reason=reason[:200])
            .returning(WebhookEndpoint)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(statement)).all()

    async def mark_failing(self, endpoint_id: uuid.UUID, *, now: datetime) -> datetime | None:
        """Since when the endpoint has been failing (set now unless it already was)."""
        return await self.session.scalar(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id)
            .values(failing_since=func.coalesce(WebhookEndpoint.failing_since, now))
            .returning(WebhookEndpoint.failing_since)
            .execution_options(synchronize_session=False)
        )

    async def mark_healthy(self, endpoint_id: uuid.UUID) -> None:
        await self.session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_not(None))
            .values(failing_since=None)
            .execution_options(synchronize_session=False)
        )


class DeliveryRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> WebhookDelivery | None:
        delivery = await self.session.get(WebhookDelivery, delivery_id, populate_existing=True)
        return delivery if delivery is not None and delivery.endpoint_id == endpoint_id else None

    async def list_for_endpoint(
        self,
        endpoint_id: uuid.UUID,
        *,
        state: DeliveryState | None,
        event_type: str | None,
        after: KeysetCursor | None,
        limit: int,
    ) -> Sequence[WebhookDelivery]:
        """Newest first, `limit` rows after the cursor `after`."""
        query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        if state is not None:
            query = query.where(WebhookDelivery.state == state)
        if event_type is not None:
            query = query.where(WebhookDelivery.event_type == event_type)
        if after is not None:
            query = query.where(
                tuple_(WebhookDelivery.created_at, WebhookDelivery.id) < tuple_(after.at, after.id)
            )
        query = query.order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
        return (await self.session.scalars(query.limit(limit))).all()

    async def attempts(self, delivery_id: uuid.UUID) -> Sequence[WebhookAttempt]:
        query = (
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.attempt, WebhookAttempt.started_at)
        )
        return (await self.session.scalars(query)).all()

    async def add_attempt(self, attempt: WebhookAttempt) -> None:
        self.session.add(attempt)

    async def _update_one(
        self, delivery_id: uuid.UUID, *where: Any, **values: Any
    ) -> WebhookDelivery | None:
        statement = (
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, *where)
            .values(**values)
            .returning(WebhookDelivery)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def count_in_flight(self, endpoint_id: uuid.UUID, *, now: datetime) -> int:
        count = await self.session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.state == DeliveryState.pending,
                WebhookDelivery.claimed_until > now,
            )
        )
        return count or 0

    async def claim(
        self, delivery_id: uuid.UUID, *, now: datetime, until: datetime
    ) -> WebhookDelivery | None:
        """A due, unclaimed pending delivery → claimed for one attempt (the attempt counts now)."""
        return await self._update_one(
            delivery_id,
            WebhookDelivery.state == DeliveryState.pending,
            WebhookDelivery.next_attempt_at <= now,
            _unclaimed(now),
            attempt=WebhookDelivery.attempt + 1,
            claimed_until=until,
            last_attempt_at=now,
            dispatched_at=None,  # its job is consumed: if this worker dies, the lease decides
        )

    async def leave_to_scheduler(self, delivery_id: uuid.UUID, *, now: datetime) -> None:
        """No free slot: the scheduler publishes it again once its endpoint has one."""
        await self._update_one(
            delivery_id,
            WebhookDelivery.state == DeliveryState.pending,
            _unclaimed(now),
            dispatched_at=None,
        )

    async def take_waiting(self, endpoint_id: uuid.UUID, *, now: datetime) -> uuid.UUID | None:
        """The endpoint's next due delivery that was left for the scheduler (no slot was free),
        marked as published: an attempt that frees its slot hands it on at once."""
        waiting = (
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.state == DeliveryState.pending,
                WebhookDelivery.next_attempt_at <= now,
                WebhookDelivery.dispatched_at.is_(None),
                _unclaimed(now),
            )
            .order_by(WebhookDelivery.endpoint_id, WebhookDelivery.next_attempt_at)
            .limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        taken: uuid.UUID | None = await self.session.scalar(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == waiting)
            .values(dispatched_at=now)
            .returning(WebhookDelivery.id)
            .execution_options(synchronize_session=False)
        )
        return taken

    async def finish_attempt(
        self, delivery_id: uuid.UUID, *, attempt: int, **values: Any
    ) -> WebhookDelivery | None:
        """Record the attempt that holds the claim; None when it lost it (redelivered, failed)."""
        return await self._update_one(
            delivery_id,
            WebhookDelivery.state == DeliveryState.pending,
            WebhookDelivery.attempt == attempt,
            WebhookDelivery.claimed_until.is_not(None),
            claimed_until=None,
            dispatched_at=None,
            **values,
        )

    async def fail_waiting(
        self,
        endpoint_id: uuid.UUID,
        *,
        now: datetime,
        reason: str,
        delivery_id: uuid.UUID | None = None,
    ) -> int:
        """Fail the endpoint's pending deliveries that no worker holds (it was disabled)."""
        statement = (
            update(WebhookDelivery)
            .where(
                WebhookDelivery.endpoint_id == endpoint_id,
                WebhookDelivery.state == DeliveryState.pending,
                _unclaimed(now),
            )
            .values(
                state=DeliveryState.failed,
                next_attempt_at=None,
                dispatched_at=None,
                claimed_until=None,
                last_error=reason[:300],
            )
            .execution_options(synchronize_session=False)
        )
        if delivery_id is not None:
            statement = statement.where(WebhookDelivery.id == delivery_id)
        result = await self.session.execute(statement)
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def redeliver(
        self, delivery_id: uuid.UUID, *, now: datetime, dispatched: bool
    ) -> WebhookDelivery | None:
        """Due now; a finished delivery starts its retry schedule again. None while in flight."""
        return await self._update_one(
            delivery_id,
            _unclaimed(now),
            # Still pending: it keeps its place in the schedule.
            schedule_start_attempt=case(
                (
                    WebhookDelivery.state == DeliveryState.pending,
                    WebhookDelivery.schedule_start_attempt,
                ),
                else_=WebhookDelivery.attempt,
            ),
            state=DeliveryState.pending,
            next_attempt_at=now,
            dispatched_at=now if dispatched else None,
        )

    async def claim_for_dispatch(
        self,
        *,
        now: datetime,
        stale_before: datetime,
        redispatch: bool,
        concurrency: int,
        limit: int,
    ) -> Sequence[uuid.UUID]:
        """Mark due deliveries published (within each endpoint's free slots); return their ids."""
        candidates = (
            await self.session.scalars(
                _DUE_WITH_FREE_SLOTS,
                {
                    "now": now,
                    "stale_before": stale_before,
                    "redispatch": redispatch,
                    "concurrency": concurrency,
                    "limit": limit,
                },
            )
        ).all()
        if not candidates:
            return []
        statement = (
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id.in_(candidates),
                WebhookDelivery.state == DeliveryState.pending,
                _unclaimed(now),
                or_(
                    WebhookDelivery.dispatched_at.is_(None),
                    WebhookDelivery.dispatched_at < stale_before,
                ),
            )
            .values(dispatched_at=now)
            .returning(WebhookDelivery.id)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.scalars(statement)).all()

    async def forget_dispatch(self, delivery_ids: Sequence[uuid.UUID]) -> None:
        """Publishing failed: leave these for the scheduler's next pass."""
        await self.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id.in_(delivery_ids),
                WebhookDelivery.state == DeliveryState.pending,
            )
            .values(dispatched_at=None)
            .execution_options(synchronize_session=False)
        )
