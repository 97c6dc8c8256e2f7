"""A user outside a project can never read, list, infer or change anything in it.

Every route against every kind of outsider (another tenant, a removed member, another
project's key) is in the access matrix, `tests/integration/test_access_matrix.py`: a 404 like
that of an unknown id, and nothing changed. Here: what the matrix does not cover."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey
from app.projects.models import ProjectMember, Role
from tests.factories import add_member, auth_headers, make_api_key, make_project, make_user


class TestAnotherUsersProject:
    async def test_invalid_input_does_not_reveal_the_project_either(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        project = await make_project(session, owner=await make_user(session))
        stranger = await make_user(session)

        response = await client.post(
            f"/v1/projects/{project.id}/members",
            json={"email": "not an email", "role": "pope"},
            headers=auth_headers(stranger),
        )

        assert response.status_code == 404

    async def test_the_project_is_not_listed(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        project = await make_project(session, owner=await make_user(session))
        stranger = await make_user(session)
        await make_project(session, owner=stranger)

        response = await client.get("/v1/projects", headers=auth_headers(stranger))

        assert str(project.id) not in response.text


class TestObjectsOfAnotherProjectThroughYourOwn:
    async def test_another_projects_key_cannot_be_revoked_through_yours(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        me = await make_user(session)
        mine = await make_project(session, owner=me)
        theirs = await make_project(session, owner=await make_user(session))
        their_key, their_secret = await make_api_key(session, theirs)

        response = await client.delete(
            f"/v1/projects/{mine.id}/api-keys/{their_key.id}", headers=auth_headers(me)
        )

        assert response.status_code == 404
        still = await client.get(f"/v1/projects/{theirs.id}", headers=auth_headers(their_secret))
        assert still.status_code == 200
        assert (await session.get_one(ApiKey, their_key.id)).revoked_at is None

    async def test_another_projects_member_cannot_be_changed_through_yours(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        me = await make_user(session)
        mine = await make_project(session, owner=me)
        them = await make_user(session)
        theirs = await make_project(session, owner=them)

        changed = await client.patch(
            f"/v1/projects/{mine.id}/members/{them.id}",
            json={"role": "viewer"},
            headers=auth_headers(me),
        )
        removed = await client.delete(
            f"/v1/projects/{mine.id}/members/{them.id}", headers=auth_headers(me)
        )

        assert changed.status_code == removed.status_code == 404
        member = await session.get_one(ProjectMember, (theirs.id, them.id))
        assert member.role is Role.owner

    async def test_another_projects_events_are_not_in_your_log(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        me, them = await make_user(session), await make_user(session)
        mine = await make_project(session, owner=me)
        theirs = await make_project(session, owner=them)
        newcomer = await make_user(session)
        await client.post(
            f"/v1/projects/{theirs.id}/members",
            json={"email": newcomer.email},
            headers=auth_headers(them),
        )
        await add_member(session, mine, newcomer, Role.viewer)

        everything = await client.get(f"/v1/projects/{mine.id}/events", headers=auth_headers(me))
        about_newcomer = await client.get(
            f"/v1/projects/{mine.id}/events",
            params={"subject_id": str(newcomer.id)},
            headers=auth_headers(me),
        )

        assert everything.json()["items"] == []
        assert about_newcomer.json()["items"] == []
