"""The task lifecycle: submit, lease, heartbeat, finish, retry, cancel, reap, dispatch.

Every transition is a guarded UPDATE in `TaskRepository`, so it happens once however many
workers, schedulers or duplicate messages race for it; each writes its event in the same
transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.principal import Principal
from app.core.config import TaskSettings
from app.core.context import request_id_var
from app.core.db import after_commit, transaction, utc_now
from app.core.pagination import decode_keyset, keyset, page_of
from app.events import service as event_service
from app.events.models import Event
from app.files import service as file_service
from app.files.storage import Storage
from app.projects import service as project_service
from app.projects.models import Role
from app.projects.service import ProjectAccess
from app.tasks.dispatch import BackgroundDispatcher
from app.tasks.exceptions import (
    IdempotencyKeyReused,
    InvalidTaskInput,
    TaskAlreadyFinished,
    TaskLimitExceeded,
    TaskNotFound,
    UnknownTaskType,
)
from app.tasks.models import TERMINAL_STATUSES, Priority, Task, TaskStatus
from app.tasks.repository import TaskRepository
from app.tasks.schemas import TaskRead, TaskSubmit
from app.tasks.waiter import TaskWaiter
from app.tasktypes.filerefs import collect_file_refs
from app.tasktypes.registry import Registry
from app.tasktypes.registry import UnknownTaskType as UnknownRegistryType
from app.webhooks import service as webhook_service

ERROR_MESSAGE_LIMIT = 1000


def request_hash(data: TaskSubmit) -> str:
    """A stable fingerprint of a submission, to tell a replay from a different request."""
    body = data.model_dump(mode="json")
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _validated(data: TaskSubmit, registry: Registry, limits: TaskSettings) -> dict[str, Any]:
    try:
        task_type = registry.get(data.type)
    except UnknownRegistryType:
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
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        raise InvalidTaskInput(detail[:ERROR_MESSAGE_LIMIT], errors) from None
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
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        raise InvalidTaskInput(detail[:ERROR_MESSAGE_LIMIT], errors)


async def submit(
    session: AsyncSession,
    *,
    access: ProjectAccess,
    data: TaskSubmit,
    idempotency_key: str | None,
    registry: Registry,
    limits: TaskSettings,
    dispatcher: BackgroundDispatcher,
) -> tuple[Task, bool]:
    """Record a task and its `task.created` event; return it and whether it is new. `access`
    is at least `member` (`RequireRole`).

    The same idempotency key with the same body returns the original task; with another body
    it is a conflict. The caller dispatches a new task once the transaction has committed.
    """
    project_id = access.project_id
    defaults = _validated(data, registry, limits)
    fingerprint = request_hash(data)
    now = utc_now()
    values = {
        "id": uuid.uuid4(),
        "project_id": project_id,
        "type": data.type,
        "status": TaskStatus.queued,
        "priority": data.priority,
        "input": data.input,
        "run_at": data.run_at,
        "idempotency_key": idempotency_key,
        "request_hash": fingerprint,
        "created_by": access.actor_id,
        "request_id": request_id_var.get(),
        "created_at": now,
        "attempt": 0,
        # Optimistic: the caller publishes right after commit; if that fails it clears this and
        # the scheduler publishes instead.
        "dispatched_at": now if data.run_at is None or data.run_at <= now else None,
        **defaults,
    }
    repository = TaskRepository(session)
    task = await repository.insert_unless_key_exists(values)
    if task is None:
        assert idempotency_key is not None  # noqa: S101 (only a key can conflict)
        existing = await repository.by_idempotency_key(project_id, idempotency_key)
        if existing is None:  # pragma: no cover - the conflicting row cannot vanish (no deletes)
            raise IdempotencyKeyReused("the original request is gone; use a new key")
        if existing.request_hash != fingerprint:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request body"
            )
        return existing, False
    # After the insert, so a replay still returns its task; raising rolls the insert back.
    await _check_file_refs(session, project_id=project_id, data=data, registry=registry)
    event = event_service.record(
        session,
        "task.created",
        project_id=project_id,
        subject_id=task.id,
        actor=access.principal,
        data={"type": task.type, "priority": task.priority.value},
    )
    _attach_task(session, event, task)
    if task.dispatched_at is not None:
        task_id, priority, timeout_s = task.id, task.priority, task.timeout_s
        after_commit(session, lambda: dispatcher.dispatch_soon(task_id, priority, timeout_s))
    return task, True


async def get_for_reader(
    session: AsyncSession, *, principal: Principal, task_id: uuid.UUID
) -> Task:
    """The task, if the caller may read its project; otherwise `TaskNotFound` (never a 403)."""
    task = await TaskRepository(session).get(task_id)
    if task is None:
        raise TaskNotFound()
    await project_service.require_role(
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
    await project_service.require_role(
        session, project_id=task.project_id, principal=principal, role=Role.member
    )
    repository = TaskRepository(session)
    now = utc_now()
    canceled = await repository.cancel_waiting(task_id, now=now)
    if canceled is not None:
        _record(session, canceled, "task.canceled", actor=principal)
        await repository.notify_finished(task_id)
        return canceled
    running = await repository.request_cancel(task_id, now=now)
    if running is not None:
        _record(session, running, "task.cancel_requested", actor=principal)
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
) -> Task:
    """The task once it is terminal, or as it is after `wait_s`; no connection held meanwhile."""
    deadline = time.monotonic() + wait_s
    async with waiter.subscription(task_id) as finished:
        async with transaction(sessionmaker) as session:
            task = await get_for_reader(session, principal=principal, task_id=task_id)
        while not is_terminal(task) and (remaining := deadline - time.monotonic()) > 0:
            await waiter.wait(finished, remaining)
            async with transaction(sessionmaker) as session:
                task = await TaskRepository(session).get(task_id) or task
    return task


def _record(
    session: AsyncSession,
    task: Task,
    kind: str,
    *,
    actor: Principal | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    event = event_service.record(
        session, kind, project_id=task.project_id, subject_id=task.id, actor=actor, data=data
    )
    _attach_task(session, event, task)


def _attach_task(session: AsyncSession, event: Event, task: Task) -> None:
    """The event's webhooks carry the task as the API shows it at this moment (no presigned
    `result_url`: it would expire before a late retry; receivers fetch the task for one)."""
    webhook_service.attach_subject(
        session,
        event,
        TaskRead.model_validate(task).model_dump(mode="json"),
        request_id=task.request_id,
    )


# The worker side: no principal, every step guarded by status and attempt.


async def lease(
    session: AsyncSession, task_id: uuid.UUID, *, worker: str, lease_s: float
) -> Task | None:
    """Take a queued task for this worker; None when another took it or it is not queued."""
    task = await TaskRepository(session).lease(
        task_id, worker=worker, now=utc_now(), lease_s=lease_s
    )
    if task is not None:
        _record(session, task, "task.started", data={"attempt": task.attempt, "worker": worker})
    return task


async def heartbeat(
    session: AsyncSession,
    task_id: uuid.UUID,
    *,
    attempt: int,
    lease_s: float,
    progress: tuple[float, str | None] | None,
) -> Task | None:
    """Renew the lease; None when it was lost (reaped). The task shows any cancel request."""
    return await TaskRepository(session).heartbeat(
        task_id, attempt=attempt, now=utc_now(), lease_s=lease_s, progress=progress
    )


async def succeed(
    session: AsyncSession, task: Task, *, result: Any, result_key: str | None = None
) -> Task | None:
    """End the attempt as succeeded, with its result inline or (large) under `result_key` in S3."""
    ended = await TaskRepository(session).end_attempt(
        task.id,
        attempt=task.attempt,
        status=TaskStatus.succeeded,
        result=result,
        result_key=result_key,
        error=None,
        progress=1.0,
        finished_at=utc_now(),
    )
    if ended is not None:
        _record(session, ended, "task.succeeded", data={"attempt": ended.attempt})
        await TaskRepository(session).notify_finished(task.id)
    return ended


async def end_canceled(session: AsyncSession, task: Task) -> Task | None:
    ended = await TaskRepository(session).end_attempt(
        task.id,
        attempt=task.attempt,
        status=TaskStatus.canceled,
        finished_at=utc_now(),
        error={"type": "canceled", "message": "canceled while running"},
    )
    if ended is not None:
        _record(session, ended, "task.canceled", data={"attempt": ended.attempt})
        await TaskRepository(session).notify_finished(task.id)
    return ended


def retry_delay(attempt: int, *, base_s: float, cap_s: float) -> float:
    """Exponential backoff with full jitter on the upper half: base·2^(attempt-1), capped."""
    ceiling = min(cap_s, base_s * 2.0 ** max(attempt - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 (jitter, not security)


async def fail_attempt(
    session: AsyncSession,
    task: Task,
    *,
    error_type: str,
    message: str,
    retryable: bool,
    limits: TaskSettings,
) -> Task | None:
    """End a failed attempt: `retrying` with backoff while attempts remain, else `failed`."""
    # jsonb refuses NUL characters; an error message must always be storable.
    error = {"type": error_type, "message": message.replace("\x00", "")[:ERROR_MESSAGE_LIMIT]}
    now = utc_now()
    repository = TaskRepository(session)
    if retryable and task.attempt < task.max_attempts:
        delay = retry_delay(task.attempt, base_s=limits.retry_base_s, cap_s=limits.retry_cap_s)
        ended = await repository.end_attempt(
            task.id,
            attempt=task.attempt,
            status=TaskStatus.retrying,
            error=error,
            run_at=now + timedelta(seconds=delay),
            dispatched_at=None,
        )
        if ended is not None:
            _record(
                session,
                ended,
                "task.retrying",
                data={"attempt": ended.attempt, "error": error, "delay_s": round(delay, 3)},
            )
        return ended
    ended = await repository.end_attempt(
        task.id, attempt=task.attempt, status=TaskStatus.failed, error=error, finished_at=now
    )
    if ended is not None:
        _record(session, ended, "task.failed", data={"attempt": ended.attempt, "error": error})
        await repository.notify_finished(task.id)
    return ended


# The scheduler side.


async def promote_due_retries(session: AsyncSession, *, limit: int) -> int:
    return len(await TaskRepository(session).promote_due_retries(now=utc_now(), limit=limit))


async def reap_expired_leases(session: AsyncSession, *, limit: int) -> Sequence[Task]:
    """Put back (or end) tasks whose worker died; each gets its event and, if ended, a wake-up."""
    repository = TaskRepository(session)
    reaped = await repository.reap_expired_leases(now=utc_now(), limit=limit)
    for task in reaped:
        if task.status == TaskStatus.queued:
            _record(session, task, "task.requeued", data={"reason": "lease_expired"})
            continue
        kind = "task.canceled" if task.status == TaskStatus.canceled else "task.failed"
        _record(session, task, kind, data={"attempt": task.attempt, "error": task.error})
        await repository.notify_finished(task.id)
    return reaped


async def claim_for_dispatch(
    session: AsyncSession,
    *,
    redispatch_after_s: float,
    redispatch_priorities: Sequence[Priority],
    limit: int,
) -> Sequence[tuple[uuid.UUID, Priority, int]]:
    now = utc_now()
    return await TaskRepository(session).claim_for_dispatch(
        now=now,
        stale_before=now - timedelta(seconds=redispatch_after_s),
        redispatch_priorities=redispatch_priorities,
        limit=limit,
    )


async def expire_results(
    session: AsyncSession, *, storage: Storage, finished_before: datetime, limit: int
) -> int:
    """Drop the results of up to `limit` tasks that succeeded before `finished_before`, with their
    S3 objects (deleted before the commit; deleting again after a failed commit is harmless)."""
    expired = await TaskRepository(session).expire_results(
        finished_before=finished_before, limit=limit
    )
    keys = [key for _, _, key in expired if key is not None]
    if keys:
        await asyncio.to_thread(storage.delete_many, keys)
    for task_id, project_id, key in expired:
        event_service.record(
            session,
            "task.result_expired",
            project_id=project_id,
            subject_id=task_id,
            actor=None,
            data={"in_s3": key is not None},
        )
    return len(expired)


async def forget_dispatch(session: AsyncSession, task_ids: Sequence[uuid.UUID]) -> None:
    await TaskRepository(session).forget_dispatch(task_ids)


def is_terminal(task: Task) -> bool:
    return task.status in TERMINAL_STATUSES
