"""Projects, members, roles and API keys: who may do what in a project.

Roles, each with the powers of those below it: `viewer` reads; `member` also submits and cancels
tasks and uploads files; `admin` also manages webhooks, API keys and members (except owners);
`owner` also manages owners and deletes the project. A project always keeps at least one owner.

API keys act in their own project with a role from their scopes: `write` -> `member`, otherwise
`viewer`. So no key can manage members, keys or webhooks, or delete the project.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import service as auth_service
from app.auth.models import ApiKey, User
from app.auth.principal import Principal
from app.auth.principal_cache import principals
from app.core.config import SecuritySettings
from app.core.db import after_commit, transaction, utc_now
from app.core.errors import NotFound
from app.core.pagination import decode_keyset, keyset, page_of
from app.core.security import new_api_key
from app.events import service as event_service
from app.events.models import ActorType
from app.projects import departures, member_roles
from app.projects.departures import Departure, DepartureReason
from app.projects.exceptions import (
    AlreadyMember,
    ApiKeyNotFound,
    LastOwner,
    MemberNotFound,
    UserNotFound,
)

# Re-exported: callers of `require_role` catch these as `project_service.ProjectNotFound`.
from app.projects.exceptions import InsufficientRole as InsufficientRole
from app.projects.exceptions import ProjectNotFound as ProjectNotFound
from app.projects.limits import project_limits
from app.projects.models import ROLE_RANK, ApiKeyScope, Project, ProjectMember, Role
from app.projects.repository import ApiKeyRepository, MemberRepository, ProjectRepository
from app.projects.schemas import ProjectUpdate
from app.projects.settings import merge_settings
from app.projects.settings import settings_of as settings_of

if TYPE_CHECKING:  # its Redis client and metrics stay out of the CLI's imports
    from app.projects.cache import ProjectCache


@dataclass(frozen=True)
class ProjectAccess:
    """A caller's resolved access to one project. `principal=None` is an operator (the CLI)."""

    project_id: uuid.UUID
    role: Role
    principal: Principal | None

    @property
    def user_id(self) -> uuid.UUID | None:
        user = self.principal.user if self.principal is not None else None
        return user.id if user is not None else None

    @property
    def actor_id(self) -> uuid.UUID | None:
        """The calling user's or API key's id (`created_by`); None for an operator."""
        return self.principal.actor_id if self.principal is not None else None


def api_key_role(scopes: Iterable[str]) -> Role:
    """The role an API key acts with: `member` with the `write` scope, else `viewer`."""
    return Role.member if ApiKeyScope.write in set(scopes) else Role.viewer


def _insufficient(required: Role, effective: Role, *, api_key: bool = False) -> InsufficientRole:
    detail = f"This needs the `{required}` role or higher; you are `{effective}`."
    if api_key:
        detail += " API keys act as `member` at most; sign in as a user for this."
    return InsufficientRole(detail)


def _ensure(access: ProjectAccess, role: Role) -> None:
    if ROLE_RANK[access.role] < ROLE_RANK[role]:
        api_key = access.principal is not None and access.principal.actor_type is ActorType.api_key
        raise _insufficient(role, access.role, api_key=api_key)


async def require_role(
    session: AsyncSession,
    *,
    project_id: uuid.UUID,
    principal: Principal,
    role: Role,
    hidden_as: type[NotFound] = ProjectNotFound,
) -> Role:
    """The caller's effective role in the project, if it is at least `role`.

    Raises `hidden_as` (404; `ProjectNotFound` unless the caller asked about an object in the
    project, whose own not-found error it then is) when the caller has no access at all (not a
    member, an API key of another project, no such project) and `InsufficientRole` (403) when
    the role is too low.
    """
    if principal.actor_type is ActorType.api_key:
        return _api_key_role(project_id, principal, role, hidden_as)
    found = await MemberRepository(session).role_of(project_id, principal.actor_id)
    if found is None:
        raise hidden_as()
    _ensure_rank(found, role, api_key=False)
    return found


def _ensure_rank(effective: Role, role: Role, *, api_key: bool) -> None:
    if ROLE_RANK[effective] < ROLE_RANK[role]:
        raise _insufficient(role, effective, api_key=api_key)


def _api_key_role(
    project_id: uuid.UUID,
    principal: Principal,
    role: Role,
    hidden_as: type[NotFound] = ProjectNotFound,
) -> Role:
    """An API key's role: in its own project only, from its scopes, if at least `role`."""
    if principal.api_key_project_id != project_id:
        raise hidden_as()
    effective = api_key_role(principal.api_key_scopes)
    _ensure_rank(effective, role, api_key=True)
    return effective


