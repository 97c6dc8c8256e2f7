"""Webhook endpoints, their delivery log, redelivery and secret rotation (all need `admin`)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from app.auth.dependencies import CurrentPrincipal
from app.auth.exceptions import InvalidCredentials
from app.core.dependencies import SessionDep, SettingsDep
from app.core.errors import error_responses
from app.core.pagination import CursorQuery, InvalidCursor, LimitQuery, Page
from app.projects.dependencies import AdminAccess
from app.projects.exceptions import InsufficientRole, ProjectNotFound
from app.webhooks import service as webhook_service
from app.webhooks.exceptions import (
    DeliveryInFlight,
    DeliveryNotFound,
    InvalidWebhookUrl,
    SecretRotatedConcurrently,
    WebhookDisabled,
    WebhookLimitReached,
    WebhookNotFound,
)
from app.webhooks.models import DeliveryState
from app.webhooks.schemas import (
    DeliveryDetail,
    DeliveryRead,
    WebhookCreate,
    WebhookRead,
    WebhookUpdate,
    WebhookWithSecret,
)

router = APIRouter(tags=["webhooks"])

_ENDPOINT = (InvalidCredentials, InsufficientRole, WebhookNotFound)


def _with_secret(read: WebhookRead, secret: str) -> WebhookWithSecret:
    return WebhookWithSecret(**read.model_dump(), secret=secret)


@router.get(
    "/projects/{project_id}/webhooks",
    responses=error_responses(InvalidCredentials, InsufficientRole, ProjectNotFound, InvalidCursor),
)
async def list_webhooks(
    access: AdminAccess,
    session: SessionDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[WebhookRead]:
    """The project's webhook endpoints, newest first (never their secrets). Needs `admin`."""
    rows, next_cursor = await webhook_service.list_endpoints(
        session, access=access, limit=limit, cursor=cursor
    )
    return Page(items=[WebhookRead.of(row) for row in rows], next_cursor=next_cursor)


@router.post(
    "/projects/{project_id}/webhooks",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        InvalidCredentials,
        InsufficientRole,
        ProjectNotFound,
        InvalidWebhookUrl,
        WebhookLimitReached,
    ),
)
async def create_webhook(
    data: WebhookCreate, access: AdminAccess, session: SessionDep, settings: SettingsDep
) -> WebhookWithSecret:
    """Add an endpoint that receives the project's events of the kinds in `events` (`*`: all).

    Deliveries are signed per the Standard Webhooks specification with `secret` (`whsec_…`),
    which is shown only here and on rotation. Needs `admin`.
    """
    endpoint, secret = await webhook_service.create_endpoint(
        session, access=access, data=data, settings=settings.webhooks
    )
    return _with_secret(WebhookRead.of(endpoint), secret)


@router.get("/webhooks/{endpoint_id}", responses=error_responses(*_ENDPOINT))
async def get_webhook(
    endpoint_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> WebhookRead:
    """One endpoint (without its secret). Needs `admin` in its project."""
    endpoint = await webhook_service.get_endpoint(
        session, principal=principal, endpoint_id=endpoint_id
    )
    return WebhookRead.of(endpoint)


@router.patch("/webhooks/{endpoint_id}", responses=error_responses(*_ENDPOINT, InvalidWebhookUrl))
async def update_webhook(
    endpoint_id: uuid.UUID,
    data: WebhookUpdate,
    session: SessionDep,
    principal: CurrentPrincipal,
    settings: SettingsDep,
) -> WebhookRead:
    """Change the URL, event kinds, description, or enable/disable the endpoint.

    Disabling fails its waiting deliveries; enabling forgets past failures (redeliver what you
    need). Needs `admin`.
    """
    endpoint = await webhook_service.update_endpoint(
        session,
        principal=principal,
        endpoint_id=endpoint_id,
        data=data,
        settings=settings.webhooks,
    )
    return WebhookRead.of(endpoint)


@router.delete(
    "/webhooks/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(*_ENDPOINT),
)
async def delete_webhook(
    endpoint_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
) -> None:
    """Delete the endpoint, its deliveries and their log. Needs `admin`."""
    await webhook_service.delete_endpoint(session, principal=principal, endpoint_id=endpoint_id)


@router.post(
    "/webhooks/{endpoint_id}/rotate-secret",
    responses=error_responses(*_ENDPOINT, SecretRotatedConcurrently),
)
async def rotate_webhook_secret(
    endpoint_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal, settings: SettingsDep
) -> WebhookWithSecret:
    """A new signing secret. The old one keeps signing too (a second signature in
    `webhook-signature`) until `previous_secret_expires_at`, so receivers can switch without
    losing a delivery. Needs `admin`."""
    endpoint, secret = await webhook_service.rotate_secret(
        session, principal=principal, endpoint_id=endpoint_id, settings=settings.webhooks
    )
    return _with_secret(WebhookRead.of(endpoint), secret)


@router.get(
    "/webhooks/{endpoint_id}/deliveries",
    responses=error_responses(*_ENDPOINT, InvalidCursor),
)
async def list_webhook_deliveries(
    endpoint_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    status: DeliveryState | None = None,
    event_type: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+$")] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[DeliveryRead]:
    """The endpoint's deliveries, newest first: state, attempts, last answer, next attempt.
    Needs `admin`."""
    rows, next_cursor = await webhook_service.list_deliveries(
        session,
        principal=principal,
        endpoint_id=endpoint_id,
        state=status,
        event_type=event_type,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[DeliveryRead.of(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/webhooks/{endpoint_id}/deliveries/{delivery_id}",
    responses=error_responses(*_ENDPOINT, DeliveryNotFound),
)
async def get_webhook_delivery(
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> DeliveryDetail:
    """One delivery with its body and the log of every attempt (status code, latency, the
    start of the answer, error, when the next attempt was due). Needs `admin`."""
    delivery, attempts = await webhook_service.get_delivery(
        session, principal=principal, endpoint_id=endpoint_id, delivery_id=delivery_id
    )
    return DeliveryDetail.with_attempts(delivery, attempts)


@router.post(
    "/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(*_ENDPOINT, DeliveryNotFound, WebhookDisabled, DeliveryInFlight),
)
async def redeliver_webhook_delivery(
    endpoint_id: uuid.UUID,
    delivery_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
) -> DeliveryRead:
    """Send the delivery again now, with the same `webhook-id` and body (receivers deduplicate
    by `webhook-id`). A finished delivery gets a fresh retry schedule. Needs `admin`."""
    delivery = await webhook_service.redeliver(
        session, principal=principal, endpoint_id=endpoint_id, delivery_id=delivery_id
    )
    return DeliveryRead.of(delivery)
