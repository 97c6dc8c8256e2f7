"""Celery entry points for files: thin shells around the files service."""

from __future__ import annotations

import uuid

from celery import shared_task

from app.core.config import get_settings
from app.files import worker_side
from app.files.storage import Storage
from app.worker import runtime
from app.worker.names import Job


@shared_task(name=Job.digest_file.value)
def digest_file(file_id: str) -> None:
    """Record the sha256 of a file uploaded with a presigned URL (idempotent)."""
    runtime.run(
        worker_side.digest(
            runtime.sessionmaker(), Storage.from_settings(get_settings()), uuid.UUID(file_id)
        )
    )
