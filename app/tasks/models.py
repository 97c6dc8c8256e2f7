"""Tasks: the durable record of every submitted piece of work."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, TimestampMixin
from app.worker.names import Queue


class TaskStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    retrying = "retrying"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


# Error messages (and validation details) are cut to this many characters.
ERROR_MESSAGE_LIMIT = 1000

TERMINAL_STATUSES = frozenset({TaskStatus.succeeded, TaskStatus.failed, TaskStatus.canceled})


class Priority(enum.StrEnum):
    """A task's priority; each has the broker queue of the same name."""

    high = "high"
    default = "default"
    low = "low"

    @property
    def queue(self) -> Queue:
        return Queue(self.value)


class Task(TimestampMixin, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        # GET /projects/{id}/tasks?status=… newest first.
        Index(None, "project_id", "status", "created_at"),
        Index(None, "project_id", "created_at"),
        UniqueConstraint("project_id", "idempotency_key"),
        # The scheduler's scans: due or undispatched queued tasks, and expired leases.
        Index(
            "ix_tasks_due_for_dispatch",
            "run_at",
            postgresql_where=text("status IN ('queued', 'retrying')"),
        ),
        Index(
            "ix_tasks_lease_expires_at",
            "lease_expires_at",
            postgresql_where=text("status = 'running'"),
        ),
        # Queued tasks that no message carries (refused at their project's `max_running_tasks`,
        # or not published yet), by when they became due: a finishing attempt hands its freed
        # slot to its project's next one (`statements.py`). Submit and the lease never write
        # to it (a new task is published, a leased one is running).
        Index(
            "ix_tasks_waiting",
            "project_id",
            text("coalesce(run_at, created_at)"),
            postgresql_where=text("status = 'queued' AND dispatched_at IS NULL"),
        ),
        # The retention sweep: succeeded tasks that still hold a result, oldest first.
        Index(
            "ix_tasks_results_to_expire",
            "finished_at",
            postgresql_where=text(
                "status = 'succeeded' AND (result IS NOT NULL OR result_key IS NOT NULL)"
            ),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(100))
    status: Mapped[TaskStatus] = mapped_column(default=TaskStatus.queued)
    priority: Mapped[Priority] = mapped_column(default=Priority.default)
    input: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    result: Mapped[Any | None] = mapped_column(JSONB)
    result_key: Mapped[str | None] = mapped_column(String(512))
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    progress: Mapped[float | None]
    progress_message: Mapped[str | None] = mapped_column(String(500))
    attempt: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    timeout_s: Mapped[int] = mapped_column(default=300)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # sha256 of the submitted body, so a reused idempotency key with another body is a 409.
    request_hash: Mapped[str | None] = mapped_column(String(64))
    run_at: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(255))
    cancel_requested_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None]
    request_id: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


# Every column of `tasks`, in table order: what a submit writes.
TASK_COLUMNS = tuple(column.name for column in Task.__table__.columns)
JSON_COLUMNS = frozenset({"input", "result", "error"})


def insert_values(task: Task) -> dict[str, Any]:
    """The columns of a new (transient) task for an INSERT. A JSON column that is None is left
    out, so it is SQL NULL (as a row the ORM writes), not the JSON value `null`."""
    values = {column: getattr(task, column) for column in TASK_COLUMNS}
    return {
        column: value
        for column, value in values.items()
        if value is not None or column not in JSON_COLUMNS
    }
