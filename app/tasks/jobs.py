"""Celery entry points for tasks: thin shells around `runner.execute`."""

from __future__ import annotations

import os
import socket
import uuid

from celery import shared_task

from app.core.config import get_settings
from app.files.storage import Storage
from app.tasks import runner
from app.tasktypes.registry import get_registry
from app.worker import runtime
from app.worker.names import Job


@shared_task(name=Job.execute_task.value)
def execute_task(*task_ids: str) -> None:
    """Run one attempt of each task (at-least-once delivery; the lease makes each run once). A
    job carries one task, or several when the publisher found their queue backed up."""
    runtime.run(
        runner.execute_all(
            runtime.sessionmaker(),
            [uuid.UUID(task_id) for task_id in task_ids],
            registry=get_registry(),
            limits=get_settings().tasks,
            worker=f"{socket.gethostname()}:{os.getpid()}",
            storage=Storage.from_settings(get_settings()),
        )
    )
