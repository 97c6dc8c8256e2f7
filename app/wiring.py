"""What every process that records events or enqueues jobs wires at start: the API (lifespan),
each worker process (first job, `wire_workers`), the scheduler, the CLI. One place, so no
process forgets a piece."""

from __future__ import annotations

import functools
import gc

from app.core import tracing
from app.core.config import Settings
from app.core.memory import release_large_blocks
from app.core.redis import create_redis
from app.webhooks import outbox
from app.webhooks import service as webhook_service
from app.worker import enqueue


def subscribe_all() -> None:
    """Every domain that reacts to events, or to a member leaving a project, subscribes
    (idempotent). Enough for a process that records events but publishes nothing (the CLI): the
    scheduler publishes what they cause."""
    outbox.subscribe()
    webhook_service.subscribe()


def wire_tracing(settings: Settings, role: str) -> bool:
    """Trace this process (`role`: api, worker, scheduler) when an OTLP endpoint is configured;
    before its engines and clients are used. Whether tracing is on."""
    return tracing.setup(settings.tracing, role=role, environment=settings.env.value)


def wire_process(settings: Settings, *, background: bool) -> enqueue.Publisher:
    """Publish this process's jobs to the broker of `settings`; webhooks subscribe to events.
    The caller closes the publisher (`await publisher.close()`) when the process stops."""
    release_large_blocks()  # a password hash's 19 MiB go back to the OS when it ends
    publisher = enqueue.Publisher(
        create_redis(settings.redis),
        breaker_s=settings.tasks.publish_breaker_s,
        background=background,
        batch=settings.tasks.dispatch_batch,
        batch_backlog=settings.tasks.dispatch_batch_backlog,
    )
    enqueue.configure(publisher)
    subscribe_all()
    # What the process built to start (modules, the app, its routes) lives as long as it does:
    # out of the collector's way, so a full collection walks only what requests made since.
    gc.freeze()
    return publisher


def unwire_process() -> None:
    enqueue.configure(None)


def wire_workers() -> None:
    """Celery worker processes wire themselves before their first job (the worker entry points:
    `taskgate worker`, `celery -A app worker`). Imported here, not at the top: the API and the
    scheduler never load Celery."""
    from celery import signals

    from app.core.config import get_settings
    from app.worker import metrics, runtime

    # In the worker's main process, before Celery starts its pool: the first job is traced too,
    # and prefork children inherit the provider (the SDK restarts its export thread after fork).
    if wire_tracing(get_settings(), "worker"):
        signals.worker_process_shutdown.connect(_flush_traces, weak=False)
        signals.worker_shutdown.connect(_flush_traces, weak=False)
    metrics.count_jobs()
    runtime.on_process_start(functools.partial(wire_process, background=False))


def _flush_traces(**_: object) -> None:
    # A prefork child ends with os._exit, past the SDK's own flush at exit.
    tracing.shutdown()
