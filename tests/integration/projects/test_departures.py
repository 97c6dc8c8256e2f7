"""What a member loses on leaving a project, and a user on deactivation: the API keys and
webhook endpoints they created, revoked and disabled with the removal, each with its event."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.db import transaction
from app.events.models import Event
from app.projects import departures
from app.projects.models import Project, Role
from app.webhooks.models import WebhookDelivery
from tests.factories import add_member, auth_headers, make_project, make_user
from tests.integration.webhooks.conftest import emit, reload_endpoint

HOOK_URL = "https://hooks.example.com/taskgate"


async def _create_key(client: httpx.AsyncClient, user: User, project: Project) -> tuple[str, str]:
    """A read-write key created through the API by `user`: its id and secret."""
    response = await client.post(
        f"/v1/projects/{project.id}/api-keys",
        json={"name": "mine", "scopes": ["read", "write"]},
        headers=auth_headers(user),
    )
    assert response.status_code == 201, response.text
    return response.json()["id"], response.json()["key"]


async def _create_webhook(client: httpx.AsyncClient, user: User, project: Project) -> uuid.UUID:
    """A webhook for every event kind, created through the API by `user`."""
    response = await client.post(
        f"/v1/projects/{project.id}/webhooks",
        json={"url": HOOK_URL, "events": ["*"]},
        headers=auth_headers(user),
    )
    assert response.status_code == 201, response.text
    assert response.json()["created_by"] == str(user.id)
    return uuid.UUID(response.json()["id"])


async def _key_works(client: httpx.AsyncClient, project: Project, key: str) -> int:
    response = await client.get(f"/v1/projects/{project.id}", headers=auth_headers(key))
    return response.status_code


async def _delivered_to(db: async_sessionmaker[AsyncSession], event: Event) -> set[uuid.UUID]:
    async with db() as session:
        rows = await session.scalars(
            select(WebhookDelivery.endpoint_id).where(WebhookDelivery.event_id == event.id)
        )
        return set(rows)


async def _events(session: AsyncSession, kind: str, subject_id: uuid.UUID | str) -> list[Event]:
    rows = await session.scalars(
        select(Event).where(Event.kind == kind, Event.subject_id == uuid.UUID(str(subject_id)))
    )
    return list(rows)


class TestRemovedMember:
    async def test_removing_an_admin_revokes_their_keys_and_disables_their_webhooks(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
    ) -> None:
        owner, leaver, stayer = [await make_user(session) for _ in range(3)]
        project = await make_project(session, owner=owner)
        await add_member(session, project, leaver, Role.admin)
        await add_member(session, project, stayer, Role.admin)
        leaver_key_id, leaver_key = await _create_key(client, leaver, project)
        _, stayer_key = await _create_key(client, stayer, project)
        leaver_hook = await _create_webhook(client, leaver, project)
        stayer_hook = await _create_webhook(client, stayer, project)
        assert await _key_works(client, project, leaver_key) == 200  # and now in the cache

        removed = await client.delete(
            f"/v1/projects/{project.id}/members/{leaver.id}", headers=auth_headers(owner)
        )

        assert removed.status_code == 204
        assert await _key_works(client, project, leaver_key) == 401
        assert await _key_works(client, project, stayer_key) == 200
        assert not (await reload_endpoint(db, leaver_hook)).enabled
        assert (await reload_endpoint(db, stayer_hook)).enabled
        later = await emit(db, project, "task.succeeded")
        assert await _delivered_to(db, later) == {stayer_hook}
        [revoked] = await _events(session, "project.api_key_revoked", leaver_key_id)
        assert revoked.data["reason"] == "creator_removed"
        [disabled] = await _events(session, "webhook.endpoint_disabled", leaver_hook)
        assert disabled.data["reason"] == "creator_removed"

    async def test_the_removal_itself_is_not_delivered_to_the_removed_members_webhook(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
    ) -> None:
        owner, leaver = await make_user(session), await make_user(session)
        project = await make_project(session, owner=owner)
        await add_member(session, project, leaver, Role.admin)
        leaver_hook = await _create_webhook(client, leaver, project)

        removed = await client.delete(
            f"/v1/projects/{project.id}/members/{leaver.id}", headers=auth_headers(owner)
        )

        assert removed.status_code == 204
        async with db() as reader:
            sent = await reader.scalars(
                select(WebhookDelivery.event_type).where(WebhookDelivery.endpoint_id == leaver_hook)
            )
            assert "project.member_removed" not in set(sent)

    async def test_a_member_who_leaves_loses_the_keys_they_created(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner, leaver = await make_user(session), await make_user(session)
        project = await make_project(session, owner=owner)
        await add_member(session, project, leaver, Role.admin)
        key_id, key = await _create_key(client, leaver, project)

        left = await client.delete(
            f"/v1/projects/{project.id}/members/{leaver.id}", headers=auth_headers(leaver)
        )

        assert left.status_code == 204
        assert await _key_works(client, project, key) == 401
        [revoked] = await _events(session, "project.api_key_revoked", key_id)
        assert revoked.data["reason"] == "creator_left"


class TestDeactivatedUser:
    async def test_deactivating_a_user_revokes_and_disables_what_they_created_everywhere(
        self,
        client: httpx.AsyncClient,
        db: async_sessionmaker[AsyncSession],
        session: AsyncSession,
    ) -> None:
        owner, leaver, stayer = [await make_user(session) for _ in range(3)]
        projects = [await make_project(session, owner=owner) for _ in range(2)]
        created = []
        for project in projects:
            await add_member(session, project, leaver, Role.admin)
            await add_member(session, project, stayer, Role.admin)
            created.append(
                (
                    (await _create_key(client, leaver, project))[1],
                    await _create_webhook(client, leaver, project),
                    (await _create_key(client, stayer, project))[1],
                    await _create_webhook(client, stayer, project),
                )
            )
        assert await _key_works(client, projects[0], created[0][0]) == 200

        async with transaction(db) as work:
            await departures.deactivate_user(work, user_id=leaver.id, actor=None)

        for project, (leaver_key, leaver_hook, stayer_key, stayer_hook) in zip(
            projects, created, strict=True
        ):
            assert await _key_works(client, project, leaver_key) == 401
            assert await _key_works(client, project, stayer_key) == 200
            assert not (await reload_endpoint(db, leaver_hook)).enabled
            later = await emit(db, project, "task.succeeded")
            assert await _delivered_to(db, later) == {stayer_hook}
        me = await client.get("/v1/users/me", headers=auth_headers(leaver))
        assert me.status_code == 401
        [event] = await _events(session, "user.deactivated", leaver.id)
        assert event.actor_id is None

    async def test_deactivating_twice_changes_nothing_more(
        self, db: async_sessionmaker[AsyncSession], session: AsyncSession
    ) -> None:
        user = await make_user(session)

        async with transaction(db) as work:
            await departures.deactivate_user(work, user_id=user.id, actor=None)
        async with transaction(db) as work:
            await departures.deactivate_user(work, user_id=user.id, actor=None)

        assert len(await _events(session, "user.deactivated", user.id)) == 1
