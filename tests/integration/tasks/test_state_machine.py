"""Property-based: random sequences of lifecycle steps never break the state machine's invariants."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth.principal import Principal
from app.core.config import TaskSettings
from app.core.db import transaction, utc_now
from app.events.models import ActorType, Event
from app.projects.models import Project
from app.tasks import lifecycle, scheduling
from app.tasks import service as task_service
from app.tasks.exceptions import TaskAlreadyFinished
from app.tasks.models import TERMINAL_STATUSES, Task, TaskStatus
from tests.integration.tasks.conftest import RUNNING_CAP, make_task, reload

STEPS = (
    "lease",
    "succeed",
    "fail_retryable",
    "fail_final",
    "cancel",
    "worker_cancels",
    "expire_and_reap",
    "promote",
    "stale_attempt_succeeds",
)
TERMINAL_KINDS = ("task.succeeded", "task.failed", "task.canceled")
MAX_ATTEMPTS = 3


class Model:
    """What the task's status and attempt must be after each step."""

    def __init__(self) -> None:
        self.status = TaskStatus.queued
        self.attempt = 0
        self.cancel_requested = False

    def apply(self, step: str) -> None:
        status = self.status
        if step == "lease" and status == TaskStatus.queued:
            self.status, self.attempt = TaskStatus.running, self.attempt + 1
        elif step == "succeed" and status == TaskStatus.running:
            self.status = TaskStatus.succeeded
        elif step == "fail_retryable" and status == TaskStatus.running:
            out_of_attempts = self.attempt >= MAX_ATTEMPTS
            self.status = TaskStatus.failed if out_of_attempts else TaskStatus.retrying
        elif step == "fail_final" and status == TaskStatus.running:
            self.status = TaskStatus.failed
        elif step == "cancel" and status in (TaskStatus.queued, TaskStatus.retrying):
            self.status = TaskStatus.canceled
        elif step == "cancel" and status == TaskStatus.running:
            self.cancel_requested = True
        elif step == "worker_cancels" and status == TaskStatus.running and self.cancel_requested:
            self.status = TaskStatus.canceled
        elif step == "expire_and_reap" and status == TaskStatus.running:
            if self.cancel_requested:
                self.status = TaskStatus.canceled
            elif self.attempt >= MAX_ATTEMPTS:
                self.status = TaskStatus.failed
            else:
                self.status = TaskStatus.queued
        elif step == "promote" and status == TaskStatus.retrying:
            self.status = TaskStatus.queued


async def _step(
    db: async_sessionmaker[AsyncSession],
    step: str,
    task: Task,
    held: Task | None,
    principal: Principal,
    limits: TaskSettings,
) -> Task | None:
    """Perform `step`; return the lease the simulated worker holds afterwards."""
    async with transaction(db) as session:
        if step == "lease":
            leased = await lifecycle.lease(
                session, task.id, worker="w", lease_s=60, running_cap=RUNNING_CAP
            )
            return leased or held
        current = held or task
        if step == "succeed" and held is not None:
            await lifecycle.succeed(session, held, result={"ok": True})
        elif step in ("fail_retryable", "fail_final") and held is not None:
            await lifecycle.fail_attempt(
                session,
                held,
                error_type="test",
                message="x",
                retryable=step == "fail_retryable",
                limits=limits,
            )
        elif step == "cancel":
            with contextlib.suppress(TaskAlreadyFinished):
                await task_service.cancel(session, principal=principal, task_id=task.id)
        elif step == "worker_cancels" and held is not None:
            fresh = await session.get_one(Task, task.id, populate_existing=True)
            if fresh.cancel_requested_at is not None:
                await lifecycle.end_canceled(session, held)
        elif step == "expire_and_reap":
            await session.execute(
                update(Task)
                .where(Task.id == task.id, Task.status == TaskStatus.running)
                .values(lease_expires_at=utc_now() - timedelta(seconds=1))
            )
            await scheduling.reap_expired_leases(session, limit=10)
        elif step == "promote":
            await session.execute(
                update(Task)
                .where(Task.id == task.id, Task.status == TaskStatus.retrying)
                .values(run_at=utc_now() - timedelta(seconds=1))
            )
            await scheduling.promote_due_retries(session, limit=10)
        elif step == "stale_attempt_succeeds":
            stale = Task(id=current.id, project_id=current.project_id, attempt=current.attempt - 1)
            await lifecycle.succeed(session, stale, result={"stale": True})
    return held


class TestStateMachine:
    @settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(steps=st.lists(st.sampled_from(STEPS), min_size=1, max_size=14))
    async def test_invariants_hold_for_any_sequence_of_steps(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        steps: list[str],
    ) -> None:
        principal = Principal(
            actor_type=ActorType.user,
            actor_id=project.owner_id,
            user=None,
            api_key_project_id=None,
        )
        task = await make_task(db, project, max_attempts=MAX_ATTEMPTS)
        model = Model()
        held: Task | None = None
        was_terminal = False

        for step in steps:
            held = await _step(db, step, task, held, principal, limits)
            if step == "lease" and model.status == TaskStatus.queued:
                model.cancel_requested = False
            model.apply(step)
            actual = await reload(db, task.id)

            assert actual.status == model.status, (steps, step)
            assert actual.attempt == model.attempt <= MAX_ATTEMPTS
            assert (actual.lease_expires_at is not None) == (actual.status == TaskStatus.running)
            async with db() as session:
                terminal_events = await session.scalar(
                    select(func.count())
                    .select_from(Event)
                    .where(Event.subject_id == task.id, Event.kind.in_(TERMINAL_KINDS))
                )
            is_terminal = actual.status in TERMINAL_STATUSES
            assert terminal_events == (1 if is_terminal else 0), (steps, step)
            assert not (was_terminal and not is_terminal)
            assert (actual.finished_at is not None) == is_terminal
            was_terminal = is_terminal
