"""The workers' busy ratio: each process that runs jobs counts its job slots and the jobs it
runs now (`taskgate_worker_job_slots`, `…_jobs_running`, summed over the host's processes)."""

from __future__ import annotations

import os

from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from app.core import metrics
from app.core.config import get_settings
from app.core.multiprocess import forget_process


def count_jobs() -> None:
    """Connect the receivers (idempotent): in every worker entry point (`wiring.wire_workers`)."""
    worker_init.connect(_count_own_slots)
    worker_process_init.connect(_count_pool_process_slot)
    task_prerun.connect(_job_started)
    task_postrun.connect(_job_ended)
    worker_shutdown.connect(_forget_live_gauges)
    worker_process_shutdown.connect(_forget_live_gauges)


def _count_own_slots(**_: object) -> None:
    # threads and solo run jobs in the worker's own process; prefork in its pool processes.
    settings = get_settings().worker
    if settings.pool != "prefork":
        metrics.WORKER_SLOTS.set(settings.concurrency if settings.pool == "threads" else 1)


def _count_pool_process_slot(**_: object) -> None:
    if get_settings().worker.pool == "prefork":
        metrics.WORKER_SLOTS.set(1)


def _job_started(**_: object) -> None:
    metrics.WORKER_BUSY.inc()


def _job_ended(**_: object) -> None:
    metrics.WORKER_BUSY.dec()


def _forget_live_gauges(**_: object) -> None:
    """A process that stops takes its slots and running jobs out of the host's sums."""
    forget_process(os.getpid())
