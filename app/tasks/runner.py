"""Executing one task attempt on a worker: lease, run with heartbeats and a deadline, record."""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core import tracing
from app.core.config import TaskSettings
from app.core.context import project_id_var, request_id_var, task_id_var
from app.core.db import transaction
from app.core.types import check_storable_json
from app.files import results as file_results
from app.files.storage import Storage, StorageError
from app.files.taskfiles import TaskFiles
from app.tasks import grouped, lifecycle
from app.tasks.metrics import record_attempt
from app.tasks.models import Task
from app.tasktypes.base import TaskCanceled, TaskContext, TaskError
from app.tasktypes.registry import Registry, TaskTypeNotRegistered

if TYPE_CHECKING:
    from opentelemetry.trace import Span

log = logging.getLogger(__name__)

# How an attempt ended, as its log line gives it: `status` and, for a failure, the error's type.
Outcome = dict[str, Any]


class StopReason(enum.StrEnum):
    """Why an attempt stopped before its handler returned."""

    canceled = "canceled"
    timed_out = "timed_out"
    lease_lost = "lease_lost"
    released = "released"


@dataclass(frozen=True)
class Shutdown:
    """The worker's warm shutdown: when it was asked (None while it runs on), and how long a
    handler may go on after that before its attempt is stopped and its task released."""

    requested_at: Callable[[], float | None]
    grace_s: float

    def release_at(self) -> float | None:
        requested_at = self.requested_at()
        return None if requested_at is None else requested_at + self.grace_s


async def execute(
    sessionmaker: async_sessionmaker[AsyncSession],
    task_id: uuid.UUID,
    *,
    registry: Registry,
    limits: TaskSettings,
    worker: str,
    storage: Storage,
    running_cap: int,
    shutdown: Shutdown | None = None,
) -> Outcome | None:
    """Run one attempt of a task; return how it ended (None: nothing to lease). Safe to receive
    twice: only one worker can lease it. `running_cap`: the deployment's default
    `max_running_tasks` (a project at its cap leases nothing); `shutdown`: the worker's warm
    shutdown, after whose grace the attempt is released. Traced as `task <type>` when tracing
    is on."""
    attempt = functools.partial(
        _execute,
        sessionmaker,
        task_id,
        registry=registry,
        limits=limits,
        worker=worker,
        storage=storage,
        running_cap=running_cap,
        shutdown=shutdown,
    )
    if not tracing.ENABLED:
        return await attempt()
    with tracing.span("task", {"taskgate.task.id": str(task_id)}) as span:
        outcome = await attempt(span=span)
        if span is not None:
            span.set_attribute("taskgate.task.status", outcome["status"] if outcome else "none")
        return outcome


async def _execute(
    sessionmaker: async_sessionmaker[AsyncSession],
    task_id: uuid.UUID,
    *,
    registry: Registry,
    limits: TaskSettings,
    worker: str,
    storage: Storage,
    running_cap: int,
    shutdown: Shutdown | None,
    span: Span | None = None,
) -> Outcome | None:
    task = await grouped.lease(
        sessionmaker, task_id, worker=worker, lease_s=limits.lease_s, running_cap=running_cap
    )
    if task is None:
        log.info("nothing to lease", extra={"task_id": str(task_id)})
        # Leased elsewhere, finished, canceled or not due, or its project runs its
        # max_running_tasks (it waits for a slot): ack and do nothing.
        return None
    if span is not None:
        span.update_name(f"task {task.type}")
        span.set_attributes(_span_attributes(task))
    task_token, project_token, request_token = (
        task_id_var.set(str(task.id)),
        project_id_var.set(str(task.project_id)),
        request_id_var.set(request_id_var.get() or task.request_id),  # the message's, or the row's
    )
    started = time.monotonic()
    try:
        outcome = await _run_leased(
            sessionmaker, task, registry=registry, limits=limits, storage=storage, shutdown=shutdown
        )
        # The attempt's one INFO line (its start is the task's `task.started` event).
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        status = outcome["status"]
        log.log(
            logging.WARNING if status == StopReason.lease_lost else logging.INFO,
            "task attempt %s",
            status,
            extra={
                "type": task.type,
                "attempt": task.attempt,
                **outcome,
                "duration_ms": duration_ms,
            },
        )
        record_attempt(task, status=status, duration_s=duration_ms / 1000)
        return outcome
    finally:
        task_id_var.reset(task_token)
        project_id_var.reset(project_token)
        request_id_var.reset(request_token)


