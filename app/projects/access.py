"""Who may do what in a project: a caller's resolved access and the checks of its role.

Roles, each with the powers of those below it: `viewer` reads; `member` also submits and cancels
tasks and uploads files; `admin` also manages webhooks, API keys and members (except owners);
`owner` also manages owners and deletes the project. A project always keeps at least one owner.

API keys act in their own project with a role from their scopes: `write` -> `member`, otherwise
`viewer`. So no key can manage members, keys or webhooks, or delete the project.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.principal import Principal
from app.core.errors import NotFound
from app.events.models import ActorType
from app.projects import member_roles
from app.projects.exceptions import InsufficientRole, ProjectNotFound
from app.projects.models import ROLE_RANK, ApiKeyScope, Role
from app.projects.repository import MemberRepository


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


def ensure(access: ProjectAccess, role: Role) -> None:
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

    effective = await member_roles.role_of(
        sessionmaker, project_id, principal.actor_id, remember_s=remember_s
    )
    if effective is None:
        raise hidden_as()
    _ensure_rank(effective, role, api_key=False)
    return ProjectAccess(project_id=project_id, role=effective, principal=principal)


async def authorize(
    session: AsyncSession, *, project_id: uuid.UUID, principal: Principal, role: Role
) -> ProjectAccess:
    """`require_role`, returning the access that services of this domain take."""
    effective = await require_role(session, project_id=project_id, principal=principal, role=role)
    return ProjectAccess(project_id=project_id, role=effective, principal=principal)
