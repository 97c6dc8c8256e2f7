"""Members' roles remembered per process on the routes that hold no connection (submit, uploads):
another process's change applies within a second, this process's at once."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.core.db import transaction
from app.projects import departures
from app.projects.models import Project, ProjectMember, Role
from tests.factories import add_member, auth_headers, make_project, make_user

_TOKENS: dict[object, dict[str, str]] = {}


async def _submit(client: httpx.AsyncClient, project: Project, user: User) -> int:
    # One access token per user, as a client keeps it: its principal is what is remembered.
    headers = _TOKENS.setdefault(user.id, auth_headers(user))
    response = await client.post(
        f"/v1/projects/{project.id}/tasks",
        json={"type": "echo", "input": {"n": 1}},
        headers=headers,
    )
    return response.status_code


async def _member_of_a_project(session: AsyncSession) -> tuple[User, Project, User]:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    member = await make_user(session)
    await add_member(session, project, member, Role.member)
    return owner, project, member


class TestRememberedRoles:
    async def test_a_member_removed_by_another_process_loses_access_within_a_second(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, project, member = await _member_of_a_project(session)
        assert await _submit(client, project, member) == 202  # remembered now

        # Another API process removes them: this one hears nothing, its memory simply expires.
        await session.execute(
            delete(ProjectMember).where(
                ProjectMember.project_id == project.id, ProjectMember.user_id == member.id
            )
        )
        assert await _submit(client, project, member) == 202  # within the second: remembered
        await asyncio.sleep(1.05)
        assert await _submit(client, project, member) == 404

    async def test_a_role_lowered_by_another_process_applies_within_a_second(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, project, member = await _member_of_a_project(session)
        assert await _submit(client, project, member) == 202

        await session.execute(
            update(ProjectMember)
            .where(ProjectMember.project_id == project.id, ProjectMember.user_id == member.id)
            .values(role=Role.viewer)
        )
        assert await _submit(client, project, member) == 202  # within the second: remembered
        await asyncio.sleep(1.05)
        assert await _submit(client, project, member) == 403

    async def test_a_user_deactivated_by_another_process_is_refused_within_a_second(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        _, project, member = await _member_of_a_project(session)
        assert await _submit(client, project, member) == 202

        # As another process's deactivation leaves the row; this one hears nothing of it.
        await session.execute(update(User).where(User.id == member.id).values(is_active=False))
        assert await _submit(client, project, member) == 202
        await asyncio.sleep(1.05)
        assert await _submit(client, project, member) == 401

    async def test_a_member_removed_here_loses_access_at_once(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner, project, member = await _member_of_a_project(session)
        assert await _submit(client, project, member) == 202

        removed = await client.delete(
            f"/v1/projects/{project.id}/members/{member.id}", headers=auth_headers(owner)
        )

        assert removed.status_code == 204
        assert await _submit(client, project, member) == 404

    async def test_a_role_lowered_here_applies_at_once(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner, project, member = await _member_of_a_project(session)
        assert await _submit(client, project, member) == 202

        lowered = await client.patch(
            f"/v1/projects/{project.id}/members/{member.id}",
            json={"role": "viewer"},
            headers=auth_headers(owner),
        )

        assert lowered.status_code == 200, lowered.text
        assert await _submit(client, project, member) == 403

    async def test_a_user_deactivated_here_is_refused_at_once(
        self,
        client: httpx.AsyncClient,
        session: AsyncSession,
        db: async_sessionmaker[AsyncSession],
    ) -> None:
        _, project, member = await _member_of_a_project(session)
        assert await _submit(client, project, member) == 202

        async with transaction(db) as work:
            await departures.deactivate_user(work, user_id=member.id, actor=None)

        assert await _submit(client, project, member) == 401

    async def test_a_non_member_is_never_remembered(
        self, client: httpx.AsyncClient, session: AsyncSession
    ) -> None:
        owner, project, _ = await _member_of_a_project(session)
        outsider = await make_user(session)
        assert await _submit(client, project, outsider) == 404

        added = await client.post(
            f"/v1/projects/{project.id}/members",
            json={"email": outsider.email, "role": "member"},
            headers=auth_headers(owner),
        )

        assert added.status_code == 201, added.text
        assert await _submit(client, project, outsider) == 202