def authorize_api_key(
    *,
    project_id: uuid.UUID,
    principal: Principal,
    role: Role,
    hidden_as: type[NotFound] = ProjectNotFound,
) -> ProjectAccess:
    """`authorize` for an API key: its own project and scopes decide, no query needed."""
    effective = _api_key_role(project_id, principal, role, hidden_as)
    return ProjectAccess(project_id=project_id, role=effective, principal=principal)


class _NotMember(Exception):
    """The caller has no role in the project (raised inside a shared role read)."""


async def authorize_detached(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    project_id: uuid.UUID,
    principal: Principal,
    role: Role,
    hidden_as: type[NotFound] = ProjectNotFound,
    remember_s: float = 0.0,
) -> ProjectAccess:
    """`authorize` holding no connection afterwards: an API key needs no query, a user's role is
    read in a short transaction of its own, and remembered `remember_s` (`member_roles`)."""
    if principal.user is None:
        return authorize_api_key(
            project_id=project_id, principal=principal, role=role, hidden_as=hidden_as
        )

    async def read() -> Role:
        async with transaction(sessionmaker) as session:
            found = await MemberRepository(session).role_of(project_id, principal.actor_id)
        if found is None:
            raise _NotMember()
        return found

    try:
        effective = await member_roles.remembered.load_once(
            (principal.actor_id, project_id), read, ttl_s=remember_s
        )
    except _NotMember:
        raise hidden_as() from None
    _ensure_rank(effective, role, api_key=False)
    return ProjectAccess(project_id=project_id, role=effective, principal=principal)


async def authorize(
    session: AsyncSession, *, project_id: uuid.UUID, principal: Principal, role: Role
) -> ProjectAccess:
    """`require_role`, returning the access that services of this domain take."""
    effective = await require_role(session, project_id=project_id, principal=principal, role=role)
    return ProjectAccess(project_id=project_id, role=effective, principal=principal)


# --- projects ---------------------------------------------------------------------------------


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
    _ensure(access, Role.admin)
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
    _ensure(access, Role.owner)
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


# --- members ----------------------------------------------------------------------------------


async def list_members(
    session: AsyncSession, *, access: ProjectAccess, limit: int, cursor: str | None
) -> tuple[list[tuple[ProjectMember, str]], str | None]:
    """Members with their email, in the order they joined."""
    rows = await MemberRepository(session).list(
        access.project_id, after=decode_keyset(cursor), limit=limit + 1
    )
    page, next_cursor = page_of(
        rows, limit=limit, position=lambda row: keyset(row[0].created_at, row[0].user_id)
    )
    return [(member, email) for member, email in page], next_cursor


async def add_member(
    session: AsyncSession, *, access: ProjectAccess, email: str, role: Role
) -> tuple[ProjectMember, User]:
    """Add a registered user; admins add up to `admin`, only owners add owners."""
    _ensure(access, Role.owner if role is Role.owner else Role.admin)
    if await ProjectRepository(session).lock(access.project_id) is None:
        raise ProjectNotFound()
    user = await auth_service.get_user_by_email(session, email)
    if user is None:
        raise UserNotFound(f"No user is registered as {email}; they need to register first.")
    if await MemberRepository(session).role_of(access.project_id, user.id) is not None:
        raise AlreadyMember()
    member = ProjectMember(
        project_id=access.project_id, user_id=user.id, role=role, created_at=utc_now()
    )
    session.add(member)
    event_service.record(
        session,
        "project.member_added",
        project_id=access.project_id,
        subject_id=user.id,
        actor=access.principal,
        data={"email": user.email, "role": role.value},
    )
    await session.flush()
    return member, user


async def _locked_member(
    session: AsyncSession, access: ProjectAccess, user_id: uuid.UUID
) -> tuple[Project, ProjectMember, User]:
    project = await ProjectRepository(session).lock(access.project_id)
    if project is None:
        raise ProjectNotFound()
    found = await MemberRepository(session).get(access.project_id, user_id)
    if found is None:
        raise MemberNotFound()
    return project, *found


async def _step_down_owner(session: AsyncSession, project: Project, user_id: uuid.UUID) -> None:
    """Refuse to lose the last owner; move `projects.owner_id` off a user who stops being one."""
    members = MemberRepository(session)
    if await members.count_owners(project.id) <= 1:
        raise LastOwner("Make another member an owner first.")
    if project.owner_id == user_id:
        successor = await members.longest_standing_owner(project.id, other_than=user_id)
        if successor is not None:
            project.owner_id = successor


