"""Every caller kind against every project route family: allowed, 403 or 404."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey, User
from app.projects.models import ApiKeyScope, Project, Role
from tests.factories import add_member, auth_headers, make_api_key, make_project, make_user


@dataclass
class World:
    project: Project
    users: dict[str, User]
    tokens: dict[str, str]  # caller name -> bearer credential
    target: User  # a viewer whose role is changed or who is removed
    newcomer: User  # a registered user who is not in the project yet
    key: ApiKey  # a live key that gets revoked


async def _world(session: AsyncSession) -> World:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    users = {"owner": owner}
    for role in (Role.admin, Role.member, Role.viewer):
        users[role.value] = await make_user(session)
        await add_member(session, project, users[role.value], role)
    users["outsider"] = await make_user(session)
    other_project = await make_project(session, owner=users["outsider"])
    target = await make_user(session)
    await add_member(session, project, target, Role.viewer)
    key, _ = await make_api_key(session, project, name="to revoke")
    tokens = {name: auth_headers(user)["Authorization"] for name, user in users.items()}
    for name, scopes, in_project in (
        ("key_rw", [ApiKeyScope.read, ApiKeyScope.write], project),
        ("key_ro", [ApiKeyScope.read], project),
        ("key_of_other_project", [ApiKeyScope.read, ApiKeyScope.write], other_project),
    ):
        _, secret = await make_api_key(session, in_project, scopes=scopes)
        tokens[name] = f"Bearer {secret}"
    return World(project, users, tokens, target, await make_user(session), key)


Request = Callable[[World], tuple[str, str, dict[str, Any] | None]]

# family -> (request, least role, success status)
FAMILIES: dict[str, tuple[Request, Role, int]] = {
    "get_project": (lambda w: ("GET", f"/v1/projects/{w.project.id}", None), Role.viewer, 200),
    "update_project": (
        lambda w: ("PATCH", f"/v1/projects/{w.project.id}", {"name": "renamed"}),
        Role.admin,
        200,
    ),
    "delete_project": (
        lambda w: ("DELETE", f"/v1/projects/{w.project.id}", None),
        Role.owner,
        204,
    ),
    "list_members": (
        lambda w: ("GET", f"/v1/projects/{w.project.id}/members", None),
        Role.viewer,
        200,
    ),
    "add_member": (
        lambda w: (
            "POST",
            f"/v1/projects/{w.project.id}/members",
            {"email": w.newcomer.email, "role": "viewer"},
        ),
        Role.admin,
        201,
    ),
    "change_member": (
        lambda w: (
            "PATCH",
            f"/v1/projects/{w.project.id}/members/{w.target.id}",
            {"role": "member"},
        ),
        Role.admin,
        200,
    ),
    "remove_member": (
        lambda w: ("DELETE", f"/v1/projects/{w.project.id}/members/{w.target.id}", None),
        Role.admin,
        204,
    ),
    "list_api_keys": (
        lambda w: ("GET", f"/v1/projects/{w.project.id}/api-keys", None),
        Role.admin,
        200,
    ),
    "create_api_key": (
        lambda w: ("POST", f"/v1/projects/{w.project.id}/api-keys", {"name": "ci"}),
        Role.admin,
        201,
    ),
    "revoke_api_key": (
        lambda w: ("DELETE", f"/v1/projects/{w.project.id}/api-keys/{w.key.id}", None),
        Role.admin,
        204,
    ),
    "list_events": (
        lambda w: ("GET", f"/v1/projects/{w.project.id}/events", None),
        Role.viewer,
        200,
    ),
}

# caller -> the role it acts with in the project, or None: not in it at all.
CALLERS: dict[str, Role | None] = {
    "owner": Role.owner,
    "admin": Role.admin,
    "member": Role.member,
    "viewer": Role.viewer,
    "outsider": None,
    "key_rw": Role.member,
    "key_ro": Role.viewer,
    "key_of_other_project": None,
}
RANK = [Role.viewer, Role.member, Role.admin, Role.owner]


def _expected(caller: str, family: str) -> int:
    role = CALLERS[caller]
    _, least, success = FAMILIES[family]
    if role is None:
        return 404
    return success if RANK.index(role) >= RANK.index(least) else 403


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("caller", list(CALLERS))
async def test_role_matrix(
    client: httpx.AsyncClient, session: AsyncSession, caller: str, family: str
) -> None:
    world = await _world(session)
    method, url, body = FAMILIES[family][0](world)

    response = await client.request(
        method, url, json=body, headers={"Authorization": world.tokens[caller]}
    )

    expected = _expected(caller, family)
    assert response.status_code == expected, response.text
    if expected == 404:
        assert response.json()["type"].endswith("/project-not-found")
    if expected == 403:
        assert response.json()["type"].endswith("/insufficient-role")
