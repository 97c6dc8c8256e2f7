"""The outbox: deliveries are written in the transaction of the event that causes them."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.db import transaction
from app.events import service as event_service
from app.projects.models import Project
from app.webhooks.models import DeliveryState, WebhookDelivery, WebhookEndpoint
from tests.factories import auth_headers, make_project
from tests.integration.webhooks.conftest import deliveries_of, emit, make_endpoint

URL = "https://hooks.example.com/taskgate"


class TestFanOut:
    async def test_each_enabled_endpoint_subscribed_to_the_kind_gets_one_delivery(
        self, db: async_sessionmaker[AsyncSession], owner_and_project: tuple[User, Project]
    ) -> None:
        owner, project = owner_and_project
        async with transaction(db) as session:
            other_project = await make_project(session, owner=owner)
        exact = await make_endpoint(db, project, URL, events=["task.succeeded"])
        everything = await make_endpoint(db, project, URL, events=["*"])
        await make_endpoint(db, project, URL, events=["task.failed"])
        await make_endpoint(db, project, URL, events=["*"], enabled=False)
        await make_endpoint(db, other_project, URL, events=["*"])

        event = await emit(db, project, "task.succeeded")

        deliveries = await deliveries_of(db, event.id)
        assert {delivery.endpoint_id for delivery in deliveries} == {exact.id, everything.id}
        assert all(delivery.state == DeliveryState.pending for delivery in deliveries)
        assert all(delivery.next_attempt_at is not None for delivery in deliveries)

    async def test_the_body_is_frozen_with_the_subject_as_the_api_shows_it(
        self, db: async_sessionmaker[AsyncSession], project: Project
    ) -> None:
        await make_endpoint(db, project, URL)
        subject = {"id": str(uuid.uuid4()), "status": "succeeded", "result": {"n": 2**70}}

        event = await emit(db, project, subject=subject, request_id="req-42")

        [delivery] = await deliveries_of(db, event.id)
        assert delivery.payload == {
            "type": "task.succeeded",
            "timestamp": event.at.isoformat().replace("+00:00", "Z"),
            "data": subject,
        }
        assert delivery.request_id == "req-42"
        assert delivery.event_type == "task.succeeded"

    async def test_an_event_without_a_subject_carries_the_event_as_the_audit_log_shows_it(
        self, db: async_sessionmaker[AsyncSession], project: Project
    ) -> None:
        await make_endpoint(db, project, URL)

        event = await emit(db, project, "project.member_added")

        [delivery] = await deliveries_of(db, event.id)
        data = delivery.payload["data"]
        assert data["id"] == str(event.id)
        assert data["kind"] == "project.member_added"
        assert data["actor"] == {"type": "system", "id": None}

    async def test_nothing_is_written_when_the_transaction_rolls_back(
        self, db: async_sessionmaker[AsyncSession], project: Project
    ) -> None:
        await make_endpoint(db, project, URL)

        async def record_then_fail() -> None:
            async with transaction(db) as session:
                event_service.record(
                    session, "task.failed", project_id=project.id, subject_id=None, actor=None
                )
                await session.flush()  # the deliveries are written here…
                raise RuntimeError("…and undone with the event")

        with pytest.raises(RuntimeError):
            await record_then_fail()

        async with db() as session:
            count = await session.scalar(
                select(func.count())
                .select_from(WebhookDelivery)
                .join(WebhookEndpoint)
                .where(WebhookEndpoint.project_id == project.id)
            )
        assert count == 0

    @pytest.mark.parametrize(
        "kind", ["webhook.delivery_failed", "webhook.endpoint_disabled", "user.registered"]
    )
    async def test_kinds_that_are_not_deliverable_make_no_delivery(
        self, db: async_sessionmaker[AsyncSession], project: Project, kind: str
    ) -> None:
        await make_endpoint(db, project, URL, events=["*"])

        event = await emit(db, project, kind)

        assert await deliveries_of(db, event.id) == []


class TestTaskEvents:
    async def test_a_submitted_task_is_delivered_as_its_api_body_with_its_request_id(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        owner_and_project: tuple[User, Project],
    ) -> None:
        owner, project = owner_and_project
        await make_endpoint(db, project, URL, events=["task.created"])

        response = await client.post(
            f"/v1/projects/{project.id}/tasks",
            json={"type": "echo", "input": {"hello": "world"}},
            headers={**auth_headers(owner), "X-Request-ID": "submit-1"},
        )

        assert response.status_code == 202
        async with db() as session:
            [delivery] = (
                await session.scalars(
                    select(WebhookDelivery).where(WebhookDelivery.event_type == "task.created")
                )
            ).all()
        assert delivery.payload["data"] == response.json()
        assert delivery.request_id == "submit-1"
        assert delivery.dispatched_at is not None  # published right after commit
