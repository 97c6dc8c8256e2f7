"""Celery entry points for tasks: thin shells around `runner.execute`."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence

from celery import Task as CeleryTask
from celery import shared_task

from app.core.config import get_settings
from app.core.context import with_request_id
from app.files.storage import Storage
from app.tasks import runner
from app.tasktypes.registry import get_registry
from app.worker import runtime
from app.worker.names import Job

# How an attempt may end that Celery reports as a failure (the task's state in PostgreSQL stays
# the truth: `retrying` runs again through a message of its own, never this one redelivered).
UNSUCCESSFUL = frozenset({"failed", "retrying", "canceled"})


class AttemptUnsuccessful(Exception):
    """Raised once an attempt's failure is recorded, so Celery and Flower show FAILURE. An
    expected error (`throws`): Celery logs one INFO line, no traceback, and acknowledges the
    message (`task_acks_on_failure_or_timeout`), so it is not delivered again."""


@shared_task(name=Job.execute_task.value, bind=True, throws=(AttemptUnsuccessful,))
def execute_task(self: CeleryTask[..., None], *task_ids: str) -> None:
    """Run one attempt of each task (at-least-once delivery; the lease makes each run once). A
    job carries one task, or several when the publisher found their queue backed up. Its log
    lines carry the request id of the message (`request_id` header)."""
    outcomes = runtime.run(
        with_request_id(
            getattr(self.request, "request_id", None),
            runner.execute_all(
                runtime.sessionmaker(),
                [uuid.UUID(task_id) for task_id in task_ids],
                registry=get_registry(),
                limits=get_settings().tasks,
                worker=f"{socket.gethostname()}:{os.getpid()}",
                storage=Storage.from_settings(get_settings()),
                running_cap=get_settings().projects.max_running_tasks,
                shutdown=runner.Shutdown(
                    runtime.shutdown_requested_at, get_settings().worker.shutdown_grace_s
                ),
            ),
        )
    )
    if unsuccessful := _unsuccessful(task_ids, outcomes):
        raise AttemptUnsuccessful(unsuccessful)


def _unsuccessful(task_ids: Sequence[str], outcomes: Sequence[runner.Outcome | None]) -> str:
    """`<task id>: <status> (<error type>)` for each attempt that did not succeed; never the
    error's message (it may quote the input)."""
    return "; ".join(
        f"{task_id}: {outcome['status']}"
        + (f" ({outcome['error_type']})" if "error_type" in outcome else "")
        for task_id, outcome in zip(task_ids, outcomes, strict=True)
        if outcome is not None and outcome["status"] in UNSUCCESSFUL
    )
