"""`record()` and `GET /v1/projects/{id}/events`: filters, order, cursor pagination."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.principal import Principal
from app.core.context import request_id_var
from app.events import service as event_service
from app.events.models import ActorType, Event
from app.projects.models import Project, Role
from tests.factories import add_member, auth_headers, make_api_key, make_project, make_user


class TestRecord:
    async def test_takes_the_request_id_from_the_context(self, session: AsyncSession) -> None:
        token = request_id_var.set("req-42")
        try:
            event = event_service.record(
                session, "thing.happened", project_id=None, subject_id=None, actor=None
            )
        finally:
            request_id_var.reset(token)

        await session.flush()
        assert event.request_id == "req-42"
        assert event.actor_type is ActorType.system
        assert event.actor_id is None

    async def test_names_a_user_or_an_api_key_as_the_actor(self, session: AsyncSession) -> None:
        user = await make_user(session)
        project = await make_project(session, owner=user)
        api_key, _ = await make_api_key(session, project)

        by_user = event_service.record(
            session, "a", project_id=project.id, subject_id=None, actor=Principal.for_user(user)
        )
        by_key = event_service.record(
            session,
            "b",
            project_id=project.id,
            subject_id=None,
            actor=Principal.for_api_key(api_key),
        )

        await session.flush()
        assert (by_user.actor_type, by_user.actor_id) == (ActorType.user, user.id)
        assert (by_key.actor_type, by_key.actor_id) == (ActorType.api_key, api_key.id)

    async def test_redacts_secret_looking_values_at_any_depth(self, session: AsyncSession) -> None:
        event = event_service.record(
            session,
            "webhook.created",
            project_id=None,
            subject_id=None,
            actor=None,
            data={
                "url": "https://example.com/hook",
                "secret": "whsec_abc",
                "nested": [{"Password": "hunter2", "name": "kept"}],
            },
        )

        await session.flush()
        assert event.data == {
            "url": "https://example.com/hook",
            "secret": "[redacted]",
            "nested": [{"Password": "[redacted]", "name": "kept"}],
        }


async def _events(
    session: AsyncSession,
    project: Project,
    count: int,
    *,
    kind: str | None = None,
    subject_id: uuid.UUID | None = None,
) -> list[Event]:
    events = [
        event_service.record(
            session,
            kind or f"test.{index}",
            project_id=project.id,
            subject_id=subject_id,
            actor=None,
        )
        for index in range(count)
    ]
    await session.flush()
    return events


class TestListEvents:
    async def test_lists_newest_first_with_the_documented_fields(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        older, newer = await _events(session, project, 2)
        older.at = newer.at - timedelta(seconds=1)
        await session.flush()

        response = await client.get(
            f"/v1/projects/{project.id}/events", headers=auth_headers(owner)
        )

        assert response.status_code == 200
        items = response.json()["items"]
        assert [item["id"] for item in items] == [str(newer.id), str(older.id)]
        assert set(items[0]) >= {"id", "kind", "actor", "subject_id", "data", "request_id", "at"}
        assert items[0]["actor"] == {"type": "system", "id": None}

    async def test_filters_by_kind_subject_and_time(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        subject = uuid.uuid4()
        [old] = await _events(session, project, 1, kind="task.created", subject_id=subject)
        old.at = datetime.now(UTC) - timedelta(days=2)
        [wanted] = await _events(session, project, 1, kind="task.created", subject_id=subject)
        await _events(session, project, 1, kind="task.created")
        await _events(session, project, 1, kind="task.failed", subject_id=subject)

        response = await client.get(
            f"/v1/projects/{project.id}/events",
            params={
                "kind": "task.created",
                "subject_id": str(subject),
                "since": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
            },
            headers=auth_headers(owner),
        )

        assert [item["id"] for item in response.json()["items"]] == [str(wanted.id)]

    async def test_pages_through_events_of_the_same_instant_without_gaps_or_repeats(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        events = await _events(session, project, 5)
        for event in events:
            event.at = events[0].at
        await session.flush()
        seen: list[str] = []
        cursor: str | None = None

        for _ in range(5):
            params: dict[str, str | int] = {"limit": 2}
            if cursor is not None:
                params["cursor"] = cursor
            page = (
                await client.get(
                    f"/v1/projects/{project.id}/events", params=params, headers=auth_headers(owner)
                )
            ).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break

        assert sorted(seen) == sorted(str(event.id) for event in events)
        assert len(seen) == len(set(seen)) == 5

    async def test_a_viewer_and_a_read_only_key_can_read_the_log(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        project = await make_project(session, owner=await make_user(session))
        viewer = await make_user(session)
        await add_member(session, project, viewer, Role.viewer)
        _, secret = await make_api_key(session, project, scopes=["read"])
        url = f"/v1/projects/{project.id}/events"

        by_viewer = await client.get(url, headers=auth_headers(viewer))
        by_key = await client.get(url, headers=auth_headers(secret))

        assert by_viewer.status_code == by_key.status_code == 200

    async def test_webhook_events_are_for_admins_and_owners_only(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        viewer, member, admin = [await make_user(session) for _ in range(3)]
        await add_member(session, project, viewer, Role.viewer)
        await add_member(session, project, member, Role.member)
        await add_member(session, project, admin, Role.admin)
        _, read_key = await make_api_key(session, project, scopes=["read"])
        for kind in ("task.created", "webhook.delivery_failed", "webhook.endpoint_created"):
            event_service.record(
                session, kind, project_id=project.id, subject_id=uuid.uuid4(), actor=None
            )
        await session.flush()
        url = f"/v1/projects/{project.id}/events"

        def kinds(response: httpx.Response) -> set[str]:
            return {item["kind"] for item in response.json()["items"]}

        for caller in (viewer, member, read_key):
            seen = await client.get(url, headers=auth_headers(caller))
            asked = await client.get(
                url, params={"kind": "webhook.delivery_failed"}, headers=auth_headers(caller)
            )
            assert kinds(seen) == {"task.created"}
            assert asked.json()["items"] == []
        for caller in (admin, owner):
            seen = await client.get(url, headers=auth_headers(caller))
            assert kinds(seen) >= {"webhook.delivery_failed", "webhook.endpoint_created"}

    @pytest.mark.parametrize(
        ("params", "status"),
        [
            ({"since": "2026-01-01T00:00:00"}, 422),  # no time zone
            ({"since": "yesterday"}, 422),
            ({"subject_id": "not-a-uuid"}, 422),
            ({"kind": "k" * 65}, 422),
            ({"cursor": "definitely-not-a-cursor"}, 400),
            ({"cursor": "eyJhdCI6ICIyMDI2LTAxLTAxVDAwOjAwOjAwWiIsICJpZCI6IDF9"}, 400),
            ({"cursor": "x" * 513}, 422),
            ({"limit": 1000}, 422),
        ],
    )
    async def test_bad_query_parameters_are_4xx_problems(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        params: dict[str, str | int],
        status: int,
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)

        response = await client.get(
            f"/v1/projects/{project.id}/events", params=params, headers=auth_headers(owner)
        )

        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"
