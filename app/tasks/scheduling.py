"""Tasks, the scheduler side: promote due retries, reap expired leases, publish due tasks.

A due queued task is published when it never was, or when it was published long ago on a queue
that is now empty (Redis flushed or restarted: the message was lost, not merely waiting), and
only as many of a project's as fit under its `max_running_tasks` (decision 0018).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import transaction, utc_now
from app.core.scheduling import StepContext
from app.tasks.dispatch import dispatch
from app.tasks.models import Priority, Task, TaskStatus
from app.tasks.recording import record
from app.tasks.repository import Claimed, TaskRepository
from app.worker import enqueue


async def scheduler_step(context: StepContext) -> dict[str, int]:
    """One pass: retries whose backoff passed become queued; tasks whose lease expired are put
    back (or ended); due tasks that need it are published."""
    limit = context.settings.tasks.scheduler_batch
    async with transaction(context.sessionmaker) as session:
        promoted = await promote_due_retries(session, limit=limit)
    async with transaction(context.sessionmaker) as session:
        reaped = await reap_expired_leases(session, limit=limit)
    published = failed = 0
    if enqueue.available():
        if context.broker_lost:  # every message may be gone: publish every waiting task
            redispatch_after_s, again = 0.0, list(Priority)
            async with transaction(context.sessionmaker) as session:
                await TaskRepository(session).forget_every_dispatch()
        else:  # a message published long ago is lost only if its queue has drained
            empty = await enqueue.empty_queues(context.redis, [p.queue for p in Priority])
            redispatch_after_s = context.settings.tasks.redispatch_after_s
            again = [p for p in Priority if p.queue in empty]
        with enqueue.tally() as sent:
            async with transaction(context.sessionmaker) as session:
                claimed = await claim_for_dispatch(
                    session,
                    redispatch_after_s=redispatch_after_s,
                    redispatch_priorities=again,
                    running_cap=context.settings.projects.max_running_tasks,
                    limit=limit,
                )
                for task in claimed:
                    dispatch(session, task)
        published, failed = sent.sent, sent.refused
    return {"promoted": promoted, "reaped": len(reaped), "published": published, "failed": failed}


async def promote_due_retries(session: AsyncSession, *, limit: int) -> int:
    return len(await TaskRepository(session).promote_due_retries(now=utc_now(), limit=limit))


async def reap_expired_leases(session: AsyncSession, *, limit: int) -> Sequence[Task]:
    """Put back (or end) tasks whose worker died; each gets its event and, if ended, a wake-up."""
    repository = TaskRepository(session)
    reaped = await repository.reap_expired_leases(now=utc_now(), limit=limit)
    for task in reaped:
        if task.status == TaskStatus.queued:
            record(session, task, "task.requeued", data={"reason": "lease_expired"})
            continue
        kind = "task.canceled" if task.status == TaskStatus.canceled else "task.failed"
        record(session, task, kind, data={"attempt": task.attempt, "error": task.error})
        await repository.notify_finished(task.id)
    return reaped


async def claim_for_dispatch(
    session: AsyncSession,
    *,
    redispatch_after_s: float,
    redispatch_priorities: Sequence[Priority],
    running_cap: int,
    limit: int,
) -> Sequence[Claimed]:
    now = utc_now()
    return await TaskRepository(session).claim_for_dispatch(
        now=now,
        stale_before=now - timedelta(seconds=redispatch_after_s),
        redispatch_priorities=redispatch_priorities,
        running_cap=running_cap,
        limit=limit,
    )
