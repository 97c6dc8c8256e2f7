"""Webhooks: endpoints (admin), the delivery log and redelivery; claiming and recording attempts.

Every route needs the `admin` role in the endpoint's project (API keys, `member` at most, never
manage or read webhooks); an endpoint of a project the caller is not in is a 404. Deliveries are
written by the outbox (`outbox.py`) with the event that causes them and attempted by workers:
one claim per attempt, guarded in SQL, so a duplicate job or a crashed worker costs nothing but
a repeat of the same `webhook-id`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.core.config import WebhookSettings
from app.core.db import after_commit, utc_now
from app.core.pagination import decode_keyset, keyset, page_of
from app.events import service as event_service
from app.events.models import Event
from app.projects import service as project_service
from app.projects.models import Role
from app.projects.service import ProjectAccess
from app.webhooks import dispatch, outbox, targets
from app.webhooks.exceptions import (
    DeliveryInFlight,
    DeliveryNotFound,
    InvalidWebhookUrl,
    SecretRotatedConcurrently,
    WebhookDisabled,
    WebhookLimitReached,
    WebhookNotFound,
)
from app.webhooks.models import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks.repository import DeliveryRepository, EndpointRepository
from app.webhooks.schemas import WebhookCreate, WebhookUpdate
from app.webhooks.sender import Outcome
from app.webhooks.signing import new_secret

# Statuses whose `Retry-After` sets the next attempt instead of the schedule.
RETRY_AFTER_STATUSES = frozenset({429, 503})
GONE = 410


def attach_subject(
    session: AsyncSession,
    event: Event,
    subject: dict[str, Any],
    *,
    request_id: str | None = None,
) -> None:
    """Send `subject` (the object as the API shows it) as the `data` of the event's webhooks."""
    outbox.attach_subject(session, event, subject, request_id=request_id)


def _origin(url: str) -> str:
    """Scheme, host and port only: URLs may carry tokens, and the audit log is not for secrets."""
    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}"


def _checked_url(url: str, settings: WebhookSettings) -> str:
    try:
        targets.parse(url, targets.TargetPolicy.of(settings))
    except targets.RefusedTarget as exc:
        raise InvalidWebhookUrl(str(exc)) from None
    return url


# --- endpoints --------------------------------------------------------------------------------


