"""Handing tasks to the workers: one `tasks.execute` job per attempt, on its priority's queue."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.tasks.models import Priority, Task
from app.tasks.repository import TaskRepository
from app.worker import enqueue
from app.worker.names import Job


async def forget_unsent(session: AsyncSession, messages: Sequence[enqueue.Message]) -> None:
    """Tasks the broker refused stay queued and undispatched: the scheduler publishes them."""
    ids = [uuid.UUID(task_id) for message in messages for task_id in message.args]
    await TaskRepository(session).forget_dispatch(ids)


def dispatch(
    session: AsyncSession, task_id: uuid.UUID, *, priority: Priority, timeout_s: int
) -> None:
    """Publish the task's job once `session` commits (its `dispatched_at` is already set)."""
    enqueue.enqueue(
        session,
        Job.execute_task,
        str(task_id),
        queue=priority.queue,
        timeout_s=timeout_s,
        unsent=forget_unsent,
    )


def dispatch_committed(
    sessionmaker: async_sessionmaker[AsyncSession], task: Task
) -> Awaitable[None] | None:
    """`dispatch` for a task whose row committed by itself (`intake.insert_task`)."""
    return enqueue.enqueue_committed(
        sessionmaker,
        Job.execute_task,
        [(str(task.id),)],
        queue=task.priority.queue,
        timeout_s=task.timeout_s,
        unsent=forget_unsent,
    )
