"""Projects, members and API keys over HTTP: the rules beyond the access matrix."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey
from app.auth.principal import Principal
from app.events.models import Event
from app.projects import access as project_access
from app.projects.exceptions import InsufficientRole, ProjectNotFound
from app.projects.models import ApiKeyScope, Project, ProjectMember, Role
from tests.factories import add_member, auth_headers, make_api_key, make_project, make_user


class TestCreateProject:
    async def test_the_creator_becomes_its_owner(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)

        response = await client.post(
            "/v1/projects", json={"name": "  thumbnails  "}, headers=auth_headers(user)
        )

        assert response.status_code == 201
        body = response.json()
        assert body["name"] == "thumbnails"
        assert body["role"] == "owner"
        assert set(body) >= {"id", "name", "created_at", "role"}
        member = await session.get_one(ProjectMember, (uuid.UUID(body["id"]), user.id))
        assert member.role is Role.owner

    async def test_an_api_key_cannot_create_projects(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        project = await make_project(session, owner=await make_user(session))
        _, secret = await make_api_key(session, project)

        response = await client.post(
            "/v1/projects", json={"name": "x"}, headers=auth_headers(secret)
        )

        assert response.status_code == 403

    @pytest.mark.parametrize(
        "body", [{"name": ""}, {"name": "   "}, {"name": "x" * 201}, {}, {"name": "a", "x": 1}]
    )
    async def test_bad_names_are_422(
        self, client: httpx.AsyncClient, session: AsyncSession, body: dict[str, object]
    ) -> None:
        user = await make_user(session)

        response = await client.post("/v1/projects", json=body, headers=auth_headers(user))

        assert response.status_code == 422


class TestListProjects:
    async def test_lists_only_the_callers_projects_newest_first_in_pages(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        stranger = await make_user(session)
        mine = [await make_project(session, owner=user) for _ in range(3)]
        await make_project(session, owner=stranger)
        shared = await make_project(session, owner=stranger)
        await add_member(session, shared, user, Role.viewer)

        first = await client.get("/v1/projects?limit=2", headers=auth_headers(user))
        rest = await client.get(
            "/v1/projects",
            params={"limit": 2, "cursor": first.json()["next_cursor"]},
            headers=auth_headers(user),
        )

        items = first.json()["items"] + rest.json()["items"]
        assert [item["id"] for item in items] == [
            str(project.id) for project in [shared, *reversed(mine)]
        ]
        assert items[0]["role"] == "viewer"
        assert rest.json()["next_cursor"] is None

    async def test_an_api_key_lists_its_own_project(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        await make_project(session, owner=owner)
        _, secret = await make_api_key(session, project, scopes=[ApiKeyScope.read])

        response = await client.get("/v1/projects", headers=auth_headers(secret))

        assert [(item["id"], item["role"]) for item in response.json()["items"]] == [
            (str(project.id), "viewer")
        ]

    @pytest.mark.parametrize(
        "cursor", ["garbage!", "e30", "eyJhdCI6IDF9", "x" * 500, "eyJhdCI6ICIyMDI2LTAxLTAxIn0"]
    )
    async def test_a_bad_cursor_is_a_400_problem(
        self, client: httpx.AsyncClient, session: AsyncSession, cursor: str
    ) -> None:
        user = await make_user(session)

        response = await client.get(
            "/v1/projects", params={"cursor": cursor}, headers=auth_headers(user)
        )

        assert response.status_code == 400
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("/invalid-cursor")

    @pytest.mark.parametrize("limit", ["0", "201", "-1", "ten"])
    async def test_a_limit_out_of_range_is_a_422(
        self, client: httpx.AsyncClient, session: AsyncSession, limit: str
    ) -> None:
        user = await make_user(session)

        response = await client.get(
            "/v1/projects", params={"limit": limit}, headers=auth_headers(user)
        )

        assert response.status_code == 422


class TestUpdateAndDeleteProject:
    async def test_renames_and_merges_settings(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        project = await make_project(
            session, owner=user, settings={"max_queued_tasks": 1, "max_running_tasks": 2}
        )

        response = await client.patch(
            f"/v1/projects/{project.id}",
            json={
                "name": "renamed",
                "settings": {"max_running_tasks": None, "read_rate_per_minute": 3},
            },
            headers=auth_headers(user),
        )

        assert response.status_code == 200
        assert response.json()["name"] == "renamed"
        assert response.json()["settings"] == {"max_queued_tasks": 1, "read_rate_per_minute": 3}

    async def test_delete_removes_the_project_and_keeps_its_audit_event(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)
        project = await make_project(session, owner=user)

        response = await client.delete(f"/v1/projects/{project.id}", headers=auth_headers(user))
        again = await client.get(f"/v1/projects/{project.id}", headers=auth_headers(user))

        assert response.status_code == 204
        assert again.status_code == 404
        assert await session.scalar(select(Project).where(Project.id == project.id)) is None
        event = await session.scalar(select(Event).where(Event.subject_id == project.id))
        assert event is not None
        assert (event.kind, event.project_id) == ("project.deleted", None)

    async def test_a_path_that_is_not_a_uuid_is_a_422(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        user = await make_user(session)

        response = await client.get("/v1/projects/not-a-uuid", headers=auth_headers(user))

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"


class TestMembers:
    async def test_an_admin_adds_a_registered_user_by_email_in_any_case(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        newcomer = await make_user(session)

        response = await client.post(
            f"/v1/projects/{project.id}/members",
            json={"email": newcomer.email.upper(), "role": "admin"},
            headers=auth_headers(owner),
        )

        assert response.status_code == 201
        assert response.json()["user_id"] == str(newcomer.id)
        assert response.json()["role"] == "admin"

    async def test_an_unknown_email_is_a_404_and_a_repeat_a_409(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        url = f"/v1/projects/{project.id}/members"

        unknown = await client.post(
            url, json={"email": "nobody@example.com"}, headers=auth_headers(owner)
        )
        repeat = await client.post(url, json={"email": owner.email}, headers=auth_headers(owner))

        assert unknown.status_code == 404
        assert unknown.json()["type"].endswith("/user-not-found")
        assert repeat.status_code == 409

    async def test_only_owners_make_owners(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        admin, someone = await make_user(session), await make_user(session)
        await add_member(session, project, admin, Role.admin)
        await add_member(session, project, someone, Role.member)
        url = f"/v1/projects/{project.id}/members"

        by_admin = await client.patch(
            f"{url}/{someone.id}", json={"role": "owner"}, headers=auth_headers(admin)
        )
        admin_demotes_owner = await client.patch(
            f"{url}/{owner.id}", json={"role": "viewer"}, headers=auth_headers(admin)
        )
        admin_removes_owner = await client.delete(f"{url}/{owner.id}", headers=auth_headers(admin))
        by_owner = await client.patch(
            f"{url}/{someone.id}", json={"role": "owner"}, headers=auth_headers(owner)
        )

        assert by_admin.status_code == 403
        assert admin_demotes_owner.status_code == 403
        assert admin_removes_owner.status_code == 403
        assert by_owner.status_code == 200

    async def test_the_last_owner_can_neither_be_demoted_nor_leave(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        url = f"/v1/projects/{project.id}/members/{owner.id}"

        demote = await client.patch(url, json={"role": "admin"}, headers=auth_headers(owner))
        leave = await client.delete(url, headers=auth_headers(owner))

        assert demote.status_code == leave.status_code == 409
        assert demote.json()["type"].endswith("/last-owner")

    async def test_an_owner_can_leave_when_another_owner_stays(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        founder = await make_user(session)
        project = await make_project(session, owner=founder)
        successor = await make_user(session)
        await add_member(session, project, successor, Role.owner)

        response = await client.delete(
            f"/v1/projects/{project.id}/members/{founder.id}", headers=auth_headers(founder)
        )

        assert response.status_code == 204
        await session.refresh(project)
        assert project.owner_id == successor.id

    async def test_any_member_can_leave(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        project = await make_project(session, owner=await make_user(session))
        viewer = await make_user(session)
        await add_member(session, project, viewer, Role.viewer)

        response = await client.delete(
            f"/v1/projects/{project.id}/members/{viewer.id}", headers=auth_headers(viewer)
        )
        after = await client.get(f"/v1/projects/{project.id}", headers=auth_headers(viewer))

        assert response.status_code == 204
        assert after.status_code == 404

    async def test_an_unknown_member_is_a_404(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)

        response = await client.patch(
            f"/v1/projects/{project.id}/members/{uuid.uuid4()}",
            json={"role": "viewer"},
            headers=auth_headers(owner),
        )

        assert response.status_code == 404
        assert response.json()["type"].endswith("/member-not-found")

    async def test_members_are_listed_in_the_order_they_joined(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        later = [await make_user(session) for _ in range(2)]
        for user in later:
            await add_member(session, project, user, Role.member)

        first = await client.get(
            f"/v1/projects/{project.id}/members?limit=2", headers=auth_headers(owner)
        )
        rest = await client.get(
            f"/v1/projects/{project.id}/members",
            params={"cursor": first.json()["next_cursor"]},
            headers=auth_headers(owner),
        )

        emails = [item["email"] for item in first.json()["items"] + rest.json()["items"]]
        assert emails == [owner.email, *(user.email for user in later)]


class TestApiKeys:
    async def test_the_key_is_shown_once_and_stored_only_as_a_hash(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)

        created = await client.post(
            f"/v1/projects/{project.id}/api-keys", json={"name": "ci"}, headers=auth_headers(owner)
        )
        listed = await client.get(
            f"/v1/projects/{project.id}/api-keys", headers=auth_headers(owner)
        )

        assert created.status_code == 201
        body = created.json()
        assert body["key"].startswith(f"{body['prefix']}_")
        assert body["prefix"].startswith("tg_")
        assert body["scopes"] == ["read", "write"]
        row = await session.get_one(ApiKey, uuid.UUID(body["id"]))
        assert body["key"] not in (row.secret_hash, row.prefix, row.name)
        assert body["key"] not in listed.text
        assert listed.json()["items"][0]["prefix"] == body["prefix"]

    @pytest.mark.parametrize(
        "scopes", [[], ["admin"], ["read", "delete"], "read", [None]], ids=repr
    )
    async def test_unknown_or_no_scopes_are_a_422(
        self, client: httpx.AsyncClient, session: AsyncSession, scopes: object
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)

        response = await client.post(
            f"/v1/projects/{project.id}/api-keys",
            json={"name": "ci", "scopes": scopes},
            headers=auth_headers(owner),
        )

        assert response.status_code == 422

    async def test_revoking_twice_is_harmless_and_an_unknown_key_is_a_404(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)
        api_key, _ = await make_api_key(session, project)
        url = f"/v1/projects/{project.id}/api-keys"

        first = await client.delete(f"{url}/{api_key.id}", headers=auth_headers(owner))
        second = await client.delete(f"{url}/{api_key.id}", headers=auth_headers(owner))
        unknown = await client.delete(f"{url}/{uuid.uuid4()}", headers=auth_headers(owner))

        assert first.status_code == second.status_code == 204
        assert unknown.status_code == 404
        assert unknown.json()["type"].endswith("/api-key-not-found")


class TestRequireRole:
    """The service other domains call (tasks: `member` to submit, `viewer` to read)."""

    async def test_a_read_write_key_acts_as_a_member(self, session: AsyncSession) -> None:
        project = await make_project(session, owner=await make_user(session))
        api_key, _ = await make_api_key(session, project)

        role = await project_access.require_role(
            session,
            project_id=project.id,
            principal=Principal.for_api_key(api_key),
            role=Role.member,
        )

        assert role is Role.member

    async def test_a_read_only_key_is_only_a_viewer(self, session: AsyncSession) -> None:
        project = await make_project(session, owner=await make_user(session))
        api_key, _ = await make_api_key(session, project, scopes=[ApiKeyScope.read])
        principal = Principal.for_api_key(api_key)

        role = await project_access.require_role(
            session, project_id=project.id, principal=principal, role=Role.viewer
        )

        assert role is Role.viewer
        with pytest.raises(InsufficientRole):
            await project_access.require_role(
                session, project_id=project.id, principal=principal, role=Role.member
            )

    async def test_a_key_of_another_project_finds_nothing(self, session: AsyncSession) -> None:
        owner = await make_user(session)
        mine, other = (
            await make_project(session, owner=owner),
            await make_project(session, owner=owner),
        )
        api_key, _ = await make_api_key(session, other)

        with pytest.raises(ProjectNotFound):
            await project_access.require_role(
                session,
                project_id=mine.id,
                principal=Principal.for_api_key(api_key),
                role=Role.viewer,
            )

    async def test_returns_the_users_effective_role(self, session: AsyncSession) -> None:
        owner = await make_user(session)
        project = await make_project(session, owner=owner)

        role = await project_access.require_role(
            session, project_id=project.id, principal=Principal.for_user(owner), role=Role.viewer
        )

        assert role is Role.owner
