"""Webhooks, the admin side: endpoints, the delivery log and redelivery.

Every route needs the `admin` role in the endpoint's project (API keys, `member` at most, never
manage or read webhooks); an endpoint of a project the caller is not in is a 404. Deliveries are
written by the outbox (`outbox.py`) with the event that causes them, attempted by workers
(`attempts.py`, `delivery.py`) and published by the scheduler (`scheduling.py`).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.core.config import WebhookSettings
from app.core.db import utc_now
from app.core.pagination import decode_keyset, keyset, page_of
from app.events import service as event_service
from app.projects import access as project_access
from app.projects import departures
from app.projects.access import ProjectAccess
from app.projects.departures import Departure
from app.projects.models import Role
from app.webhooks import outbox, targets
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
from app.webhooks.sealing import seal
from app.webhooks.signing import new_secret
from app.worker import enqueue


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
    await project_access.require_role(
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
        secret=seal(secret, settings),
        enabled=True,
        created_by=access.user_id,
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


def subscribe() -> None:
    """Disable the endpoints a user created when they leave a project or are deactivated
    (idempotent; every process that can remove members wires it, `wiring.subscribe_all`)."""
    departures.on_departure(disable_created_by)


async def disable_created_by(session: AsyncSession, departure: Departure) -> None:
    """Disable the endpoints the departing user created (in the project they leave, or in every
    one), fail their waiting deliveries and record `webhook.endpoint_disabled` for each: someone
    removed from a project keeps no copy of its events."""
    now = utc_now()
    reason = departure.reason.detail
    disabled = await EndpointRepository(session).disable_created_by(
        departure.user_id, project_id=departure.project_id, reason=reason
    )
    for endpoint in disabled:
        failed = await DeliveryRepository(session).fail_waiting(
            endpoint.id, now=now, reason=f"the endpoint was disabled: {reason}"
        )
        event_service.record(
            session,
            "webhook.endpoint_disabled",
            project_id=endpoint.project_id,
            subject_id=endpoint.id,
            actor=departure.actor,
            data={
                "reason": departure.reason.value,
                "created_by": str(departure.user_id),
                "failed_deliveries": failed,
            },
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
        secret=seal(secret, settings),
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
    dispatch = enqueue.available()
    again = await repository.redeliver(delivery.id, now=utc_now(), dispatched=dispatch)
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
    if dispatch:
        outbox.enqueue_deliveries(session, [again.id])
    return again
