"""Every mutation writes exactly one audit event in its transaction; a refused one writes none."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey, User
from app.events.models import Event
from app.projects.models import Project, Role
from tests.factories import add_member, auth_headers, make_api_key, make_project, make_user


@dataclass
class Scene:
    owner: User
    project: Project
    member: User
    newcomer: User
    key: ApiKey


async def _scene(session: AsyncSession) -> Scene:
    owner = await make_user(session)
    project = await make_project(session, owner=owner)
    member = await make_user(session)
    await add_member(session, project, member, Role.member)
    key, _ = await make_api_key(session, project)
    return Scene(owner, project, member, await make_user(session), key)


@dataclass(frozen=True)
class Mutation:
    kind: str
    send: Callable[[httpx.AsyncClient, Scene, dict[str, str]], Awaitable[httpx.Response]]
    subject: Callable[[Scene, httpx.Response], uuid.UUID]
    # Which project the event belongs to: None outside projects (and for a deleted one).
    project: Callable[[Scene, httpx.Response], uuid.UUID | None] = lambda s, _r: s.project.id
    by_owner: bool = True


def _as_owner(scene: Scene, request_id: str) -> dict[str, str]:
    return {**auth_headers(scene.owner), "X-Request-ID": request_id}


def _id(response: httpx.Response) -> uuid.UUID:
    return uuid.UUID(response.json()["id"])


MUTATIONS = [
    Mutation(
        "user.registered",
        lambda c, _s, h: c.post(
            "/v1/auth/register",
            json={"email": f"new-{uuid.uuid4().hex[:8]}@example.com", "password": "long enough"},
            headers={"X-Request-ID": h["X-Request-ID"]},
        ),
        lambda _s, r: _id(r),
        project=lambda _s, _r: None,
        by_owner=False,
    ),
    Mutation(
        "project.created",
        lambda c, _s, h: c.post("/v1/projects", json={"name": "new"}, headers=h),
        lambda _s, r: _id(r),
        project=lambda _s, r: _id(r),
    ),
    Mutation(
        "project.updated",
        lambda c, s, h: c.patch(f"/v1/projects/{s.project.id}", json={"name": "x"}, headers=h),
        lambda s, _r: s.project.id,
    ),
    Mutation(
        "project.deleted",
        lambda c, s, h: c.delete(f"/v1/projects/{s.project.id}", headers=h),
        lambda s, _r: s.project.id,
        project=lambda _s, _r: None,
    ),
    Mutation(
        "project.member_added",
        lambda c, s, h: c.post(
            f"/v1/projects/{s.project.id}/members", json={"email": s.newcomer.email}, headers=h
        ),
        lambda s, _r: s.newcomer.id,
    ),
    Mutation(
        "project.member_role_changed",
        lambda c, s, h: c.patch(
            f"/v1/projects/{s.project.id}/members/{s.member.id}", json={"role": "admin"}, headers=h
        ),
        lambda s, _r: s.member.id,
    ),
    Mutation(
        "project.member_removed",
        lambda c, s, h: c.delete(f"/v1/projects/{s.project.id}/members/{s.member.id}", headers=h),
        lambda s, _r: s.member.id,
    ),
    Mutation(
        "project.api_key_created",
        lambda c, s, h: c.post(
            f"/v1/projects/{s.project.id}/api-keys", json={"name": "ci"}, headers=h
        ),
        lambda _s, r: _id(r),
    ),
    Mutation(
        "project.api_key_revoked",
        lambda c, s, h: c.delete(f"/v1/projects/{s.project.id}/api-keys/{s.key.id}", headers=h),
        lambda s, _r: s.key.id,
    ),
]


async def _by_request(session: AsyncSession, request_id: str) -> list[Event]:
    return list(await session.scalars(select(Event).where(Event.request_id == request_id)))


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.kind for m in MUTATIONS])
async def test_a_mutation_writes_one_event_naming_actor_subject_and_request(
    client: httpx.AsyncClient, session: AsyncSession, mutation: Mutation
) -> None:
    scene = await _scene(session)
    request_id = f"audit-{uuid.uuid4().hex}"

    response = await mutation.send(client, scene, _as_owner(scene, request_id))

    assert response.status_code < 300, response.text
    [event] = await _by_request(session, request_id)
    assert event.kind == mutation.kind
    assert event.subject_id == mutation.subject(scene, response)
    assert event.project_id == mutation.project(scene, response)
    if mutation.by_owner:
        assert (event.actor_type, event.actor_id) == ("user", scene.owner.id)
    if response.content and "key" in response.json():
        assert response.json()["key"] not in str(event.data)


async def test_a_refused_mutation_writes_no_event(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    scene = await _scene(session)
    request_id = f"audit-{uuid.uuid4().hex}"

    response = await client.delete(
        f"/v1/projects/{scene.project.id}",
        headers={**auth_headers(scene.member), "X-Request-ID": request_id},
    )

    assert response.status_code == 403
    assert await _by_request(session, request_id) == []


async def test_a_read_writes_no_event(client: httpx.AsyncClient, session: AsyncSession) -> None:
    scene = await _scene(session)
    _, secret = await make_api_key(session, scene.project)
    request_id = f"audit-{uuid.uuid4().hex}"

    await client.get(
        f"/v1/projects/{scene.project.id}",
        headers={**auth_headers(secret), "X-Request-ID": request_id},
    )

    assert await _by_request(session, request_id) == []
