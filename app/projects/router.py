"""Projects, their members and API keys."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from app.auth.dependencies import CurrentPrincipal, CurrentUser
from app.auth.exceptions import InvalidCredentials, UserTokenRequired
from app.auth.models import ApiKey
from app.core.config import Settings
from app.core.dependencies import SessionDep, SettingsDep
from app.core.errors import error_responses
from app.core.pagination import CursorQuery, InvalidCursor, LimitQuery, Page
from app.projects import keys, members
from app.projects import service as project_service
from app.projects.cache import ProjectCache
from app.projects.dependencies import (
    AdminAccess,
    DetachedViewerAccess,
    OwnerAccess,
    ViewerAccess,
)
from app.projects.exceptions import (
    AlreadyMember,
    ApiKeyNotFound,
    InsufficientRole,
    LastOwner,
    MemberNotFound,
    ProjectNotFound,
    UserNotFound,
)
from app.projects.models import Project, ProjectMember, Role
from app.projects.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    MemberAdd,
    MemberRead,
    MemberUpdate,
    ProjectCreate,
    ProjectRead,
    ProjectUpdate,
)
from app.projects.settings import effective_settings, settings_of

router = APIRouter()

_IN_PROJECT = (InvalidCredentials, InsufficientRole, ProjectNotFound)


def _cache(request: Request) -> ProjectCache | None:
    cache: ProjectCache | None = getattr(request.app.state, "project_cache", None)
    return cache


def _project(project: Project, role: Role, settings: Settings) -> ProjectRead:
    own = settings_of(project)
    return ProjectRead(
        id=project.id,
        name=project.name,
        created_at=project.created_at,
        role=role,
        settings=own,
        effective_settings=effective_settings(own, settings.projects),
    )


def _member(member: ProjectMember, email: str) -> MemberRead:
    return MemberRead(
        user_id=member.user_id, email=email, role=member.role, created_at=member.created_at
    )


def _api_key(api_key: ApiKey) -> ApiKeyRead:
    return ApiKeyRead.model_validate(api_key)


# --- projects ---------------------------------------------------------------------------------


@router.post(
    "/projects",
    tags=["projects"],
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(InvalidCredentials, UserTokenRequired),
)
async def create_project(
    data: ProjectCreate,
    session: SessionDep,
    user: CurrentUser,
    principal: CurrentPrincipal,
    settings: SettingsDep,
) -> ProjectRead:
    """Create a project; you become its `owner`. Needs a user token (API keys cannot)."""
    project = await project_service.create_project(
        session, owner=user, name=data.name, actor=principal
    )
    return _project(project, Role.owner, settings)


@router.get(
    "/projects", tags=["projects"], responses=error_responses(InvalidCredentials, InvalidCursor)
)
async def list_projects(
    session: SessionDep,
    principal: CurrentPrincipal,
    settings: SettingsDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[ProjectRead]:
    """Your projects with your role in each, newest first. An API key sees its own project."""
    rows, next_cursor = await project_service.list_projects(
        session, principal=principal, limit=limit, cursor=cursor
    )
    return Page(
        items=[_project(project, role, settings) for project, role in rows], next_cursor=next_cursor
    )


@router.get("/projects/{project_id}", tags=["projects"], responses=error_responses(*_IN_PROJECT))
async def get_project(
    request: Request, access: DetachedViewerAccess, settings: SettingsDep
) -> ProjectRead:
    """A project you are in (any role)."""
    project = await project_service.read_project(
        request.app.state.sessionmaker, access=access, cache=_cache(request)
    )
    return _project(project, access.role, settings)


@router.patch("/projects/{project_id}", tags=["projects"], responses=error_responses(*_IN_PROJECT))
async def update_project(
    request: Request,
    data: ProjectUpdate,
    access: AdminAccess,
    session: SessionDep,
    settings: SettingsDep,
) -> ProjectRead:
    """Rename the project or change its settings (merged key by key; `null` removes a key).
    Needs `admin`."""
    project = await project_service.update_project(
        session, access=access, data=data, cache=_cache(request)
    )
    return _project(project, access.role, settings)


@router.delete(
    "/projects/{project_id}",
    tags=["projects"],
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(*_IN_PROJECT),
)
async def delete_project(request: Request, access: OwnerAccess, session: SessionDep) -> None:
    """Delete the project with its tasks, files, keys and webhooks. Needs `owner`."""
    await project_service.delete_project(session, access=access, cache=_cache(request))


# --- members ----------------------------------------------------------------------------------


@router.get(
    "/projects/{project_id}/members",
    tags=["members"],
    responses=error_responses(*_IN_PROJECT, InvalidCursor),
)
async def list_members(
    access: ViewerAccess,
    session: SessionDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[MemberRead]:
    """The project's members and their roles, in the order they joined."""
    rows, next_cursor = await members.list_members(
        session, access=access, limit=limit, cursor=cursor
    )
    return Page(items=[_member(member, email) for member, email in rows], next_cursor=next_cursor)


