"""Task statements. Every state change is one guarded UPDATE, never read-then-write."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, case, func, null, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import KeysetCursor
from app.tasks.models import Priority, Task, TaskStatus

# Woken listeners: `GET /tasks/{id}?wait=` long-polls block on this channel (LISTEN/NOTIFY).
FINISHED_CHANNEL = "taskgate_task_finished"

# Due queued tasks to publish, within each project's `max_running_tasks`: a project's window is
# its oldest due queued tasks, as many as it has free slots (its cap less its running tasks);
# those of the window that no message carries (or whose message was lost) are published. What a
# project's window leaves waits for a freed slot, unpublished, so the broker never holds more of
# a full project's tasks than it could start. Per project, so one index probe each, however many
# tasks a project has waiting. The UPDATE that marks them re-checks, as `FOR UPDATE` cannot go
# with these joins (a second scheduler then waits on the rows and skips them).
_DUE_WITHIN_CAPS = text(
    """
    WITH candidate AS (
        SELECT DISTINCT project_id
        FROM tasks
        WHERE status = 'queued' AND (run_at IS NULL OR run_at <= :now)
          AND (dispatched_at IS NULL
               OR (dispatched_at < :stale_before AND priority = ANY(:redispatch)))
    ), due AS (
        SELECT w.id, w.created_at
        FROM candidate
        LEFT JOIN projects ON projects.id = candidate.project_id
        CROSS JOIN LATERAL (
            SELECT taskgate_running_cap(projects.settings, :default_cap) AS cap
        ) AS limits
        CROSS JOIN LATERAL (
            SELECT count(*) AS n FROM (
                SELECT FROM tasks
                WHERE project_id = candidate.project_id AND status = 'running'
                LIMIT limits.cap
            ) AS running
        ) AS running
        CROSS JOIN LATERAL (
            SELECT id, created_at, dispatched_at, priority
            FROM tasks
            WHERE project_id = candidate.project_id AND status = 'queued'
              AND (run_at IS NULL OR run_at <= :now)
            ORDER BY created_at  -- the order of (project_id, status, created_at): one short probe
            LIMIT greatest(limits.cap - running.n, 0)
        ) AS w
        WHERE w.dispatched_at IS NULL
           OR (w.dispatched_at < :stale_before AND w.priority = ANY(:redispatch))
        ORDER BY w.created_at
        LIMIT :limit
    )
    UPDATE tasks SET dispatched_at = :now
    FROM due
    WHERE tasks.id = due.id AND tasks.status = 'queued'
      AND (tasks.dispatched_at IS NULL
           OR (tasks.dispatched_at < :stale_before AND tasks.priority = ANY(:redispatch)))
    RETURNING tasks.id, tasks.project_id, tasks.type, tasks.priority, tasks.timeout_s,
              tasks.attempt, tasks.request_id
    """
)


class Claimed(NamedTuple):
    """A task claimed for publishing: what its job's message needs."""

    id: uuid.UUID
    project_id: uuid.UUID
    type: str
    priority: Priority
    timeout_s: int
    attempt: int
    request_id: str | None


_CLAIMED_COLUMNS = (
    Task.id,
    Task.project_id,
    Task.type,
    Task.priority,
    Task.timeout_s,
    Task.attempt,
    Task.request_id,
)


def _claimed(rows: Sequence[Any]) -> list[Claimed]:
    return [
        Claimed(row[0], row[1], row[2], Priority(row[3]), row[4], row[5], row[6]) for row in rows
    ]


class TaskRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, task_id: uuid.UUID) -> Task | None:
        return await self.session.get(Task, task_id, populate_existing=True)

    async def insert_unless_key_exists(self, values: dict[str, Any]) -> Task | None:
        """Insert a task; None when its project already has a task with its idempotency key."""
        statement = (
            insert(Task)
            .values(**values)
            .on_conflict_do_nothing(index_elements=[Task.project_id, Task.idempotency_key])
            .returning(Task)
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def by_idempotency_key(self, project_id: uuid.UUID, key: str) -> Task | None:
        return await self.session.scalar(
            select(Task).where(Task.project_id == project_id, Task.idempotency_key == key)
        )

    async def list_for_project(
        self,
        project_id: uuid.UUID,
        *,
        status: TaskStatus | None,
        type: str | None,
        after: KeysetCursor | None,
        limit: int,
    ) -> Sequence[Task]:
        """Newest first, `limit` rows after the cursor `after`."""
        query = select(Task).where(Task.project_id == project_id)
        if status is not None:
            query = query.where(Task.status == status)
        if type is not None:
            query = query.where(Task.type == type)
        if after is not None:
            query = query.where(tuple_(Task.created_at, Task.id) < tuple_(after.at, after.id))
        query = query.order_by(Task.created_at.desc(), Task.id.desc()).limit(limit)
        return (await self.session.scalars(query)).all()

    async def _update_one(self, task_id: uuid.UUID, *where: Any, **values: Any) -> Task | None:
        statement = (
            update(Task)
            .where(Task.id == task_id, *where)
            .values(**values)
            .returning(Task)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def heartbeat(
        self,
        task_id: uuid.UUID,
        *,
        attempt: int,
        now: datetime,
        lease_s: float,
        progress: tuple[float, str | None] | None,
    ) -> Task | None:
        """Extend our lease (and record progress); None when the lease is no longer ours."""
        values: dict[str, Any] = {"lease_expires_at": now + timedelta(seconds=lease_s)}
        if progress is not None:
            values["progress"], values["progress_message"] = progress
        return await self._update_one(
            task_id, Task.status == TaskStatus.running, Task.attempt == attempt, **values
        )

    async def end_attempt(
        self, task_id: uuid.UUID, *, attempt: int, status: TaskStatus, **values: Any
    ) -> Task | None:
        """running → `status` for the attempt that holds the lease; None if it lost the lease."""
        return await self._update_one(
            task_id,
            Task.status == TaskStatus.running,
            Task.attempt == attempt,
            status=status,
            lease_expires_at=None,
            **values,
        )

    async def cancel_waiting(self, task_id: uuid.UUID, *, now: datetime) -> Task | None:
        """queued or retrying → canceled at once."""
        return await self._update_one(
            task_id,
            Task.status.in_((TaskStatus.queued, TaskStatus.retrying)),
            status=TaskStatus.canceled,
            finished_at=now,
            cancel_requested_at=now,
        )

    async def request_cancel(self, task_id: uuid.UUID, *, now: datetime) -> Task | None:
        """Ask a running task to stop; its worker ends it as canceled."""
        return await self._update_one(
            task_id,
            Task.status == TaskStatus.running,
            cancel_requested_at=func.coalesce(Task.cancel_requested_at, now),
        )

    async def promote_due_retries(self, *, now: datetime, limit: int) -> Sequence[uuid.UUID]:
        """retrying → queued once the backoff has passed, ready to be dispatched."""
        due = (
            select(Task.id)
            .where(Task.status == TaskStatus.retrying, Task.run_at <= now)
            .order_by(Task.run_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("due")  # picked once: never re-run past the rows it locked
        )
        statement = (
            update(Task)
            .where(Task.id == due.c.id)
            .values(status=TaskStatus.queued, dispatched_at=None)
            .returning(Task.id)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(statement)).all()

    async def reap_expired_leases(self, *, now: datetime, limit: int) -> Sequence[Task]:
        """Running tasks whose worker stopped renewing: back to queued, or canceled/failed."""
        expired = (
            select(Task.id)
            .where(Task.status == TaskStatus.running, Task.lease_expires_at < now)
            .order_by(Task.lease_expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(Task)
            .where(Task.id.in_(expired.scalar_subquery()))
            .values(**_put_back(now, "lease_expired", "the worker stopped responding"))
            .returning(Task)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(statement)).all()

    async def release(self, task_id: uuid.UUID, *, attempt: int, now: datetime) -> Task | None:
        """Give back the running attempt that holds the lease (its worker is shutting down): as
        the reaper puts back an expired lease, at once; None if the lease was lost."""
        return await self._update_one(
            task_id,
            Task.status == TaskStatus.running,
            Task.attempt == attempt,
            **_put_back(now, "worker_shutdown", "the worker shut down before the attempt ended"),
        )

    async def claim_for_dispatch(
        self,
        *,
        now: datetime,
        stale_before: datetime,
        redispatch_priorities: Sequence[Priority],
        running_cap: int,
        limit: int,
    ) -> Sequence[Claimed]:
        """Due queued tasks never published, or published long ago (lost) on an empty queue,
        as many of each project's as fit under its `max_running_tasks` (`running_cap`: the
        deployment's default), oldest first."""
        rows = await self.session.execute(
            _DUE_WITHIN_CAPS,
            {
                "now": now,
                "stale_before": stale_before,
                "redispatch": [priority.value for priority in redispatch_priorities],
                "default_cap": running_cap,
                "limit": limit,
            },
        )
        return _claimed(rows.all())

    async def take_waiting(
        self, project_id: uuid.UUID, *, now: datetime, limit: int = 1
    ) -> Sequence[Claimed]:
        """The project's next `limit` waiting tasks (queued, due, no message carries them),
        marked published: an attempt that ends hands its slot on at once."""
        due_at = func.coalesce(Task.run_at, Task.created_at)
        waiting = (
            select(Task.id)
            .where(
                Task.project_id == project_id,
                Task.status == TaskStatus.queued,
                Task.dispatched_at.is_(None),
                due_at <= now,
            )
            .order_by(due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("waiting")  # picked once: never re-run past the rows it locked
        )
        statement = (
            update(Task)
            .where(
                Task.id == waiting.c.id,
                Task.status == TaskStatus.queued,
                Task.dispatched_at.is_(None),
            )
            .values(dispatched_at=now)
            .returning(*_CLAIMED_COLUMNS)
            .execution_options(synchronize_session=False)
        )
        return _claimed((await self.session.execute(statement)).all())

    async def forget_every_dispatch(self) -> int:
        """The broker lost its data: no queued task's message exists any more. Each waits
        unpublished, so the scheduler publishes what fits under each project's cap."""
        result = await self.session.execute(
            update(Task)
            .where(Task.status == TaskStatus.queued, Task.dispatched_at.is_not(None))
            .values(dispatched_at=None)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def expire_results(
        self, *, finished_before: datetime, limit: int
    ) -> Sequence[tuple[uuid.UUID, uuid.UUID, str | None]]:
        """Clear the results of succeeded tasks finished before `finished_before`, oldest first;
        returns `(task id, project id, old result key)` of each."""
        due = (
            select(Task.id, Task.result_key)
            .where(
                Task.status == TaskStatus.succeeded,
                Task.finished_at < finished_before,
                or_(Task.result.is_not(None), Task.result_key.is_not(None)),
            )
            .order_by(Task.finished_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("due")
        )
        statement = (
            update(Task)
            .where(Task.id == due.c.id)
            .values(result=null(), result_key=None)
            .returning(Task.id, Task.project_id, due.c.result_key)
            .execution_options(synchronize_session=False)
        )
        rows = (await self.session.execute(statement)).all()
        return [(row[0], row[1], row[2]) for row in rows]

    async def forget_dispatch(self, task_ids: Sequence[uuid.UUID]) -> None:
        """Publishing failed: leave these for the scheduler's next pass."""
        await self.session.execute(
            update(Task)
            .where(Task.id.in_(task_ids), Task.status == TaskStatus.queued)
            .values(dispatched_at=None)
            .execution_options(synchronize_session=False, populate_existing=True)
        )

    async def notify_finished(self, task_id: uuid.UUID) -> None:
        """Wake long-polls on commit (NOTIFY is transactional: nothing is sent on rollback)."""
        await self.session.execute(
            text("SELECT pg_notify(:channel, :task_id)"),
            {"channel": FINISHED_CHANNEL, "task_id": str(task_id)},
        )


def _put_back(now: datetime, error_type: str, message: str) -> dict[str, Any]:
    """The values of a running task given back without an outcome: queued again, canceled when
    a cancel was asked, failed (`error_type`) when it has no attempts left."""
    is_final = or_(Task.cancel_requested_at.is_not(None), Task.attempt >= Task.max_attempts)
    return {
        "status": case(
            (Task.cancel_requested_at.is_not(None), TaskStatus.canceled.value),
            (Task.attempt >= Task.max_attempts, TaskStatus.failed.value),
            else_=TaskStatus.queued.value,
        ),
        "lease_expires_at": None,
        "worker": None,
        "dispatched_at": None,
        "finished_at": case((is_final, now), else_=None),
        "error": case(
            (
                and_(Task.cancel_requested_at.is_(None), Task.attempt >= Task.max_attempts),
                func.jsonb_build_object("type", error_type, "message", message),
            ),
            else_=Task.error,
        ),
    }
