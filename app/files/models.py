"""Files: metadata of objects in S3."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TimestampMixin


class FileStatus(enum.StrEnum):
    pending = "pending"  # announced (presigned upload) or being written; no verified object yet
    ready = "ready"  # the object exists with the recorded size


class File(TimestampMixin, Base):
    __tablename__ = "files"
    __table_args__ = (
        Index(None, "project_id", "created_at"),
        # The retention sweep: files due for deletion, oldest first.
        Index(
            "ix_files_expires_at",
            "expires_at",
            postgresql_where=text("expires_at IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(1024), unique=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[FileStatus] = mapped_column(default=FileStatus.pending)
    created_by: Mapped[uuid.UUID | None]
    # The task that wrote this file (an output); None for uploads.
    task_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tasks.id", ondelete="SET NULL"))
    # When the retention sweep deletes the row and its object; None: kept until deleted.
    expires_at: Mapped[datetime | None]