@router.post(
    "/projects/{project_id}/members",
    tags=["members"],
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*_IN_PROJECT, UserNotFound, AlreadyMember),
)
async def add_member(data: MemberAdd, access: AdminAccess, session: SessionDep) -> MemberRead:
    """Add a registered user by email. Needs `admin`; only owners can add owners."""
    member, user = await members.add_member(
        session, access=access, email=data.email, role=data.role
    )
    return _member(member, user.email)


@router.patch(
    "/projects/{project_id}/members/{user_id}",
    tags=["members"],
    responses=error_responses(*_IN_PROJECT, MemberNotFound, LastOwner),
)
async def update_member(
    user_id: uuid.UUID, data: MemberUpdate, access: AdminAccess, session: SessionDep
) -> MemberRead:
    """Change a member's role. Needs `admin`; making or unmaking an owner needs `owner`.
    The last owner cannot be demoted (409)."""
    member, user = await members.change_member_role(
        session, access=access, user_id=user_id, role=data.role
    )
    return _member(member, user.email)


@router.delete(
    "/projects/{project_id}/members/{user_id}",
    tags=["members"],
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(*_IN_PROJECT, MemberNotFound, LastOwner),
)
async def remove_member(user_id: uuid.UUID, access: ViewerAccess, session: SessionDep) -> None:
    """Remove a member (needs `admin`; removing an owner needs `owner`), or leave the project
    with your own user id. The last owner cannot leave (409)."""
    await members.remove_member(session, access=access, user_id=user_id)


# --- API keys ---------------------------------------------------------------------------------


@router.get(
    "/projects/{project_id}/api-keys",
    tags=["api-keys"],
    responses=error_responses(*_IN_PROJECT, InvalidCursor),
)
async def list_api_keys(
    access: AdminAccess,
    session: SessionDep,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[ApiKeyRead]:
    """The project's API keys, revoked ones included, newest first; never their secrets.
    Needs `admin`."""
    rows, next_cursor = await keys.list_api_keys(session, access=access, limit=limit, cursor=cursor)
    return Page(items=[_api_key(api_key) for api_key in rows], next_cursor=next_cursor)


@router.post(
    "/projects/{project_id}/api-keys",
    tags=["api-keys"],
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(*_IN_PROJECT),
)
async def create_api_key(
    data: ApiKeyCreate, access: AdminAccess, session: SessionDep, settings: SettingsDep
) -> ApiKeyCreated:
    """Create an API key for this project. The `key` is in this response only: store it now.
    Use it as `Authorization: Bearer tg_…`. Needs `admin`."""
    api_key, secret = await keys.create_api_key(
        session, settings=settings.security, access=access, name=data.name, scopes=data.scopes
    )
    return ApiKeyCreated(
        id=api_key.id,
        name=api_key.name,
        prefix=api_key.prefix,
        scopes=api_key.scopes,
        created_at=api_key.created_at,
        key=secret,
    )


@router.delete(
    "/projects/{project_id}/api-keys/{key_id}",
    tags=["api-keys"],
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(*_IN_PROJECT, ApiKeyNotFound),
)
async def revoke_api_key(key_id: uuid.UUID, access: AdminAccess, session: SessionDep) -> None:
    """Revoke an API key: from the next request on it gets 401. Needs `admin`."""
    await keys.revoke_api_key(session, access=access, key_id=key_id)
