"""Tasks, the API side: submit, read, list, cancel, long-poll.

Every transition is a guarded UPDATE in `TaskRepository`, so it happens once however many
workers, schedulers or duplicate messages race for it; each writes its event in the same
transaction. The worker side is `lifecycle.py`, the scheduler's `scheduling.py`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.principal import Principal
from app.core.config import TaskSettings
from app.core.context import request_id_var
from app.core.db import detached, transaction, utc_now
from app.core.errors import validation_detail
from app.core.pagination import decode_keyset, keyset, page_of
from app.events import service as event_service
from app.events.models import Event
from app.files import service as file_service
from app.projects import access as project_access
from app.projects.access import ProjectAccess
from app.projects.models import Role
from app.tasks import intake, recording
from app.tasks.cache import TaskCache
from app.tasks.dispatch import dispatch, dispatch_committed
from app.tasks.exceptions import (
    IdempotencyKeyReused,
    InvalidTaskInput,
    TaskAlreadyFinished,
    TaskLimitExceeded,
    TaskNotFound,
    UnknownTaskType,
)
from app.tasks.models import (
    ERROR_MESSAGE_LIMIT,
    TERMINAL_STATUSES,
    Task,
    TaskStatus,
    insert_values,
)
from app.tasks.repository import TaskRepository
from app.tasks.schemas import TaskSubmit
from app.tasks.waiter import TaskWaiter
from app.tasktypes.filerefs import collect_file_refs
from app.tasktypes.registry import Registry, TaskTypeNotRegistered
from app.worker import enqueue


def request_hash(data: TaskSubmit) -> str:
    """A stable fingerprint of a submission, to tell a replay from a different request."""
    body = data.model_dump(mode="json")
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _validated(data: TaskSubmit, registry: Registry, limits: TaskSettings) -> dict[str, Any]:
    try:
        task_type = registry.get(data.type)
    except TaskTypeNotRegistered:
        raise UnknownTaskType(
            f"no task type named {data.type!r}; GET /v1/task-types lists them"
        ) from None
    if len(orjson.dumps(data.input)) > limits.max_input_bytes:
        raise TaskLimitExceeded(f"input is larger than {limits.max_input_bytes} bytes")
    try:
        task_type.parse_input(data.input)
    except ValidationError as exc:
        errors = [
            {"loc": ["body", "input", *error["loc"]], "msg": error["msg"], "type": error["type"]}
            for error in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
        raise InvalidTaskInput(
            validation_detail(errors, limit=ERROR_MESSAGE_LIMIT), errors
        ) from None
    max_attempts = data.max_attempts or task_type.default_max_attempts
    timeout_s = data.timeout_s or task_type.default_timeout_s
    if max_attempts > limits.max_attempts_cap:
        raise TaskLimitExceeded(f"max_attempts is capped at {limits.max_attempts_cap}")
    if timeout_s > limits.max_timeout_s:
        raise TaskLimitExceeded(f"timeout_s is capped at {limits.max_timeout_s}")
    if data.run_at is not None and data.run_at > utc_now() + timedelta(seconds=limits.max_delay_s):
        raise TaskLimitExceeded(f"run_at may be at most {limits.max_delay_s} s ahead")
    return {"max_attempts": max_attempts, "timeout_s": timeout_s}


async def _check_file_refs(
    session: AsyncSession, *, project_id: uuid.UUID, data: TaskSubmit, registry: Registry
) -> None:
    """Every file the input refers to must be a file of the task's project (422 naming it)."""
    refs = list(collect_file_refs(registry.get(data.type).parse_input(data.input)))
    missing = await file_service.missing_in_project(
        session, project_id=project_id, file_ids={ref for _, ref in refs}
    )
    if missing:
        errors = [
            {
                "loc": ["body", "input", *location],
                "msg": "no file with this id in the project",
                "type": "file_not_found",
            }
            for location, ref in refs
            if ref in missing
        ]
        raise InvalidTaskInput(validation_detail(errors, limit=ERROR_MESSAGE_LIMIT), errors)


