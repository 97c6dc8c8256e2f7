"""The webhook routes over HTTP: endpoints, secrets, roles, hostile input, the delivery log."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.config import Settings
from app.core.db import utc_now
from app.projects.models import Project, Role
from app.webhooks.models import DeliveryState
from app.webhooks.sealing import is_sealed, unseal
from tests.factories import add_member, auth_headers, make_api_key, make_project, make_user
from tests.integration.webhooks.conftest import (
    deliveries_of,
    emit,
    events_of,
    make_endpoint,
    reload,
    reload_endpoint,
)

URL = "https://hooks.example.com/taskgate?token=abc123"
PROBLEM = "application/problem+json"


async def create(
    client: httpx.AsyncClient, owner: User, project: Project, **body: object
) -> httpx.Response:
    payload = {"url": URL, "events": ["task.succeeded", "task.failed"], **body}
    return await client.post(
        f"/v1/projects/{project.id}/webhooks", json=payload, headers=auth_headers(owner)
    )


class TestCreate:
    async def test_returns_the_endpoint_with_its_secret_once(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        owner_and_project: tuple[User, Project],
    ) -> None:
        owner, project = owner_and_project

        response = await create(
            client,
            owner,
            project,
            events=["task.failed", "task.succeeded", "task.failed"],
            description="billing",
        )

        assert response.status_code == 201, response.text
        body = response.json()
        assert body["secret"].startswith("whsec_")
        assert body["events"] == ["task.failed", "task.succeeded"]
        assert (body["url"], body["description"], body["enabled"]) == (URL, "billing", True)
        assert body["created_by"] == str(owner.id)
        again = await client.get(f"/v1/webhooks/{body['id']}", headers=auth_headers(owner))
        listed = await client.get(
            f"/v1/projects/{project.id}/webhooks", headers=auth_headers(owner)
        )
        assert "secret" not in again.json()
        assert [item["id"] for item in listed.json()["items"]] == [body["id"]]
        assert "secret" not in listed.json()["items"][0]
        [event] = await events_of(db, project)
        assert event.kind == "webhook.endpoint_created"
        assert event.data["url_origin"] == "https://hooks.example.com"
        assert body["secret"] not in json.dumps(event.data)
        assert "abc123" not in json.dumps(event.data)

    @pytest.mark.parametrize(
        "url",
        [
            "http://127.0.0.1:8080/",
            "http://localhost/",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:127.0.0.1]/",
            "http://2130706433/",
            "http://0x7f000001/",
            "file:///etc/passwd",
            "gopher://example.com/",
            "https://user:pass@example.com/",
            "not a url",
            "https://",
        ],
    )
    async def test_a_url_that_cannot_receive_webhooks_is_a_422_and_creates_nothing(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        owner_and_project: tuple[User, Project],
        url: str,
    ) -> None:
        owner, project = owner_and_project

        response = await create(client, owner, project, url=url)

        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["errors"][0]["loc"] == ["body", "url"]
        assert await events_of(db, project) == []

    async def test_the_number_of_endpoints_per_project_is_capped(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        owner_and_project: tuple[User, Project],
    ) -> None:
        owner, project = owner_and_project
        for _ in range(20):
            await make_endpoint(db, project, URL)

        response = await create(client, owner, project)

        assert response.status_code == 409
        assert response.json()["type"].endswith("/webhook-limit-reached")


P = "/v1/projects/{project}/webhooks"
W = "/v1/webhooks/{endpoint}"
HOSTILE = [
    ("POST", P, b'{"url": "https://a.example/\\u0000", "events": ["*"]}', 422),
    ("POST", P, b'{"url": "https://a.example/", "events": ["*"], "description": "\\u0000"}', 422),
    (
        "POST",
        P,
        b'{"url": "https://a.example/", "events": ["*"], "description": "' + b"d" * 501 + b'"}',
        422,
    ),
    ("POST", P, b'{"url": "https://a.example/", "events": ["task.exploded"]}', 422),
    ("POST", P, b'{"url": "https://a.example/", "events": ["webhook.delivery_failed"]}', 422),
    ("POST", P, b'{"url": "https://a.example/", "events": []}', 422),
    ("POST", P, b'{"url": "https://a.example/", "events": "*"}', 422),
    ("POST", P, b'{"url": "https://a.example/", "events": ["*"], "secret": "mine"}', 422),
    ("POST", P, b'{"url": "https://' + b"a" * 3000 + b'.example/", "events": ["*"]}', 422),
    ("POST", P, b'{"url": 42, "events": ["*"]}', 422),
    ("POST", P, b'{"url": "https://a.example/", "events": [' + b'"*",' * 5000 + b'"*"]}', 422),
    ("POST", P, b'{"url": "https://a.example/", "events": ["*"]' + b" " * 10, 422),
    ("PATCH", W, b'{"enabled": "maybe"}', 422),
    ("PATCH", W, b'{"url": "http://192.168.0.1/"}', 422),
    ("PATCH", W, b'{"description": "' + b"d" * 501 + b'"}', 422),
    ("GET", W + "/deliveries?status=lost", None, 422),
    ("GET", W + "/deliveries?event_type=a%00b", None, 422),
    ("GET", W + "/deliveries?cursor=%00", None, 400),
    ("GET", W + "/deliveries/not-a-uuid", None, 422),
    ("POST", W + "/deliveries/" + str(uuid.UUID(int=0)) + "/redeliver", None, 404),
    ("GET", "/v1/webhooks/not-a-uuid", None, 422),
    ("DELETE", "/v1/webhooks/" + str(uuid.UUID(int=1)), None, 404),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_input_is_a_client_error_and_changes_nothing(
    client: httpx.AsyncClient,
    db: async_sessionmaker[AsyncSession],
    owner_and_project: tuple[User, Project],
    method: str,
    path: str,
    body: bytes | None,
    status: int,
) -> None:
    owner, project = owner_and_project
    endpoint = await make_endpoint(db, project, URL)
    headers = {**auth_headers(owner), "content-type": "application/json"}

    response = await client.request(
        method, path.format(project=project.id, endpoint=endpoint.id), content=body, headers=headers
    )

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert await events_of(db, project) == []


class TestAccess:
    @pytest.mark.parametrize("role", [Role.member, Role.viewer])
    async def test_below_admin_it_is_a_403(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
        project: Project,
        role: Role,
    ) -> None:
        endpoint = await make_endpoint(db, project, URL)
        user = await make_user(session)
        await add_member(session, project, user, role)

        responses = [
            await client.get(f"/v1/projects/{project.id}/webhooks", headers=auth_headers(user)),
            await client.get(f"/v1/webhooks/{endpoint.id}", headers=auth_headers(user)),
            await client.post(
                f"/v1/webhooks/{endpoint.id}/rotate-secret", headers=auth_headers(user)
            ),
        ]

        assert [response.status_code for response in responses] == [403, 403, 403]

    async def test_an_api_key_cannot_manage_webhooks(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
        project: Project,
    ) -> None:
        endpoint = await make_endpoint(db, project, URL)
        _, key = await make_api_key(session, project)

        listed = await client.get(f"/v1/projects/{project.id}/webhooks", headers=auth_headers(key))
        deleted = await client.delete(f"/v1/webhooks/{endpoint.id}", headers=auth_headers(key))

        assert (listed.status_code, deleted.status_code) == (403, 403)

    async def test_an_admin_manages_them(
        self, client: httpx.AsyncClient, session: AsyncSession, project: Project
    ) -> None:
        admin = await make_user(session)
        await add_member(session, project, admin, Role.admin)

        response = await create(client, admin, project)

        assert response.status_code == 201

    async def test_another_projects_endpoint_is_a_404_like_an_unknown_one(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
        project: Project,
    ) -> None:
        endpoint = await make_endpoint(db, project, URL)
        outsider = await make_user(session)
        await make_project(session, owner=outsider)
        [delivery] = await deliveries_of(db, (await emit(db, project)).id)
        headers = auth_headers(outsider)

        responses = [
            await client.get(f"/v1/webhooks/{endpoint.id}", headers=headers),
            await client.patch(
                f"/v1/webhooks/{endpoint.id}", json={"enabled": False}, headers=headers
            ),
            await client.delete(f"/v1/webhooks/{endpoint.id}", headers=headers),
            await client.post(f"/v1/webhooks/{endpoint.id}/rotate-secret", headers=headers),
            await client.get(f"/v1/webhooks/{endpoint.id}/deliveries", headers=headers),
            await client.post(
                f"/v1/webhooks/{endpoint.id}/deliveries/{delivery.id}/redeliver", headers=headers
            ),
            await client.get(f"/v1/projects/{project.id}/webhooks", headers=headers),
            await client.get(f"/v1/webhooks/{uuid.uuid4()}", headers=headers),
        ]

        assert {response.status_code for response in responses} == {404}
        assert (await reload_endpoint(db, endpoint.id)).enabled


class TestUpdateAndDelete:
    async def test_patch_changes_what_it_names(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        owner_and_project: tuple[User, Project],
    ) -> None:
        owner, project = owner_and_project
        endpoint = await make_endpoint(db, project, URL, description="old")

        response = await client.patch(
            f"/v1/webhooks/{endpoint.id}",
            json={"url": "https://other.example.com/h", "events": ["*"], "description": None},
            headers=auth_headers(owner),
        )

        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["url"], body["events"], body["description"]) == (
            "https://other.example.com/h",
            ["*"],
            None,
        )
        [event] = await events_of(db, project)
        assert event.kind == "webhook.endpoint_updated"
        assert event.data == {
            "fields": ["description", "event_kinds", "url"],
            "url_origin": "https://other.example.com",
        }

    async def test_disabling_fails_waiting_deliveries_and_enabling_forgets_failures(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        owner_and_project: tuple[User, Project],
    ) -> None:
        owner, project = owner_and_project
        endpoint = await make_endpoint(db, project, URL, failing_since=utc_now())
        [delivery] = await deliveries_of(db, (await emit(db, project)).id)

        disabled = await client.patch(
            f"/v1/webhooks/{endpoint.id}", json={"enabled": False}, headers=auth_headers(owner)
        )
        enabled = await client.patch(
            f"/v1/webhooks/{endpoint.id}", json={"enabled": True}, headers=auth_headers(owner)
        )

        assert disabled.json()["enabled"] is False
        assert disabled.json()["disabled_reason"] == "disabled through the API"
        assert (await reload(db, delivery.id)).state == DeliveryState.failed
        assert enabled.json()["enabled"] is True
        assert (enabled.json()["disabled_reason"], enabled.json()["failing_since"]) == (None, None)

    async def test_delete_removes_the_endpoint_and_its_deliveries(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        owner_and_project: tuple[User, Project],
    ) -> None:
        owner, project = owner_and_project
        endpoint = await make_endpoint(db, project, URL)
        event = await emit(db, project)

        deleted = await client.delete(f"/v1/webhooks/{endpoint.id}", headers=auth_headers(owner))
        again = await client.get(f"/v1/webhooks/{endpoint.id}", headers=auth_headers(owner))

        assert (deleted.status_code, again.status_code) == (204, 404)
        assert await deliveries_of(db, event.id) == []
        assert [e.kind for e in await events_of(db, project)] == ["webhook.endpoint_deleted"]


class TestRotateSecret:
    async def test_returns_a_new_secret_and_keeps_the_old_one_signing_for_the_grace_period(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        owner_and_project: tuple[User, Project],
        settings: Settings,
    ) -> None:
        owner, project = owner_and_project
        created = (await create(client, owner, project)).json()

        response = await client.post(
            f"/v1/webhooks/{created['id']}/rotate-secret", headers=auth_headers(owner)
        )

        assert response.status_code == 200
        body = response.json()
        assert body["secret"].startswith("whsec_")
        assert body["secret"] != created["secret"]
        endpoint = await reload_endpoint(db, uuid.UUID(created["id"]))
        assert endpoint.previous_secret is not None
        stored = (endpoint.secret, endpoint.previous_secret)
        assert all(is_sealed(value) for value in stored)  # the database holds no secret
        assert body["secret"] not in stored
        assert created["secret"] not in stored
        assert [unseal(value, settings.webhooks) for value in stored] == [
            body["secret"],
            created["secret"],
        ]
        assert endpoint.previous_secret_expires_at is not None
        grace = endpoint.previous_secret_expires_at - utc_now()
        assert timedelta(hours=23) < grace <= timedelta(hours=24)
        [event] = [e for e in await events_of(db, project) if e.kind == "webhook.secret_rotated"]
        assert created["secret"] not in json.dumps(event.data)
        assert body["secret"] not in json.dumps(event.data)


class TestDeliveryLog:
    async def test_lists_deliveries_newest_first_filtered_and_paged(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        owner_and_project: tuple[User, Project],
    ) -> None:
        owner, project = owner_and_project
        endpoint = await make_endpoint(db, project, URL)
        events = [await emit(db, project, kind) for kind in ("task.succeeded", "task.failed") * 2]
        base = f"/v1/webhooks/{endpoint.id}/deliveries"

        first = await client.get(f"{base}?limit=3", headers=auth_headers(owner))
        second = await client.get(
            f"{base}?limit=3&cursor={first.json()['next_cursor']}", headers=auth_headers(owner)
        )
        failed_kind = await client.get(
            f"{base}?event_type=task.failed", headers=auth_headers(owner)
        )
        finished = await client.get(f"{base}?status=succeeded", headers=auth_headers(owner))

        ids = [item["event_id"] for item in first.json()["items"] + second.json()["items"]]
        assert ids == [str(event.id) for event in reversed(events)]
        assert second.json()["next_cursor"] is None
        assert {item["event_type"] for item in failed_kind.json()["items"]} == {"task.failed"}
        assert finished.json()["items"] == []
        item = first.json()["items"][0]
        assert (item["status"], item["attempt"], item["response_status"]) == ("pending", 0, None)

    async def test_a_delivery_shows_its_body(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        owner_and_project: tuple[User, Project],
    ) -> None:
        owner, project = owner_and_project
        endpoint = await make_endpoint(db, project, URL)
        [delivery] = await deliveries_of(db, (await emit(db, project, subject={"id": "t"})).id)

        response = await client.get(
            f"/v1/webhooks/{endpoint.id}/deliveries/{delivery.id}", headers=auth_headers(owner)
        )

        assert response.status_code == 200
        assert response.json()["payload"]["data"] == {"id": "t"}
        assert response.json()["attempts"] == []

    async def test_redeliver_answers_202_and_makes_a_failed_delivery_due_again(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        owner_and_project: tuple[User, Project],
    ) -> None:
        owner, project = owner_and_project
        endpoint = await make_endpoint(db, project, URL)
        [delivery] = await deliveries_of(db, (await emit(db, project)).id)
        async with db() as session, session.begin():
            row = await reload(db, delivery.id)
            row.state, row.attempt, row.next_attempt_at = DeliveryState.failed, 8, None
            await session.merge(row)

        response = await client.post(
            f"/v1/webhooks/{endpoint.id}/deliveries/{delivery.id}/redeliver",
            headers=auth_headers(owner),
        )

        assert response.status_code == 202, response.text
        assert response.json()["status"] == "pending"
        again = await reload(db, delivery.id)
        assert (again.state, again.schedule_start_attempt) == (DeliveryState.pending, 8)
        assert again.next_attempt_at is not None
        assert again.next_attempt_at <= utc_now()
        kinds = [event.kind for event in await events_of(db, project)]
        assert kinds == ["webhook.delivery_redelivered"]

    async def test_redeliver_to_a_disabled_endpoint_is_a_409(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        owner_and_project: tuple[User, Project],
    ) -> None:
        owner, project = owner_and_project
        endpoint = await make_endpoint(db, project, URL)
        [delivery] = await deliveries_of(db, (await emit(db, project)).id)
        await client.patch(
            f"/v1/webhooks/{endpoint.id}", json={"enabled": False}, headers=auth_headers(owner)
        )

        response = await client.post(
            f"/v1/webhooks/{endpoint.id}/deliveries/{delivery.id}/redeliver",
            headers=auth_headers(owner),
        )

        assert response.status_code == 409
        assert response.json()["type"].endswith("/webhook-disabled")

    async def test_another_endpoints_delivery_is_a_404(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        owner_and_project: tuple[User, Project],
    ) -> None:
        owner, project = owner_and_project
        endpoint = await make_endpoint(db, project, URL, events=["task.failed"])
        await make_endpoint(db, project, URL, events=["task.succeeded"])
        [other] = await deliveries_of(db, (await emit(db, project, "task.succeeded")).id)

        response = await client.get(
            f"/v1/webhooks/{endpoint.id}/deliveries/{other.id}", headers=auth_headers(owner)
        )

        assert response.status_code == 404
        assert response.json()["type"].endswith("/webhook-delivery-not-found")


class TestOpenApi:
    async def test_documents_every_webhook_route_and_its_errors(
        self, client: httpx.AsyncClient
    ) -> None:
        paths = (await client.get("/openapi.json")).json()["paths"]

        assert set(paths["/v1/projects/{project_id}/webhooks"]) == {"get", "post"}
        assert set(paths["/v1/webhooks/{endpoint_id}"]) == {"get", "patch", "delete"}
        assert "post" in paths["/v1/webhooks/{endpoint_id}/rotate-secret"]
        redeliver = paths["/v1/webhooks/{endpoint_id}/deliveries/{delivery_id}/redeliver"]["post"]
        assert {"202", "404", "409"} <= set(redeliver["responses"])
        created = paths["/v1/projects/{project_id}/webhooks"]["post"]["responses"]
        assert {"201", "403", "404", "409", "422"} <= set(created)
