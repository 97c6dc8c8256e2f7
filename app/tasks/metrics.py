"""A task's figures: counted when it is accepted, and on the worker where an attempt ends."""

from __future__ import annotations

from app.core import metrics
from app.tasks.models import Task


def record_attempt(task: Task, *, status: str, duration_s: float) -> None:
    """Count the attempt by type and outcome, time it, and for a first attempt the time its
    task waited to start (from creation, or from `run_at` for a task scheduled later)."""
    metrics.TASKS_FINISHED.labels(task.type, status).inc()
    metrics.TASK_RUN_DURATION.labels(task.type).observe(duration_s)
    if task.attempt == 1 and task.started_at is not None:
        due = max(task.created_at, task.run_at) if task.run_at is not None else task.created_at
        wait_s = (task.started_at - due).total_seconds()
        metrics.TASK_QUEUE_WAIT.labels(task.priority.value).observe(max(0.0, wait_s))


def record_submit(task: Task) -> None:
    metrics.TASKS_SUBMITTED.labels(task.type).inc()
