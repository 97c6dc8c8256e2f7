"""What every process that records events or enqueues jobs wires at start: the API (lifespan),
each worker process (first job), the scheduler. One place, so no process forgets a piece."""

from __future__ import annotations

from celery import Celery

from app.core.config import Settings
from app.webhooks import outbox
from app.worker import enqueue


def subscribe_all() -> None:
    """Every domain that reacts to events subscribes (idempotent). Enough for a process that
    records events but publishes nothing (the CLI): the scheduler publishes what they cause."""
    outbox.subscribe()


def wire_process(celery: Celery, settings: Settings, *, background: bool) -> enqueue.Publisher:
    """Publish this process's jobs through `celery`; webhooks subscribe to events."""
    publisher = enqueue.Publisher(
        celery, breaker_s=settings.tasks.publish_breaker_s, background=background
    )
    enqueue.configure(publisher)
    subscribe_all()
    return publisher


def unwire_process() -> None:
    enqueue.configure(None)
