"""Webhook helpers for tests against a running platform (e2e and chaos): admin, endpoints, rows."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

import httpx
from sqlalchemy import delete, select

from app.core.db import create_sessionmaker, transaction
from app.projects.models import Role
from app.webhooks.models import DeliveryState, WebhookDelivery, WebhookEndpoint
from tests.factories import add_member, auth_headers, make_user
from tests.platform import Platform


async def admin_headers(platform: Platform) -> dict[str, str]:
    """A user token of a new admin of the platform's project (API keys cannot manage webhooks)."""
    async with transaction(create_sessionmaker(platform.engine)) as session:
        user = await make_user(session)
        assert platform.project is not None
        await add_member(session, platform.project, user, Role.admin)
    return auth_headers(user)


async def create_endpoint(
    platform: Platform, headers: dict[str, str], url: str, events: Sequence[str]
) -> dict[str, str]:
    """Create an endpoint over HTTP; its body, with `secret`."""
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
        response = await client.post(
            f"/v1/projects/{platform.project_id}/webhooks",
            json={"url": url, "events": list(events)},
            headers=headers,
        )
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


async def deliveries(platform: Platform, endpoint_id: str) -> list[WebhookDelivery]:
    async with create_sessionmaker(platform.engine)() as session:
        rows = await session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == uuid.UUID(endpoint_id))
            .order_by(WebhookDelivery.created_at)
        )
        return list(rows)


async def wait_delivered(
    platform: Platform, endpoint_id: str, *, count: int, timeout_s: float
) -> list[WebhookDelivery]:
    """Poll until `count` deliveries of the endpoint succeeded; fail with their states."""
    deadline = time.monotonic() + timeout_s
    rows: list[WebhookDelivery] = []
    while time.monotonic() < deadline:
        rows = await deliveries(platform, endpoint_id)
        if sum(row.state == DeliveryState.succeeded for row in rows) >= count:
            return rows
        await asyncio.sleep(0.2)
    states = [(row.state.value, row.attempt, row.last_error) for row in rows]
    raise AssertionError(f"{count} deliveries not succeeded in {timeout_s}s: {states}")


async def remove_endpoints(platform: Platform) -> None:
    """Delete the project's endpoints (and deliveries): no retry outlives its test's receivers."""
    if platform.project is None:
        return
    async with transaction(create_sessionmaker(platform.engine)) as session:
        await session.execute(
            delete(WebhookEndpoint).where(WebhookEndpoint.project_id == platform.project_id)
        )
