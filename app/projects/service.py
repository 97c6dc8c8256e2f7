"""Projects: create, list, read, rename or re-set, delete. Members are `members.py`, API keys
`keys.py`, and who may do what `access.py`."""

from __future__ import annotations

import functools
import uuid
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.models import User
from app.auth.principal import Principal
from app.auth.principal_cache import principals
from app.core.db import after_commit, transaction, utc_now
from app.core.pagination import decode_keyset, keyset, page_of
from app.events import service as event_service
from app.projects import member_roles
from app.projects.access import ProjectAccess, api_key_role, ensure
from app.projects.exceptions import ProjectNotFound
from app.projects.limits import project_limits
from app.projects.models import Project, ProjectMember, Role
from app.projects.repository import ProjectRepository
from app.projects.schemas import ProjectUpdate
from app.projects.settings import merge_settings, settings_of

if TYPE_CHECKING:  # its Redis client and metrics stay out of the CLI's imports
    from app.projects.cache import ProjectCache


async def create_project(
    session: AsyncSession, *, owner: User, name: str, actor: Principal | None
) -> Project:
    """Create a project with `owner` as its first owner, and its `project.created` event."""
    project = Project(
        id=uuid.uuid4(), name=name, owner_id=owner.id, settings={}, created_at=utc_now()
    )
    session.add(project)
    await session.flush()  # no ORM relationships order the inserts: the project goes first
    session.add(
        ProjectMember(
            project_id=project.id, user_id=owner.id, role=Role.owner, created_at=utc_now()
        )
    )
    event_service.record(
        session,
        "project.created",
        project_id=project.id,
        subject_id=project.id,
        actor=actor,
        data={"name": name, "owner_id": str(owner.id)},
    )
    await session.flush()
    return project


async def list_projects(
    session: AsyncSession, *, principal: Principal, limit: int, cursor: str | None
) -> tuple[list[tuple[Project, Role]], str | None]:
    """The caller's projects with their role, newest first; an API key sees its own project."""
    after = decode_keyset(cursor)
    if principal.api_key_project_id is not None:
        project = await ProjectRepository(session).get(principal.api_key_project_id)
        if project is None or after is not None:
            return [], None
        return [(project, api_key_role(principal.api_key_scopes))], None
    rows = await ProjectRepository(session).list_for_user(
        principal.actor_id, after=after, limit=limit + 1
    )
    page, next_cursor = page_of(
        rows, limit=limit, position=lambda row: keyset(row[0].created_at, row[0].id)
    )
    return [(project, role) for project, role in page], next_cursor


async def exists(session: AsyncSession, *, project_id: uuid.UUID) -> bool:
    """Whether the project exists, for operators only (callers get `require_role`'s 404)."""
    return await ProjectRepository(session).get(project_id) is not None


async def get_project(session: AsyncSession, *, access: ProjectAccess) -> Project:
    project = await ProjectRepository(session).get(access.project_id)
    if project is None:
        raise ProjectNotFound()
    return project


async def read_project(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    access: ProjectAccess,
    cache: ProjectCache | None = None,
) -> Project:
    """`get_project` holding no connection afterwards, through the project cache when there is
    one (the caller's access is `access`, checked already)."""
    if cache is not None and (cached := await cache.get(access.project_id)) is not None:
        return cached
    async with transaction(sessionmaker) as session:
        project = await get_project(session, access=access)
    if cache is not None:
        await cache.put(project)
    return project


async def update_project(
    session: AsyncSession,
    *,
    access: ProjectAccess,
    data: ProjectUpdate,
    cache: ProjectCache | None = None,
) -> Project:
    """Rename the project and/or merge its settings (a `null` value removes a key); admin+.
    The project cache forgets the row once the change has committed."""
    ensure(access, Role.admin)
    project = await get_project(session, access=access)
    changed: list[str] = []
    if data.name is not None and data.name != project.name:
        project.name = data.name
        changed.append("name")
    if data.settings is not None:
        merged = merge_settings(settings_of(project), data.settings).model_dump()
        if merged != project.settings:
            project.settings = merged
            changed.append("settings")
            # This process applies the new limits at once; the others within a second.
            after_commit(session, lambda: project_limits.forget(project.id))
    if changed:
        if cache is not None:
            after_commit(session, functools.partial(cache.forget, project.id))
        event_service.record(
            session,
            "project.updated",
            project_id=project.id,
            subject_id=project.id,
            actor=access.principal,
            data={
                "changed": changed,
                "name": project.name,
                "settings_keys": sorted(data.settings.model_fields_set if data.settings else ()),
            },
        )
        await session.flush()
    return project


async def delete_project(
    session: AsyncSession, *, access: ProjectAccess, cache: ProjectCache | None = None
) -> None:
    """Delete the project and everything in it; owner only. The event outlives it, and its
    objects in S3 go with the next sweep (`app.files.project_sweep`)."""
    ensure(access, Role.owner)
    project = await get_project(session, access=access)
    # project_id NULL: the project's own events go with it (ON DELETE CASCADE), this one stays.
    event_service.record(
        session,
        "project.deleted",
        project_id=None,
        subject_id=project.id,
        actor=access.principal,
        data={"name": project.name},
    )
    await ProjectRepository(session).delete(project.id, now=utc_now())
    after_commit(session, lambda: principals.forget_project(project.id))
    after_commit(session, lambda: member_roles.forget_project(project.id))
    if cache is not None:
        after_commit(session, functools.partial(cache.forget, project.id))