async def execute_all(
    sessionmaker: async_sessionmaker[AsyncSession],
    task_ids: Sequence[uuid.UUID],
    *,
    registry: Registry,
    limits: TaskSettings,
    worker: str,
    storage: Storage,
    running_cap: int,
    shutdown: Shutdown | None = None,
) -> list[Outcome | None]:
    """Run one attempt of each task at once (a job that carries several tasks); their leases
    and successes are grouped (`grouped.py`). Raises the first error once every attempt ended."""
    attempts = [
        execute(
            sessionmaker,
            task_id,
            registry=registry,
            limits=limits,
            worker=worker,
            storage=storage,
            running_cap=running_cap,
            shutdown=shutdown,
        )
        for task_id in task_ids
    ]
    if len(attempts) == 1:  # the usual job: no task around it
        return [await attempts[0]]
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]


async def _run_leased(
    sessionmaker: async_sessionmaker[AsyncSession],
    task: Task,
    *,
    registry: Registry,
    limits: TaskSettings,
    storage: Storage,
    shutdown: Shutdown | None = None,
) -> Outcome:
    """Run the leased attempt and record how it ended; the outcome is what its log line says."""
    log.debug("task started", extra={"attempt": task.attempt, "type": task.type})
    try:
        task_type = registry.get(task.type)
    except TaskTypeNotRegistered:
        return await _fail(
            sessionmaker, task, "unknown_type", f"no handler for {task.type!r}", False, limits
        )
    context = TaskContext(
        task_id=task.id,
        project_id=task.project_id,
        attempt=task.attempt,
        max_attempts=task.max_attempts,
        idempotency_key=task.idempotency_key,
    )
    context.files = TaskFiles(
        sessionmaker=sessionmaker,
        storage=storage,
        project_id=task.project_id,
        task_id=task.id,
        loop=asyncio.get_running_loop(),
        stopping=lambda: context.stopping,
    )
    started = time.monotonic()
    handler = task_type.run(task.input, context)
    if tracing.ENABLED:  # the handler's own span, around the handler alone (not the heartbeats)
        handler = tracing.traced(f"handler {task.type}", _span_attributes(task), handler)
    run = asyncio.create_task(handler)
    stopped = await _supervise(
        sessionmaker,
        task,
        run,
        context,
        limits,
        deadline=started + task.timeout_s,
        shutdown=shutdown,
    )
    if stopped == StopReason.lease_lost:  # the attempt's outcome is discarded
        return {"status": StopReason.lease_lost.value}
    if stopped == StopReason.released:
        return await _release(sessionmaker, task)
    if stopped == StopReason.canceled:
        return await _cancel(sessionmaker, task)
    if stopped == StopReason.timed_out:
        message = f"attempt exceeded timeout_s={task.timeout_s}"
        return await _fail(sessionmaker, task, "timeout", message, True, limits)
    try:
        result = run.result()
    except TaskCanceled:
        return await _cancel(sessionmaker, task)
    except TaskError as exc:
        return await _fail(sessionmaker, task, exc.type, str(exc), exc.retryable, limits)
    except Exception as exc:  # a handler bug: recorded on the task, never crashes the worker
        log.exception("task handler raised")
        message = f"{type(exc).__name__}: {exc}"
        retryable = task_type.is_retryable(exc)
        return await _fail(sessionmaker, task, "internal", message, retryable, limits)
    return await _succeed(sessionmaker, task, result, limits, storage)


def _span_attributes(task: Task) -> dict[str, str | int]:
    """What a span says of an attempt: ids, type and number, never the input."""
    return {
        "taskgate.task.id": str(task.id),
        "taskgate.project.id": str(task.project_id),
        "taskgate.task.type": task.type,
        "taskgate.task.attempt": task.attempt,
    }


