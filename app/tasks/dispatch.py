"""Handing tasks to the workers: one `tasks.execute` job per attempt, on its priority's queue.

Flower and `celery inspect` show the job under the task's type, as Celery task
`<task id>-<attempt>` (a redelivery of the same attempt keeps its id; the next attempt, after a
failure, has its own, so Flower's rows stay true per attempt), with the args line
`type=<type> project=<project id> attempt=<n>`: never the input.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.tasks.models import Priority
from app.tasks.repository import TaskRepository
from app.worker import enqueue
from app.worker.names import Job
from app.worker.wire import Shown


class Dispatchable(Protocol):
    """What publishing a task's job needs of its row (a `Task`, or a claimed row)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def project_id(self) -> uuid.UUID: ...
    @property
    def type(self) -> str: ...
    @property
    def priority(self) -> Priority: ...
    @property
    def timeout_s(self) -> int: ...
    @property
    def attempt(self) -> int: ...
    @property
    def request_id(self) -> str | None: ...


def celery_task_id(task_id: uuid.UUID, attempt: int) -> str:
    """The Celery task id of the job that runs `attempt` of a task (Flower's `/api/task/info`)."""
    return f"{task_id}-{attempt}"


def shown(task: Dispatchable) -> Shown:
    """How Flower shows the job for the task's next attempt (the row has the last one's number)."""
    attempt = task.attempt + 1
    return Shown(
        name=task.type,
        id=celery_task_id(task.id, attempt),
        args=f"type={task.type} project={task.project_id} attempt={attempt}",
    )


async def forget_unsent(session: AsyncSession, messages: Sequence[enqueue.Message]) -> None:
    """Tasks the broker refused stay queued and undispatched: the scheduler publishes them."""
    ids = [uuid.UUID(task_id) for message in messages for task_id in message.args]
    await TaskRepository(session).forget_dispatch(ids)


def dispatch(session: AsyncSession, task: Dispatchable) -> None:
    """Publish the task's job once `session` commits (its `dispatched_at` is already set)."""
    enqueue.enqueue(
        session,
        Job.execute_task,
        str(task.id),
        queue=task.priority.queue,
        timeout_s=task.timeout_s,
        unsent=forget_unsent,
        shown=shown(task),
        request_id=task.request_id,  # the submit's, also when the scheduler publishes it
    )


def dispatch_committed(
    sessionmaker: async_sessionmaker[AsyncSession] | None, task: Dispatchable
) -> Awaitable[None] | None:
    """`dispatch` for a task whose row committed by itself (`intake.insert_task`)."""
    return enqueue.enqueue_committed(
        sessionmaker,
        Job.execute_task,
        [(str(task.id),)],
        queue=task.priority.queue,
        timeout_s=task.timeout_s,
        unsent=forget_unsent,
        shown_each=[shown(task)],
        request_id=task.request_id,
    )


async def hand_on(
    sessionmaker: async_sessionmaker[AsyncSession] | None, tasks: Sequence[Dispatchable]
) -> None:
    """Publish the jobs of waiting tasks that a statement just marked published, each given
    the slot an attempt of its project freed (`statements.py`)."""
    for task in tasks:  # a few at most: as many as the attempts that just ended freed
        if (publishing := dispatch_committed(sessionmaker, task)) is not None:
            await publishing
