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
def execute_task(task_id: str) -> None:
    """Run one attempt of a task (at-least-once delivery; the lease makes it run once)."""
    runtime.run(
        runner.execute(
            runtime.sessionmaker(),
            uuid.UUID(task_id),
            registry=get_registry(),
            limits=get_settings().tasks,
            worker=f"{socket.gethostname()}:{os.getpid()}",
            storage=Storage.from_settings(get_settings()),
        )
    )