async def change_member_role(
    session: AsyncSession, *, access: ProjectAccess, user_id: uuid.UUID, role: Role
) -> tuple[ProjectMember, User]:
    """Change a member's role; owners' roles and the `owner` role are for owners to give."""
    _ensure(access, Role.admin)
    project, member, user = await _locked_member(session, access, user_id)
    if Role.owner in (member.role, role):
        _ensure(access, Role.owner)
    if member.role == role:
        return member, user
    if member.role is Role.owner:
        await _step_down_owner(session, project, user_id)
    previous = member.role
    member.role = role
    after_commit(session, lambda: member_roles.forget_member(project.id, user_id))
    event_service.record(
        session,
        "project.member_role_changed",
        project_id=project.id,
        subject_id=user_id,
        actor=access.principal,
        data={"email": user.email, "from": previous.value, "to": role.value},
    )
    await session.flush()
    return member, user


async def remove_member(
    session: AsyncSession, *, access: ProjectAccess, user_id: uuid.UUID
) -> None:
    """Remove a member (admin+, owners by owners), or leave: any member may remove themselves.
    Either way the API keys and webhooks they created stop working with it (`departures`)."""
    leaving = access.user_id == user_id
    if not leaving:
        _ensure(access, Role.admin)
    project, member, user = await _locked_member(session, access, user_id)
    if member.role is Role.owner:
        if not leaving:
            _ensure(access, Role.owner)
        await _step_down_owner(session, project, user_id)
    await MemberRepository(session).remove(project.id, user_id)
    after_commit(session, lambda: member_roles.forget_member(project.id, user_id))
    reason = DepartureReason.creator_left if leaving else DepartureReason.creator_removed
    await departures.revoke_what_they_created(
        session,
        Departure(user_id=user_id, project_id=project.id, reason=reason, actor=access.principal),
    )
    event_service.record(
        session,
        "project.member_removed",
        project_id=project.id,
        subject_id=user_id,
        actor=access.principal,
        data={"email": user.email, "role": member.role.value, "left": leaving},
    )


# --- API keys ---------------------------------------------------------------------------------


async def list_api_keys(
    session: AsyncSession, *, access: ProjectAccess, limit: int, cursor: str | None
) -> tuple[list[ApiKey], str | None]:
    """The project's keys (never their secrets), revoked ones included, newest first; admin+."""
    _ensure(access, Role.admin)
    rows = await ApiKeyRepository(session).list(
        access.project_id, after=decode_keyset(cursor), limit=limit + 1
    )
    return page_of(rows, limit=limit, position=lambda key: keyset(key.created_at, key.id))


async def create_api_key(
    session: AsyncSession,
    *,
    settings: SecuritySettings,
    access: ProjectAccess,
    name: str,
    scopes: Iterable[ApiKeyScope],
) -> tuple[ApiKey, str]:
    """A new key and its secret, which is returned here once and stored only as a hash; admin+."""
    _ensure(access, Role.admin)
    fresh = new_api_key(settings)
    api_key = ApiKey(
        id=uuid.uuid4(),
        project_id=access.project_id,
        name=name,
        prefix=fresh.prefix,
        secret_hash=fresh.secret_hash,
        scopes=sorted({ApiKeyScope(scope).value for scope in scopes}),
        created_by=access.user_id,
        created_at=utc_now(),
    )
    session.add(api_key)
    event_service.record(
        session,
        "project.api_key_created",
        project_id=access.project_id,
        subject_id=api_key.id,
        actor=access.principal,
        data={"name": name, "prefix": fresh.prefix, "scopes": api_key.scopes},
    )
    await session.flush()
    return api_key, fresh.key


async def revoke_api_key(
    session: AsyncSession, *, access: ProjectAccess, key_id: uuid.UUID
) -> None:
    """Revoke a key of this project (repeating it is harmless); it fails from the next request."""
    _ensure(access, Role.admin)
    repository = ApiKeyRepository(session)
    api_key = await repository.get(access.project_id, key_id)
    if api_key is None:
        raise ApiKeyNotFound()
    revoked = await repository.revoke(api_key.id, now=utc_now())
    # This process forgets the key at once; the others within `security.principal_cache_s`.
    after_commit(session, lambda: principals.forget_api_key(api_key.id))
    if revoked is not None:
        event_service.record(
            session,
            "project.api_key_revoked",
            project_id=access.project_id,
            subject_id=api_key.id,
            actor=access.principal,
            data={"name": api_key.name, "prefix": api_key.prefix},
        )
