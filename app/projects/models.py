"""Projects and their members (their API keys are `app.auth.models.ApiKey`)."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TimestampMixin


class Role(enum.StrEnum):
    owner = "owner"
    admin = "admin"
    member = "member"
    viewer = "viewer"


# What each role may do, lowest first: a role has every power of the roles before it.
ROLE_RANK = {Role.viewer: 0, Role.member: 1, Role.admin: 2, Role.owner: 3}


class ApiKeyScope(enum.StrEnum):
    """An API key acts as `member` with `write`, as `viewer` with `read` only."""

    read = "read"
    write = "write"


class Project(TimestampMixin, Base):
    __tablename__ = "projects"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class ProjectMember(TimestampMixin, Base):
    __tablename__ = "project_members"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[Role]


class DeletedProject(Base):
    """A deleted project whose objects in S3 are still to be removed (`app.files.project_sweep`).

    Written in the deletion's transaction; the row goes once the sweep found its prefix empty
    after the grace period in which an attempt still running could write there."""

    __tablename__ = "deleted_projects"

    # No foreign key: the project row is gone.
    project_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    deleted_at: Mapped[datetime]
    # When a sweep last listed its prefix (NULL: never): the least recently checked go first.
    checked_at: Mapped[datetime | None]
    # Objects deleted since the last `project.objects_deleted` event.
    objects_deleted: Mapped[int] = mapped_column(default=0)
