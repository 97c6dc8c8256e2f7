"""Submit's one-statement write (`app/tasks/intake.py`) and the API-key principals it relies on:
the rows are exactly those the session-based write made, and remembered keys stay safe."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import ApiKey
from app.core.config import Settings
from app.core.db import transaction, utc_now
from app.events.models import ActorType, Event
from app.main import create_app
from app.projects.models import Project
from app.tasks.models import Task
from app.webhooks.models import WebhookDelivery
from tests.factories import auth_headers, make_api_key, make_project, make_user
from tests.integration.webhooks.conftest import make_endpoint
from tests.proxy import Proxy


async def _project_and_key(session: AsyncSession) -> tuple[Project, ApiKey, dict[str, str]]:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    api_key, secret = await make_api_key(session, project)
    return project, api_key, {"Authorization": f"Bearer {secret}"}


async def _submit(
    client: httpx.AsyncClient, project: Project, headers: dict[str, str], **extra: str
) -> httpx.Response:
    return await client.post(
        f"/v1/projects/{project.id}/tasks",
        json={"type": "echo", "input": {"n": 1}},
        headers={**headers, **extra},
    )


async def _remembered_key_of_a_deleted_project(
    client: httpx.AsyncClient, session: AsyncSession
) -> tuple[Project, dict[str, str]]:
    """A key this process has just used, of a project another process then deleted."""
    project, _, headers = await _project_and_key(session)
    assert (await _submit(client, project, headers)).status_code == 202
    await session.execute(delete(Project).where(Project.id == project.id))
    return project, headers


class TestOneStatementSubmit:
    async def test_writes_the_task_with_sql_nulls_and_its_event_with_the_request_id(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        project, api_key, headers = await _project_and_key(session)

        response = await _submit(client, project, headers, **{"X-Request-ID": "req-intake-1"})

        assert response.status_code == 202, response.text
        task_id = uuid.UUID(response.json()["id"])
        nulls = await session.execute(
            text("SELECT result IS NULL, error IS NULL, input FROM tasks WHERE id = :id"),
            {"id": task_id},
        )
        assert nulls.one() == (True, True, {"n": 1})  # SQL NULL, not the JSON value null
        event = await session.scalar(select(Event).where(Event.subject_id == task_id))
        assert event is not None
        assert event.kind == "task.created"
        assert (event.actor_type, event.actor_id) == (ActorType.api_key, api_key.id)
        assert event.request_id == "req-intake-1"
        assert event.data == {"type": "echo", "priority": "default"}
        task = await session.get_one(Task, task_id)
        assert task.request_id == "req-intake-1"
        assert task.created_by == api_key.id

    async def test_a_subscribed_endpoint_gets_the_task_as_the_api_shows_it(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        db: async_sessionmaker[AsyncSession],
    ) -> None:
        project, _, headers = await _project_and_key(session)
        endpoint = await make_endpoint(db, project, "https://example.com/hook", events=["task.*"])
        await make_endpoint(db, project, "https://example.com/all")
        await make_endpoint(db, project, "https://example.com/other", events=["file.created"])
        await make_endpoint(db, project, "https://example.com/off", enabled=False)

        response = await _submit(client, project, headers, **{"X-Request-ID": "req-intake-2"})

        assert response.status_code == 202
        task_id = uuid.UUID(response.json()["id"])
        event = await session.scalar(select(Event).where(Event.subject_id == task_id))
        assert event is not None
        rows = (
            await session.scalars(
                select(WebhookDelivery).where(WebhookDelivery.event_id == event.id)
            )
        ).all()
        # `task.*` is not a kind: only the endpoint subscribed to everything gets one.
        assert len(rows) == 1
        assert rows[0].endpoint_id != endpoint.id
        assert rows[0].event_type == "task.created"
        assert rows[0].request_id == "req-intake-2"
        assert rows[0].payload == {
            "type": "task.created",
            "timestamp": event.at.isoformat().replace("+00:00", "Z"),
            "data": response.json(),
        }

    async def test_a_replay_writes_no_second_event_or_delivery(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        db: async_sessionmaker[AsyncSession],
    ) -> None:
        project, _, headers = await _project_and_key(session)
        await make_endpoint(db, project, "https://example.com/all")

        first = await _submit(client, project, headers, **{"Idempotency-Key": "once"})
        again = await _submit(client, project, headers, **{"Idempotency-Key": "once"})

        assert (first.status_code, again.status_code) == (202, 200)
        assert again.json()["id"] == first.json()["id"]
        task_id = uuid.UUID(first.json()["id"])
        events = await session.scalar(
            select(func.count()).select_from(Event).where(Event.subject_id == task_id)
        )
        deliveries = await session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .join(Event, Event.id == WebhookDelivery.event_id)
            .where(Event.subject_id == task_id)
        )
        assert (events, deliveries) == (1, 1)


class TestRememberedApiKeys:
    async def test_a_key_revoked_by_another_process_stops_working_within_a_second(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        project, api_key, headers = await _project_and_key(session)
        assert (await _submit(client, project, headers)).status_code == 202  # remembered now

        # Another API process revokes it: this one hears nothing, its memory simply expires.
        await session.execute(
            update(ApiKey).where(ApiKey.id == api_key.id).values(revoked_at=utc_now())
        )
        await asyncio.sleep(1.05)

        refused = await _submit(client, project, headers)
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"

    async def test_a_key_revoked_here_stops_working_at_once(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        api_key, secret = await make_api_key(session, project)
        headers = {"Authorization": f"Bearer {secret}"}
        assert (await _submit(client, project, headers)).status_code == 202

        revoked = await client.delete(
            f"/v1/projects/{project.id}/api-keys/{api_key.id}", headers=auth_headers(owner)
        )

        assert revoked.status_code == 204
        assert (await _submit(client, project, headers)).status_code == 401

    async def test_a_project_deleted_elsewhere_is_a_404_not_a_500(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        project, headers = await _remembered_key_of_a_deleted_project(client, session)

        gone = await _submit(client, project, headers)
        assert gone.status_code == 404
        assert gone.headers["content-type"] == "application/problem+json"
        assert gone.json()["type"].endswith("/project-not-found")

    async def test_an_upload_to_a_project_deleted_elsewhere_is_a_404_not_a_500(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        project, headers = await _remembered_key_of_a_deleted_project(client, session)

        gone = await client.post(
            f"/v1/projects/{project.id}/files:upload",
            files={"file": ("a.txt", b"hello", "text/plain")},
            headers=headers,
        )
        assert gone.status_code == 404, gone.text
        assert gone.json()["type"].endswith("/project-not-found")


class TestDatabaseConnectionsLost:
    async def test_a_pooled_connection_the_network_dropped_is_replaced_before_use(
        self,
        settings: Settings,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
    ) -> None:
        async with transaction(live_db) as session:
            _, secret = await make_api_key(session, live_project)
        headers = {"Authorization": f"Bearer {secret}"}
        with Proxy.to(settings.database.url) as proxy:
            proxied = settings.model_copy(
                update={
                    "database": settings.database.model_copy(
                        update={"url": proxy.url(settings.database.url), "pool_size": 1}
                    )
                }
            )
            app = create_app(proxied)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://taskgate.test"
                ) as client:
                    first = await _submit(client, live_project, headers)
                    assert proxy.cut() >= 1  # the pooled connection, reset
                    await asyncio.sleep(0.2)  # the reset has reached the pool's connection

                    # The key is remembered (no lookup): the write is the first use of the pool.
                    second = await _submit(client, live_project, headers)

        assert first.status_code == 202, first.text
        assert second.status_code == 202, second.text
        async with live_db() as session:
            count = await session.scalar(
                select(func.count()).select_from(Task).where(Task.project_id == live_project.id)
            )
        assert count == 2


class TestDatabaseOutOfConnections:
    async def test_a_request_that_cannot_get_a_connection_is_a_503_to_retry(
        self,
        settings: Settings,
        live_db: async_sessionmaker[AsyncSession],
        live_project: Project,
    ) -> None:
        async with transaction(live_db) as session:
            _, secret = await make_api_key(session, live_project)
        tiny = settings.model_copy(
            update={
                "database": settings.database.model_copy(
                    update={"pool_size": 1, "max_overflow": 0, "pool_timeout_s": 0.2}
                )
            }
        )
        app = create_app(tiny)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with (
                httpx.AsyncClient(transport=transport, base_url="http://taskgate.test") as client,
                app.state.engine.connect() as held,
            ):
                await held.execute(text("SELECT 1"))  # the pool's only connection, taken

                response = await _submit(
                    client, live_project, {"Authorization": f"Bearer {secret}"}
                )

        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "1"
        assert response.json()["type"].endswith("/database-unavailable")
        async with live_db() as session:
            count = await session.scalar(
                select(func.count()).select_from(Task).where(Task.project_id == live_project.id)
            )
        assert count == 0