async def submit(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    access: ProjectAccess,
    data: TaskSubmit,
    idempotency_key: str | None,
    registry: Registry,
    limits: TaskSettings,
    admit: Callable[[], Awaitable[None]] | None = None,
) -> tuple[Task, bool]:
    """Record a task and its `task.created` event; return it and whether it is new. `access`
    is at least `member` (`RequireRole`). `admit` (the caller's rate limit and the backlogs'
    caps) runs once the input is valid, before anything is written, and raises to refuse it.

    The same idempotency key with the same body returns the original task; with another body
    it is a conflict. A new task due now is published once its row has committed. A task with
    no file references is written in one statement (`intake.py`); one with file references in
    a transaction that checks them after the insert, so a replay still returns its task.
    """
    defaults = _validated(data, registry, limits)
    if admit is not None:
        await admit()
    now = utc_now()
    due = data.run_at is None or data.run_at <= now
    values = {
        "id": uuid.uuid4(),
        "project_id": access.project_id,
        "type": data.type,
        "status": TaskStatus.queued,
        "priority": data.priority,
        "input": data.input,
        "result": None,
        "result_key": None,
        "error": None,
        "progress": None,
        "progress_message": None,
        "attempt": 0,
        "idempotency_key": idempotency_key,
        "request_hash": request_hash(data),
        "run_at": data.run_at,
        # Optimistic: published right after commit; if that fails this is cleared and the
        # scheduler publishes instead (at once, while the broker is known to be away).
        "dispatched_at": now if due and enqueue.available() else None,
        "lease_expires_at": None,
        "worker": None,
        "cancel_requested_at": None,
        "created_by": access.actor_id,
        "request_id": request_id_var.get(),
        "started_at": None,
        "finished_at": None,
        "created_at": now,
        **defaults,
    }
    if any(collect_file_refs(registry.get(data.type).parse_input(data.input))):
        async with transaction(sessionmaker) as session:
            return await _submit_in_session(
                session, Task(**values), access=access, data=data, registry=registry
            )
    task = detached(Task, values)  # written by a statement, never added to a session
    created = recording.recorded(
        task, "task.created", actor=access.principal, data=_created_data(task)
    )
    values = insert_values(task)
    if not await intake.insert_task(sessionmaker, values, created):
        async with transaction(sessionmaker) as session:
            return await _replay(session, task), False
    if task.dispatched_at is not None and (sending := dispatch_committed(sessionmaker, task)):
        await sending
    return task, True


def _created_data(task: Task) -> dict[str, Any]:
    return {"type": task.type, "priority": task.priority.value}


async def _replay(session: AsyncSession, task: Task) -> Task:
    """The task first submitted with `task`'s idempotency key, if the body is the same."""
    assert task.idempotency_key is not None  # noqa: S101 (only a key can conflict)
    existing = await TaskRepository(session).by_idempotency_key(
        task.project_id, task.idempotency_key
    )
    if existing is None:  # pragma: no cover - the conflicting row cannot vanish (no deletes)
        raise IdempotencyKeyReused("the original request is gone; use a new key")
    if existing.request_hash != task.request_hash:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request body")
    return existing


async def _submit_in_session(
    session: AsyncSession,
    task: Task,
    *,
    access: ProjectAccess,
    data: TaskSubmit,
    registry: Registry,
) -> tuple[Task, bool]:
    values = insert_values(task)
    inserted = await TaskRepository(session).insert_unless_key_exists(values)
    if inserted is None:
        return await _replay(session, task), False
    # After the insert, so a replay still returns its task; raising rolls the insert back.
    await _check_file_refs(session, project_id=access.project_id, data=data, registry=registry)
    recording.record(
        session, inserted, "task.created", actor=access.principal, data=_created_data(inserted)
    )
    if inserted.dispatched_at is not None:
        dispatch(session, inserted)
    return inserted, True


