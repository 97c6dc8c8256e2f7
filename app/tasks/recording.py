"""A task's events: each carries the task as the API shows it, for the event's subscribers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.events import service as event_service
from app.events.service import Recorded
from app.tasks.models import Task
from app.tasks.schemas import TaskRead

if TYPE_CHECKING:
    from app.auth.principal import Principal


def record(
    session: AsyncSession,
    task: Task,
    kind: str,
    *,
    actor: Principal | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Record `kind` about `task`. Webhooks get the task as it is at this moment (no presigned
    `result_url`: it would expire before a late retry; receivers fetch the task for one) and
    the id of the request that submitted it."""
    event_service.record(
        session,
        kind,
        project_id=task.project_id,
        subject_id=task.id,
        actor=actor,
        data=data,
        subject=subject_of(task),
        request_id=task.request_id,
    )


def recorded(
    task: Task, kind: str, *, actor: Principal | None = None, data: dict[str, Any] | None = None
) -> Recorded:
    """`record`'s event, for a statement that writes it (`events.statement`)."""
    event = event_service.new_event(
        kind, project_id=task.project_id, subject_id=task.id, actor=actor, data=data
    )
    return Recorded(event, subject=subject_of(task), request_id=task.request_id)


def subject_of(task: Task) -> dict[str, Any]:
    """The task as the API shows it, for an event's subscribers."""
    return TaskRead.model_validate(task).model_dump(mode="json")
