"""Task routes: submit, read (with long-poll), list, cancel, events; and the task type catalogue."""

from __future__ import annotations

import functools
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from app.auth.admission import SUBMIT, admission_of
from app.auth.dependencies import CurrentPrincipal, DetachedPrincipal
from app.core.config import Settings
from app.core.dependencies import SessionDep
from app.core.errors import Unauthorized, error_responses
from app.core.pagination import CursorQuery, InvalidCursor, LimitQuery, Page
from app.core.ratelimit import BacklogFull, RateLimited, SystemBacklogFull
from app.events.schemas import EventRead
from app.files import results as file_results
from app.files.dependencies import StorageDep
from app.files.exceptions import StorageUnavailable
from app.files.storage import Storage
from app.projects.dependencies import DetachedMemberAccess, ViewerAccess
from app.projects.exceptions import InsufficientRole, ProjectNotFound
from app.tasks import service as task_service
from app.tasks.dependencies import IdempotencyKey, RegistryDep
from app.tasks.exceptions import (
    IdempotencyKeyReused,
    InvalidTaskInput,
    TaskAlreadyFinished,
    TaskLimitExceeded,
    TaskNotFound,
    UnknownTaskType,
)
from app.tasks.metrics import record_submit
from app.tasks.models import Task, TaskStatus
from app.tasks.schemas import TaskRead, TaskSubmit, TaskTypeRead
from app.tasktypes.registry import get_registry

router = APIRouter(tags=["tasks"])

MAX_WAIT_S = 60


async def _read(tasks: list[Task], storage: Storage) -> list[TaskRead]:
    """Task bodies; a result kept in S3 gets a fresh presigned `result_url`."""
    urls = await file_results.result_links(storage, [task.result_key for task in tasks])
    return [
        TaskRead.model_validate(task).model_copy(update={"result_url": url})
        for task, url in zip(tasks, urls, strict=True)
    ]


async def _written(
    task: Task, settings: Settings, *, status_code: int = status.HTTP_200_OK
) -> Response:
    """The task's body, serialized once: a hot route returns it with `response_model=TaskRead`
    documenting it, where FastAPI would validate the returned model again first."""
    [read] = await _read([task], Storage.from_settings(settings))
    return Response(read.model_dump_json(), status_code=status_code, media_type="application/json")


@router.get("/task-types")
async def list_task_types(registry: RegistryDep) -> Page[TaskTypeRead]:
    """Every task type this deployment runs, with the JSON Schema its `input` must match."""
    items = [
        TaskTypeRead(
            name=task_type.name,
            description=task_type.description,
            input_schema=task_type.input_schema(),
            default_timeout_s=task_type.default_timeout_s,
            default_max_attempts=task_type.default_max_attempts,
        )
        for task_type in registry.all()
    ]
    return Page(items=items, next_cursor=None)


@router.post(
    "/projects/{project_id}/tasks",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=TaskRead,
    openapi_extra=SUBMIT,
    responses={
        200: {"model": TaskRead, "description": "A replay: the task first submitted with this key"},
        **error_responses(
            Unauthorized,
            InsufficientRole,
            ProjectNotFound,
            IdempotencyKeyReused,
            UnknownTaskType,
            InvalidTaskInput,
            TaskLimitExceeded,
            RateLimited,
            BacklogFull,
            SystemBacklogFull,
        ),
    },
)
async def submit_task(
    request: Request,
    data: TaskSubmit,
    access: DetachedMemberAccess,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Queue a task (202). Follow it with `GET /v1/tasks/{id}?wait=30` or a webhook.

    With an `Idempotency-Key` header, repeating the same request returns the original task (200);
    the same key with a different body is a 409.

    Past the caller's submit rate, or with the project at its `max_queued_tasks` unfinished
    tasks, the answer is a 429 with `Retry-After`; with the platform at its cap, a 503.
    """
    # The hottest route: its plumbing comes from the app's state rather than from loaders (each
    # costs FastAPI's resolution more than its work).
    state = request.app.state
    admission = admission_of(request)
    task, created = await task_service.submit(
        state.sessionmaker,
        access=access,
        data=data,
        idempotency_key=idempotency_key,
        registry=get_registry(),
        limits=state.settings.tasks,
        admit=(
            functools.partial(admission.admit_submit, request, access.principal, access.project_id)
            if admission is not None and access.principal is not None
            else None
        ),
    )
    if created:
        record_submit(task)
    return await _written(
        task,
        state.settings,
        status_code=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
    )


@router.get(
    "/projects/{project_id}/tasks",
    responses=error_responses(Unauthorized, ProjectNotFound, InvalidCursor, StorageUnavailable),
)
async def list_tasks(
    access: ViewerAccess,
    session: SessionDep,
    storage: StorageDep,
    status: TaskStatus | None = None,
    type: Annotated[str | None, Query(max_length=100)] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[TaskRead]:
    """The project's tasks, newest first, optionally filtered by `status` and `type`."""
    tasks, next_cursor = await task_service.list_tasks(
        session,
        access=access,
        status=status,
        type=type,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=await _read(tasks, storage), next_cursor=next_cursor)


@router.get(
    "/tasks/{task_id}",
    response_model=TaskRead,
    responses=error_responses(Unauthorized, TaskNotFound, StorageUnavailable),
)
async def get_task(
    request: Request,
    task_id: uuid.UUID,
    principal: DetachedPrincipal,
    wait: Annotated[
        int,
        Query(ge=0, le=MAX_WAIT_S, description="Hold up to this many seconds until it finishes."),
    ] = 0,
) -> Response:
    """The task. With `?wait=N` the answer comes as soon as it is terminal, or after N seconds.

    A result over 64 KiB is kept in S3: `result` is null and `result_url` a presigned GET of
    its JSON, valid for `TASKGATE_FILES__DOWNLOAD_URL_TTL_S` (at most 15 min; read again for a
    fresh one)."""
    # A poller's route, as hot as submit: the same plumbing from the app's state.
    state = request.app.state
    task = await task_service.await_finished(
        state.sessionmaker,
        state.task_waiter,
        principal=principal,
        task_id=task_id,
        wait_s=wait,
        cache=getattr(state, "task_cache", None),
    )
    return await _written(task, state.settings)


@router.post(
    "/tasks/{task_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(Unauthorized, InsufficientRole, TaskNotFound, TaskAlreadyFinished),
)
async def cancel_task(
    task_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal, storage: StorageDep
) -> TaskRead:
    """Cancel a task: a waiting one is `canceled` at once; a running one is asked to stop
    (`cancel_requested_at` is set and it ends `canceled`). A finished task is a 409."""
    task = await task_service.cancel(session, principal=principal, task_id=task_id)
    [read] = await _read([task], storage)
    return read


@router.get(
    "/tasks/{task_id}/events",
    responses=error_responses(Unauthorized, TaskNotFound, InvalidCursor),
)
async def list_task_events(
    task_id: uuid.UUID,
    session: SessionDep,
    principal: CurrentPrincipal,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[EventRead]:
    """This task's events (created, started, retrying, succeeded, …), newest first."""
    events, next_cursor = await task_service.list_task_events(
        session, principal=principal, task_id=task_id, limit=limit, cursor=cursor
    )
    return Page(items=[EventRead.of(event) for event in events], next_cursor=next_cursor)