async def get_for_reader(
    session: AsyncSession, *, principal: Principal, task_id: uuid.UUID
) -> Task:
    """The task, if the caller may read its project; otherwise `TaskNotFound` (never a 403)."""
    task = await TaskRepository(session).get(task_id)
    if task is None:
        raise TaskNotFound()
    await project_access.require_role(
        session,
        project_id=task.project_id,
        principal=principal,
        role=Role.viewer,
        hidden_as=TaskNotFound,
    )
    return task


async def cancel(session: AsyncSession, *, principal: Principal, task_id: uuid.UUID) -> Task:
    """Cancel a waiting task at once, or ask a running one to stop; 409 when already finished."""
    task = await get_for_reader(session, principal=principal, task_id=task_id)
    await project_access.require_role(
        session, project_id=task.project_id, principal=principal, role=Role.member
    )
    repository = TaskRepository(session)
    now = utc_now()
    canceled = await repository.cancel_waiting(task_id, now=now)
    if canceled is not None:
        recording.record(session, canceled, "task.canceled", actor=principal)
        await repository.notify_finished(task_id)
        return canceled
    running = await repository.request_cancel(task_id, now=now)
    if running is not None:
        recording.record(session, running, "task.cancel_requested", actor=principal)
        return running
    raise TaskAlreadyFinished(f"the task is already {task.status.value}")


async def list_tasks(
    session: AsyncSession,
    *,
    access: ProjectAccess,
    status: TaskStatus | None,
    type: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Task], str | None]:
    """A page of the project's tasks, newest first."""
    rows = await TaskRepository(session).list_for_project(
        access.project_id, status=status, type=type, after=decode_keyset(cursor), limit=limit + 1
    )
    return page_of(rows, limit=limit, position=lambda task: keyset(task.created_at, task.id))


async def list_task_events(
    session: AsyncSession,
    *,
    principal: Principal,
    task_id: uuid.UUID,
    limit: int,
    cursor: str | None,
) -> tuple[list[Event], str | None]:
    """A page of one task's events, newest first."""
    task = await get_for_reader(session, principal=principal, task_id=task_id)
    return await event_service.list_events(
        session, project_id=task.project_id, subject_id=task.id, limit=limit, cursor=cursor
    )


async def await_finished(
    sessionmaker: async_sessionmaker[AsyncSession],
    waiter: TaskWaiter,
    *,
    principal: Principal,
    task_id: uuid.UUID,
    wait_s: float,
    cache: TaskCache | None = None,
) -> Task:
    """The task once it is terminal, or as it is after `wait_s`; no connection held meanwhile.
    A finished task comes from `cache` when it holds it (the caller's access checked as ever)."""
    if cache is not None and (cached := await cache.get(task_id)) is not None:
        await project_access.authorize_detached(
            sessionmaker,
            project_id=cached.project_id,
            principal=principal,
            role=Role.viewer,
            hidden_as=TaskNotFound,
        )
        return cached
    task = await _await_finished(
        sessionmaker, waiter, principal=principal, task_id=task_id, wait_s=wait_s
    )
    if cache is not None:
        await cache.put(task)
    return task


async def _await_finished(
    sessionmaker: async_sessionmaker[AsyncSession],
    waiter: TaskWaiter,
    *,
    principal: Principal,
    task_id: uuid.UUID,
    wait_s: float,
) -> Task:
    deadline = time.monotonic() + wait_s
    async with waiter.subscription(task_id) as finished:
        async with transaction(sessionmaker) as session:
            task = await get_for_reader(session, principal=principal, task_id=task_id)
        while not is_terminal(task) and (remaining := deadline - time.monotonic()) > 0:
            await waiter.wait(finished, remaining)
            async with transaction(sessionmaker) as session:
                task = await TaskRepository(session).get(task_id) or task
    return task


def is_terminal(task: Task) -> bool:
    return task.status in TERMINAL_STATUSES
