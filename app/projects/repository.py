"""Queries of projects, their members and the management of their API keys."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Row, delete, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ApiKey, User
from app.core.pagination import KeysetCursor
from app.projects.models import DeletedProject, Project, ProjectMember, Role


class ProjectRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, project_id: uuid.UUID) -> Project | None:
        return await self.session.get(Project, project_id)

    async def lock(self, project_id: uuid.UUID) -> Project | None:
        """The project row, locked until commit: membership changes of one project run in turn."""
        query = (
            select(Project)
            .where(Project.id == project_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return await self.session.scalar(query)

    async def delete(self, project_id: uuid.UUID, *, now: datetime) -> None:
        """Delete the project (its rows cascade) and note it for the sweep of its objects."""
        await self.session.execute(delete(Project).where(Project.id == project_id))
        self.session.add(DeletedProject(project_id=project_id, deleted_at=now, objects_deleted=0))

    async def list_for_user(
        self, user_id: uuid.UUID, *, after: KeysetCursor | None, limit: int
    ) -> Sequence[Row[Project, Role]]:
        """The user's projects with their role, newest first."""
        query = (
            select(Project, ProjectMember.role)
            .join(ProjectMember, ProjectMember.project_id == Project.id)
            .where(ProjectMember.user_id == user_id)
        )
        if after is not None:
            query = query.where(tuple_(Project.created_at, Project.id) < tuple_(after.at, after.id))
        query = query.order_by(Project.created_at.desc(), Project.id.desc()).limit(limit)
        return (await self.session.execute(query)).all()


class MemberRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def role_of(self, project_id: uuid.UUID, user_id: uuid.UUID) -> Role | None:
        return await self.session.scalar(
            select(ProjectMember.role).where(
                ProjectMember.project_id == project_id, ProjectMember.user_id == user_id
            )
        )

    async def get(
        self, project_id: uuid.UUID, user_id: uuid.UUID
    ) -> tuple[ProjectMember, User] | None:
        query = (
            select(ProjectMember, User)
            .join(User, User.id == ProjectMember.user_id)
            .where(ProjectMember.project_id == project_id, ProjectMember.user_id == user_id)
        )
        row = (await self.session.execute(query)).first()
        return None if row is None else (row[0], row[1])

    async def list(
        self, project_id: uuid.UUID, *, after: KeysetCursor | None, limit: int
    ) -> Sequence[Row[ProjectMember, str]]:
        """Members with their email, in the order they joined."""
        query = (
            select(ProjectMember, User.email)
            .join(User, User.id == ProjectMember.user_id)
            .where(ProjectMember.project_id == project_id)
        )
        if after is not None:
            query = query.where(
                tuple_(ProjectMember.created_at, ProjectMember.user_id) > tuple_(after.at, after.id)
            )
        query = query.order_by(ProjectMember.created_at, ProjectMember.user_id).limit(limit)
        return (await self.session.execute(query)).all()

    async def count_owners(self, project_id: uuid.UUID) -> int:
        query = select(func.count()).where(
            ProjectMember.project_id == project_id, ProjectMember.role == Role.owner
        )
        return await self.session.scalar(query) or 0

    async def longest_standing_owner(
        self, project_id: uuid.UUID, *, other_than: uuid.UUID
    ) -> uuid.UUID | None:
        query = (
            select(ProjectMember.user_id)
            .where(
                ProjectMember.project_id == project_id,
                ProjectMember.role == Role.owner,
                ProjectMember.user_id != other_than,
            )
            .order_by(ProjectMember.created_at, ProjectMember.user_id)
            .limit(1)
        )
        return await self.session.scalar(query)

    async def remove(self, project_id: uuid.UUID, user_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(ProjectMember).where(
                ProjectMember.project_id == project_id, ProjectMember.user_id == user_id
            )
        )


class ApiKeyRepository:
    """Listing and revoking a project's keys; finding a key to authenticate is `app.auth`'s."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, project_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey | None:
        return await self.session.scalar(
            select(ApiKey).where(ApiKey.project_id == project_id, ApiKey.id == key_id)
        )

    async def list(
        self, project_id: uuid.UUID, *, after: KeysetCursor | None, limit: int
    ) -> Sequence[ApiKey]:
        """The project's keys, revoked ones included, newest first."""
        query = select(ApiKey).where(ApiKey.project_id == project_id)
        if after is not None:
            query = query.where(tuple_(ApiKey.created_at, ApiKey.id) < tuple_(after.at, after.id))
        query = query.order_by(ApiKey.created_at.desc(), ApiKey.id.desc()).limit(limit)
        return (await self.session.scalars(query)).all()

    async def revoke(self, key_id: uuid.UUID, *, now: datetime) -> ApiKey | None:
        """Revoke the key unless it already is; the revoked row, or None if nothing changed."""
        query = (
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(ApiKey)
            .execution_options(populate_existing=True)
        )
        return await self.session.scalar(query)

    async def revoke_created_by(
        self, user_id: uuid.UUID, *, project_id: uuid.UUID | None, now: datetime
    ) -> Sequence[ApiKey]:
        """Revoke the live keys the user created, in one project (or in every one, None); the
        revoked rows."""
        query = update(ApiKey).where(ApiKey.created_by == user_id, ApiKey.revoked_at.is_(None))
        if project_id is not None:
            query = query.where(ApiKey.project_id == project_id)
        query = (
            query.values(revoked_at=now).returning(ApiKey).execution_options(populate_existing=True)
        )
        return (await self.session.scalars(query)).all()


class DeletedProjectRepository:
    """Deleted projects whose objects are still to be swept (`app.projects.deletions`)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim(self, *, limit: int) -> Sequence[DeletedProject]:
        """Up to `limit` of them, never checked or least recently checked first, locked until
        commit (`SKIP LOCKED`: several schedulers share them)."""
        query = (
            select(DeletedProject)
            .order_by(DeletedProject.checked_at.asc().nulls_first(), DeletedProject.deleted_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(query)).all()

    async def checked(self, project_id: uuid.UUID, *, now: datetime, objects_deleted: int) -> None:
        await self.session.execute(
            update(DeletedProject)
            .where(DeletedProject.project_id == project_id)
            .values(checked_at=now, objects_deleted=objects_deleted)
            .execution_options(synchronize_session=False)
        )

    async def forget(self, project_id: uuid.UUID) -> None:
        await self.session.execute(
            delete(DeletedProject).where(DeletedProject.project_id == project_id)
        )