async def _supervise(
    sessionmaker: async_sessionmaker[AsyncSession],
    task: Task,
    run: asyncio.Task[Any],
    context: TaskContext,
    limits: TaskSettings,
    *,
    deadline: float,
    shutdown: Shutdown | None = None,
) -> StopReason | None:
    """Heartbeat until the handler ends; stop it on cancel, timeout, a lost lease, or when the
    worker's warm shutdown has waited its grace for it."""
    while True:
        release_at = shutdown.release_at() if shutdown is not None else None
        until = deadline if release_at is None else min(deadline, release_at)
        wait_s = max(0.0, min(limits.heartbeat_s, until - time.monotonic()))
        done, _ = await asyncio.wait({run}, timeout=wait_s)
        if done:
            # The last progress, if any came since the last beat; otherwise nothing to write.
            if (progress := context.take_progress()) is not None:
                await _beat(sessionmaker, task, limits, progress)
            return None
        if time.monotonic() >= deadline:
            return await _stop(run, context, StopReason.timed_out)
        if release_at is not None and time.monotonic() >= release_at:
            return await _stop(run, context, StopReason.released)
        current = await _beat(sessionmaker, task, limits, context.take_progress())
        if current is None:
            return await _stop(run, context, StopReason.lease_lost)
        if current.cancel_requested_at is not None:
            return await _stop(run, context, StopReason.canceled)


async def _beat(
    sessionmaker: async_sessionmaker[AsyncSession],
    task: Task,
    limits: TaskSettings,
    progress: tuple[float, str | None] | None,
) -> Task | None:
    async with transaction(sessionmaker) as session:
        return await lifecycle.heartbeat(
            session,
            task.id,
            attempt=task.attempt,
            lease_s=limits.lease_s,
            progress=progress,
        )


async def _stop(run: asyncio.Task[Any], context: TaskContext, reason: StopReason) -> StopReason:
    context.stop()  # cooperative: sync handlers in threads see it at their next stop point
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    return reason


async def _succeed(
    sessionmaker: async_sessionmaker[AsyncSession],
    task: Task,
    result: Any,
    limits: TaskSettings,
    storage: Storage,
) -> Outcome:
    try:
        payload = orjson.dumps(result)
        check_storable_json(result)
    except (TypeError, ValueError) as exc:
        message = f"result is not storable JSON: {exc}"
        return await _fail(sessionmaker, task, "invalid_result", message, False, limits)
    if len(payload) <= limits.inline_result_bytes:
        return _succeeded(await grouped.succeed(sessionmaker, task, result=result))
    try:
        key = await file_results.store_result(
            storage, project_id=task.project_id, task_id=task.id, payload=payload
        )
    except StorageError as exc:
        return await _fail(sessionmaker, task, "storage_unavailable", str(exc), True, limits)
    return _succeeded(await lifecycle.succeed_now(sessionmaker, task, result=None, result_key=key))


async def _release(sessionmaker: async_sessionmaker[AsyncSession], task: Task) -> Outcome:
    async with transaction(sessionmaker) as session:
        return _ended(await lifecycle.release(session, task), released=True)


async def _cancel(sessionmaker: async_sessionmaker[AsyncSession], task: Task) -> Outcome:
    async with transaction(sessionmaker) as session:
        return _ended(await lifecycle.end_canceled(session, task))


def _succeeded(ended: Task | None) -> Outcome:
    return {"status": "succeeded" if ended is not None else StopReason.lease_lost.value}


def _ended(ended: Task | None, **fields: Any) -> Outcome:
    """The status the attempt left its task in; `lease_lost` when its guard found nothing."""
    status = ended.status.value if ended is not None else StopReason.lease_lost.value
    return {"status": status, **fields}


async def _fail(
    sessionmaker: async_sessionmaker[AsyncSession],
    task: Task,
    error_type: str,
    message: str,
    retryable: bool,
    limits: TaskSettings,
) -> Outcome:
    async with transaction(sessionmaker) as session:
        ended = await lifecycle.fail_attempt(
            session,
            task,
            error_type=error_type,
            message=message,
            retryable=retryable,
            limits=limits,
        )
    return _ended(ended, error_type=error_type, retryable=retryable)
