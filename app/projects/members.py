"""A project's members: list, add, change a role, remove (or leave)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.auth.models import User
from app.core.db import after_commit, utc_now
from app.core.pagination import decode_keyset, keyset, page_of
from app.events import service as event_service
from app.projects import departures, member_roles
from app.projects.access import ProjectAccess, ensure
from app.projects.departures import Departure, DepartureReason
from app.projects.exceptions import (
    AlreadyMember,
    LastOwner,
    MemberNotFound,
    ProjectNotFound,
    UserNotFound,
)
from app.projects.models import Project, ProjectMember, Role
from app.projects.repository import MemberRepository, ProjectRepository


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
    ensure(access, Role.owner if role is Role.owner else Role.admin)
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
    ensure(access, Role.admin)
    project, member, user = await _locked_member(session, access, user_id)
    if Role.owner in (member.role, role):
        ensure(access, Role.owner)
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
        ensure(access, Role.admin)
    project, member, user = await _locked_member(session, access, user_id)
    if member.role is Role.owner:
        if not leaving:
            ensure(access, Role.owner)
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
