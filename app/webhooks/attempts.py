"""Webhook attempts, the worker side: one claim per attempt, guarded in SQL, so a duplicate job
or a crashed worker costs nothing but a repeat of the same `webhook-id`."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import WebhookSettings
from app.core.db import utc_now
from app.events import service as event_service
from app.webhooks.models import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks.repository import DeliveryRepository, EndpointRepository
from app.webhooks.sealing import unseal
from app.webhooks.sender import Outcome

# Statuses whose `Retry-After` sets the next attempt instead of the schedule.
RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE = 410


class Skip(enum.StrEnum):
    """Why a worker makes no attempt of a delivery it was sent."""

    gone = "gone"
    endpoint_disabled = "endpoint_disabled"
    # Its endpoint has no free slot; the scheduler publishes it again.
    busy = "busy"
    # Not due, already claimed, or finished.
    not_available = "not_available"
    attempts_used_up = "attempts_used_up"


@dataclass(frozen=True)
class Claim:
    """One attempt a worker holds: everything it needs to send, without a transaction open."""

    delivery_id: uuid.UUID
    endpoint_id: uuid.UUID
    project_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    attempt: int
    schedule_start_attempt: int
    url: str
    # Every secret that signs: the current one, then the previous one. Never in a repr or log.
    secrets: tuple[str, ...] = field(repr=False)
    payload: dict[str, Any]
    request_id: str | None


def signing_secrets(
    endpoint: WebhookEndpoint, *, now: datetime, settings: WebhookSettings
) -> tuple[str, ...]:
    """The secrets that sign a delivery now, unsealed: the current one, then the previous one
    while its grace period lasts."""
    current = unseal(endpoint.secret, settings)
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        return current, unseal(endpoint.previous_secret, settings)
    return (current,)


async def claim(
    session: AsyncSession, delivery_id: uuid.UUID, *, settings: WebhookSettings
) -> Claim | Skip:
    """Claim a due delivery for one attempt, or say why not."""
    now = utc_now()
    endpoint = await EndpointRepository(session).lock_for_delivery(delivery_id)
    if endpoint is None:
        return Skip.gone
    deliveries = DeliveryRepository(session)
    if not endpoint.enabled:
        await deliveries.fail_waiting(
            endpoint.id, now=now, reason="the endpoint is disabled", delivery_id=delivery_id
        )
        return Skip.endpoint_disabled
    # A failing endpoint gets one attempt at a time: a hanging receiver holds one slot, not K.
    slots = settings.endpoint_concurrency if endpoint.failing_since is None else 1
    if await deliveries.count_in_flight(endpoint.id, now=now) >= slots:
        await deliveries.leave_to_scheduler(delivery_id, now=now)
        return Skip.busy
    lease = timedelta(seconds=settings.timeout_s + settings.lease_grace_s)
    delivery = await deliveries.claim(delivery_id, now=now, until=now + lease)
    if delivery is None:
        return Skip.not_available
    if delivery.attempt - delivery.schedule_start_attempt > len(settings.retry_schedule_s) + 1:
        # Every attempt is used up, the last ones cut short (their workers died): give up.
        reason = "interrupted: the last attempts were cut short"
        await deliveries.finish_attempt(
            delivery.id,
            attempt=delivery.attempt,
            state=DeliveryState.failed,
            next_attempt_at=None,
            last_error=reason,
        )
        _record_failure(
            session,
            delivery,
            project_id=endpoint.project_id,
            attempts=delivery.attempt - 1,
            error=reason,
        )
        return Skip.attempts_used_up
    return Claim(
        delivery_id=delivery.id,
        endpoint_id=endpoint.id,
        project_id=endpoint.project_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        attempt=delivery.attempt,
        schedule_start_attempt=delivery.schedule_start_attempt,
        url=endpoint.url,
        secrets=signing_secrets(endpoint, now=now, settings=settings),
        payload=delivery.payload,
        request_id=delivery.request_id,
    )


def next_attempt_delay(
    attempt_in_schedule: int, outcome: Outcome, settings: WebhookSettings
) -> float | None:
    """Seconds until the next attempt after a failed one, or None when retries are used up."""
    schedule = settings.retry_schedule_s
    if attempt_in_schedule > len(schedule):
        return None
    delay = schedule[attempt_in_schedule - 1]
    if outcome.status in RETRY_AFTER_STATUSES and outcome.retry_after_s is not None:
        delay = min(outcome.retry_after_s, max(schedule))
    return delay


async def record_attempt(
    session: AsyncSession,
    held: Claim,
    outcome: Outcome,
    *,
    started_at: datetime,
    settings: WebhookSettings,
) -> DeliveryState | None:
    """Log the attempt and move the delivery on; None when the claim was lost meanwhile."""
    now = utc_now()
    gone = outcome.status == GONE
    next_attempt_at = None
    if not outcome.succeeded and not gone:
        delay = next_attempt_delay(held.attempt - held.schedule_start_attempt, outcome, settings)
        next_attempt_at = None if delay is None else now + timedelta(seconds=delay)
    if outcome.succeeded:
        state = DeliveryState.succeeded
    else:
        state = DeliveryState.pending if next_attempt_at is not None else DeliveryState.failed
    endpoints, deliveries = EndpointRepository(session), DeliveryRepository(session)
    if not await endpoints.lock(held.endpoint_id):
        return None  # deleted meanwhile, with its deliveries
    delivery = await deliveries.finish_attempt(
        held.delivery_id,
        attempt=held.attempt,
        state=state,
        response_status=outcome.status,
        response_excerpt=outcome.excerpt,
        latency_ms=outcome.latency_ms,
        last_error=outcome.error,
        next_attempt_at=next_attempt_at,
    )
    if delivery is None:
        return None
    await deliveries.add_attempt(
        WebhookAttempt(
            id=uuid.uuid4(),
            delivery_id=held.delivery_id,
            attempt=held.attempt,
            started_at=started_at,
            latency_ms=outcome.latency_ms,
            response_status=outcome.status,
            response_excerpt=outcome.excerpt,
            error=outcome.error,
            next_attempt_at=next_attempt_at,
        )
    )
    if outcome.succeeded:
        await endpoints.mark_healthy(held.endpoint_id)
        return state
    if state == DeliveryState.failed:
        _record_failure(
            session,
            delivery,
            project_id=held.project_id,
            attempts=held.attempt,
            error=outcome.error,
            response_status=outcome.status,
        )
    if gone:
        await _disable(session, held, reason="the endpoint answered 410 Gone", now=now)
        return state
    failing_since = await endpoints.mark_failing(held.endpoint_id, now=now)
    if failing_since is not None and now - failing_since >= timedelta(
        seconds=settings.disable_after_s
    ):
        reason = f"failing without a success since {failing_since:%Y-%m-%d %H:%M} UTC"
        await _disable(session, held, reason=reason, now=now)
    return state


def _record_failure(
    session: AsyncSession,
    delivery: WebhookDelivery,
    *,
    project_id: uuid.UUID,
    attempts: int,
    error: str | None,
    response_status: int | None = None,
) -> None:
    """`webhook.delivery_failed`, about the endpoint (the subject), naming the delivery."""
    event_service.record(
        session,
        "webhook.delivery_failed",
        project_id=project_id,
        subject_id=delivery.endpoint_id,
        actor=None,
        data={
            "delivery_id": str(delivery.id),
            "event_id": str(delivery.event_id),
            "event_type": delivery.event_type,
            "attempts": attempts,
            "response_status": response_status,
            "error": error,
        },
    )


async def _disable(session: AsyncSession, held: Claim, *, reason: str, now: datetime) -> None:
    disabled = await EndpointRepository(session).disable(held.endpoint_id, reason=reason)
    if disabled is None:
        return  # already disabled
    failed = await DeliveryRepository(session).fail_waiting(
        held.endpoint_id, now=now, reason=f"the endpoint was disabled: {reason}"
    )
    event_service.record(
        session,
        "webhook.endpoint_disabled",
        project_id=held.project_id,
        subject_id=held.endpoint_id,
        actor=None,
        data={"reason": reason, "failed_deliveries": failed},
    )