async def _endpoint_for_admin(
    session: AsyncSession, *, principal: Principal, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    endpoint = await EndpointRepository(session).get(endpoint_id)
    if endpoint is None:
        raise WebhookNotFound()
    await project_service.require_role(
        session,
        project_id=endpoint.project_id,
        principal=principal,
        role=Role.admin,
        hidden_as=WebhookNotFound,
    )
    return endpoint


async def create_endpoint(
    session: AsyncSession,
    *,
    access: ProjectAccess,
    data: WebhookCreate,
    settings: WebhookSettings,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its signing secret (returned here and on rotation only)."""
    url = _checked_url(data.url, settings)
    repository = EndpointRepository(session)
    if await repository.count_for_project(access.project_id) >= settings.max_endpoints_per_project:
        raise WebhookLimitReached(
            f"a project may have {settings.max_endpoints_per_project} webhook endpoints"
        )
    secret = new_secret()
    endpoint = WebhookEndpoint(
        id=uuid.uuid4(),
        project_id=access.project_id,
        url=url,
        description=data.description,
        event_kinds=data.events,
        secret=secret,
        enabled=True,
        created_at=utc_now(),
    )
    session.add(endpoint)
    event_service.record(
        session,
        "webhook.endpoint_created",
        project_id=access.project_id,
        subject_id=endpoint.id,
        actor=access.principal,
        data={"url_origin": _origin(url), "events": data.events},
    )
    await session.flush()
    return endpoint, secret


async def list_endpoints(
    session: AsyncSession, *, access: ProjectAccess, limit: int, cursor: str | None
) -> tuple[list[WebhookEndpoint], str | None]:
    """The project's endpoints, newest first (never their secrets)."""
    rows = await EndpointRepository(session).list_for_project(
        access.project_id, after=decode_keyset(cursor), limit=limit + 1
    )
    return page_of(rows, limit=limit, position=lambda row: keyset(row.created_at, row.id))


async def get_endpoint(
    session: AsyncSession, *, principal: Principal, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    return await _endpoint_for_admin(session, principal=principal, endpoint_id=endpoint_id)


async def update_endpoint(
    session: AsyncSession,
    *,
    principal: Principal,
    endpoint_id: uuid.UUID,
    data: WebhookUpdate,
    settings: WebhookSettings,
) -> WebhookEndpoint:
    """Change the URL, kinds, description or enabled flag. Disabling fails waiting deliveries;
    enabling forgets past failures."""
    endpoint = await _endpoint_for_admin(session, principal=principal, endpoint_id=endpoint_id)
    values: dict[str, Any] = {}
    if data.url is not None:
        values["url"] = _checked_url(data.url, settings)
    if data.events is not None:
        values["event_kinds"] = data.events
    if "description" in data.model_fields_set:
        values["description"] = data.description
    if data.enabled is not None and data.enabled != endpoint.enabled:
        values["enabled"] = data.enabled
        values["disabled_reason"] = None if data.enabled else "disabled through the API"
        values["failing_since"] = None
    if not values:
        return endpoint
    updated = await EndpointRepository(session).update(endpoint.id, **values)
    if updated is None:  # deleted meanwhile
        raise WebhookNotFound()
    if values.get("enabled") is False:
        await DeliveryRepository(session).fail_waiting(
            endpoint.id, now=utc_now(), reason="the endpoint was disabled"
        )
    change: dict[str, Any] = {"fields": sorted(values.keys() - {"disabled_reason"})}
    if "url" in values:
        change["url_origin"] = _origin(values["url"])
    event_service.record(
        session,
        "webhook.endpoint_updated",
        project_id=endpoint.project_id,
        subject_id=endpoint.id,
        actor=principal,
        data=change,
    )
    return updated


async def delete_endpoint(
    session: AsyncSession, *, principal: Principal, endpoint_id: uuid.UUID
) -> None:
    """Delete the endpoint with its deliveries and their log."""
    endpoint = await _endpoint_for_admin(session, principal=principal, endpoint_id=endpoint_id)
    await EndpointRepository(session).delete(endpoint.id)
    event_service.record(
        session,
        "webhook.endpoint_deleted",
        project_id=endpoint.project_id,
        subject_id=endpoint.id,
        actor=principal,
        data={"url_origin": _origin(endpoint.url)},
    )


async def rotate_secret(
    session: AsyncSession,
    *,
    principal: Principal,
    endpoint_id: uuid.UUID,
    settings: WebhookSettings,
) -> tuple[WebhookEndpoint, str]:
    """A new secret; the current one keeps signing alongside it for `secret_grace_s`."""
    endpoint = await _endpoint_for_admin(session, principal=principal, endpoint_id=endpoint_id)
    secret = new_secret()
    expires = utc_now() + timedelta(seconds=settings.secret_grace_s)
    keep_old = settings.secret_grace_s > 0
    rotated = await EndpointRepository(session).update(
        endpoint.id,
        WebhookEndpoint.secret == endpoint.secret,  # two rotations at once: one wins
        secret=secret,
        previous_secret=endpoint.secret if keep_old else None,
        previous_secret_expires_at=expires if keep_old else None,
    )
    if rotated is None:
        raise SecretRotatedConcurrently("rotate again to get a secret that is in use")
    event_service.record(
        session,
        "webhook.secret_rotated",
        project_id=endpoint.project_id,
        subject_id=endpoint.id,
        actor=principal,
        data={"previous_secret_expires_at": expires.isoformat() if keep_old else None},
    )
    return rotated, secret


# --- the delivery log -------------------------------------------------------------------------


async def list_deliveries(
    session: AsyncSession,
    *,
    principal: Principal,
    endpoint_id: uuid.UUID,
    state: DeliveryState | None,
    event_type: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[WebhookDelivery], str | None]:
    """The endpoint's deliveries, newest first."""
    endpoint = await _endpoint_for_admin(session, principal=principal, endpoint_id=endpoint_id)
    rows = await DeliveryRepository(session).list_for_endpoint(
        endpoint.id,
        state=state,
        event_type=event_type,
        after=decode_keyset(cursor),
        limit=limit + 1,
    )
    return page_of(rows, limit=limit, position=lambda row: keyset(row.created_at, row.id))


async def get_delivery(
    session: AsyncSession,
    *,
    principal: Principal,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
    """One delivery with the log of its attempts."""
    endpoint = await _endpoint_for_admin(session, principal=principal, endpoint_id=endpoint_id)
    repository = DeliveryRepository(session)
    delivery = await repository.get(endpoint.id, delivery_id)
    if delivery is None:
        raise DeliveryNotFound()
    return delivery, list(await repository.attempts(delivery.id))


async def redeliver(
    session: AsyncSession,
    *,
    principal: Principal,
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
) -> WebhookDelivery:
    """Attempt the delivery again now, with the same `webhook-id` and body. A finished one gets
    a fresh retry schedule; a waiting one just moves up."""
    endpoint = await _endpoint_for_admin(session, principal=principal, endpoint_id=endpoint_id)
    repository = DeliveryRepository(session)
    delivery = await repository.get(endpoint.id, delivery_id)
    if delivery is None:
        raise DeliveryNotFound()
    if not endpoint.enabled:
        raise WebhookDisabled('enable the endpoint first (PATCH {"enabled": true})')
    publisher = dispatch.installed()
    again = await repository.redeliver(delivery.id, now=utc_now(), dispatched=publisher is not None)
    if again is None:
        raise DeliveryInFlight("wait for the attempt under way to finish")
    event_service.record(
        session,
        "webhook.delivery_redelivered",
        project_id=endpoint.project_id,
        subject_id=endpoint.id,
        actor=principal,
        data={"delivery_id": str(delivery.id), "event_type": delivery.event_type},
    )
    if publisher is not None:
        after_commit(session, functools.partial(publisher.publish_soon, [again.id]))
    return again


# --- the worker side --------------------------------------------------------------------------


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


def signing_secrets(endpoint: WebhookEndpoint, *, now: datetime) -> tuple[str, ...]:
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        return endpoint.secret, endpoint.previous_secret
    return (endpoint.secret,)


async def claim(
    session: AsyncSession, delivery_id: uuid.UUID, *, settings: WebhookSettings
) -> Claim | str:
    """Claim a due delivery for one attempt, or say why not: `gone`, `endpoint_disabled`,
    `busy` (its endpoint has no free slot; the scheduler publishes it again) or
    `not_available` (not due, already claimed, or finished)."""
    now = utc_now()
    endpoint = await EndpointRepository(session).lock_for_delivery(delivery_id)
    if endpoint is None:
        return "gone"
    deliveries = DeliveryRepository(session)
    if not endpoint.enabled:
        await deliveries.fail_waiting(
            endpoint.id, now=now, reason="the endpoint is disabled", delivery_id=delivery_id
        )
        return "endpoint_disabled"
    # A failing endpoint gets one attempt at a time: a hanging receiver holds one slot, not K.
    slots = settings.endpoint_concurrency if endpoint.failing_since is None else 1
    if await deliveries.count_in_flight(endpoint.id, now=now) >= slots:
        await deliveries.leave_to_scheduler(delivery_id, now=now)
        return "busy"
    lease = timedelta(seconds=settings.timeout_s + settings.lease_grace_s)
    delivery = await deliveries.claim(delivery_id, now=now, until=now + lease)
    if delivery is None:
        return "not_available"
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
        return "attempts_used_up"
    return Claim(
        delivery_id=delivery.id,
        endpoint_id=endpoint.id,
        project_id=endpoint.project_id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        attempt=delivery.attempt,
        schedule_start_attempt=delivery.schedule_start_attempt,
        url=endpoint.url,
        secrets=signing_secrets(endpoint, now=now),
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


# --- the scheduler side -----------------------------------------------------------------------


async def claim_for_dispatch(
    session: AsyncSession, *, settings: WebhookSettings, redispatch: bool, limit: int
) -> Sequence[uuid.UUID]:
    """Due deliveries to publish (never published, or long ago when `redispatch`), within each
    endpoint's free slots."""
    now = utc_now()
    return await DeliveryRepository(session).claim_for_dispatch(
        now=now,
        stale_before=now - timedelta(seconds=settings.redispatch_after_s),
        redispatch=redispatch,
        concurrency=settings.endpoint_concurrency,
        limit=limit,
    )


async def forget_dispatch(session: AsyncSession, delivery_ids: Sequence[uuid.UUID]) -> None:
    await DeliveryRepository(session).forget_dispatch(delivery_ids)
