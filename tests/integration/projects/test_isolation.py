"""A user outside a project can never read, list, infer or change anything in it."""

from __future__ import annotations

import dataclasses
import uuid

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey
from app.projects.models import Project, ProjectMember, Role
from tests.factories import add_member, auth_headers, make_api_key, make_project, make_user
from tests.integration.auth.conftest import problem_identity
from tests.integration.projects.test_role_matrix import FAMILIES, _world


class TestAnotherUsersProject:
    async def test_every_route_answers_exactly_as_for_a_project_that_does_not_exist(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        world = await _world(session)
        nowhere = dataclasses.replace(world, project=Project(id=uuid.uuid4()))
        stranger = {"Authorization": world.tokens["outsider"]}

        for family, (request, _, _) in FAMILIES.items():
            method, url, body = request(world)
            real = await client.request(method, url, json=body, headers=stranger)
            method, url, body = request(nowhere)
            missing = await client.request(method, url, json=body, headers=stranger)

            assert problem_identity(real) == problem_identity(missing), family
            assert real.status_code == 404, family

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

    async def test_nothing_changed_after_a_stranger_tried_everything(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        world = await _world(session)
        stranger = {"Authorization": world.tokens["outsider"]}

        for request, _, _ in FAMILIES.values():
            method, url, body = request(world)
            await client.request(method, url, json=body, headers=stranger)

        project = await session.scalar(
            select(Project)
            .where(Project.id == world.project.id)
            .execution_options(populate_existing=True)
        )
        assert project is not None
        assert project.name != "renamed"
        target = await session.get_one(ProjectMember, (world.project.id, world.target.id))
        assert target.role is Role.viewer
        await session.refresh(world.key)
        assert world.key.revoked_at is None

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
