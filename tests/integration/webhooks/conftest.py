from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.config import Settings, WebhookSettings
from app.core.db import transaction, utc_now
from app.events import service as event_service
from app.events.models import Event
from app.projects.models import Project
from app.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks.signing import new_secret
from tests.factories import make_project, make_user
from tests.integration.webhooks.receiver import Receiver, running_receiver


@pytest.fixture
def webhook_settings(settings: Settings) -> WebhookSettings:
    """Loopback receivers allowed, short timeouts, two immediate retries."""
    return settings.webhooks.model_copy(
        update={
            "allow_loopback": True,
            "timeout_s": 2.0,
            "lease_grace_s": 1.0,
            "retry_schedule_s": [0.0, 0.0],
        }
    )


@pytest.fixture
async def owner_and_project(db: async_sessionmaker[AsyncSession]) -> tuple[User, Project]:
    async with transaction(db) as session:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
    return owner, project


@pytest.fixture
def project(owner_and_project: tuple[User, Project]) -> Project:
    return owner_and_project[1]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as receiver:
        yield receiver


async def make_endpoint(
    db: async_sessionmaker[AsyncSession],
    project: Project,
    url: str,
    *,
    events: Sequence[str] = ("*",),
    **fields: Any,
) -> WebhookEndpoint:
    """An endpoint row as create would write it (any URL: the checks are at create and send)."""
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "project_id": project.id,
        "url": url,
        "event_kinds": list(events),
        "secret": new_secret(),
        "enabled": True,
        "created_at": utc_now(),
        **fields,
    }
    async with transaction(db) as session:
        endpoint = WebhookEndpoint(**values)
        session.add(endpoint)
    return endpoint


async def emit(
    db: async_sessionmaker[AsyncSession],
    project: Project,
    kind: str = "task.succeeded",
    *,
    subject: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> Event:
    """Record an event the way services do (deliveries join its transaction)."""
    async with transaction(db) as session:
        event = event_service.record(
            session,
            kind,
            project_id=project.id,
            subject_id=uuid.uuid4(),
            actor=None,
            data={},
            subject=subject,
            request_id=request_id,
        )
    return event


async def deliveries_of(
    db: async_sessionmaker[AsyncSession], event_id: uuid.UUID
) -> list[WebhookDelivery]:
    async with db() as session:
        rows = await session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.event_id == event_id)
            .order_by(WebhookDelivery.created_at)
        )
        return list(rows)


async def reload(db: async_sessionmaker[AsyncSession], delivery_id: uuid.UUID) -> WebhookDelivery:
    async with db() as session:
        return await session.get_one(WebhookDelivery, delivery_id, populate_existing=True)


async def reload_endpoint(
    db: async_sessionmaker[AsyncSession], endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    async with db() as session:
        return await session.get_one(WebhookEndpoint, endpoint_id, populate_existing=True)


async def attempts_of(
    db: async_sessionmaker[AsyncSession], delivery_id: uuid.UUID
) -> list[WebhookAttempt]:
    async with db() as session:
        rows = await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id)
            .order_by(WebhookAttempt.attempt)
        )
        return list(rows)


async def events_of(
    db: async_sessionmaker[AsyncSession], project: Project, prefix: str = "webhook."
) -> list[Event]:
    async with db() as session:
        rows = await session.scalars(
            select(Event)
            .where(Event.project_id == project.id, Event.kind.startswith(prefix))
            .order_by(Event.at, Event.id)
        )
        return list(rows)


@pytest.fixture
async def one_delivery(
    db: async_sessionmaker[AsyncSession], project: Project, receiver: Receiver
) -> WebhookDelivery:
    """A pending delivery of a `task.succeeded` event to `receiver`."""
    await make_endpoint(db, project, receiver.url)
    event = await emit(db, project, subject={"id": "task-1", "status": "succeeded"})
    [delivery] = await deliveries_of(db, event.id)
    return delivery
