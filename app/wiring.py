"""What every process that records events or enqueues jobs wires at start: the API (lifespan),
each worker process (first job), the scheduler. One place, so no process forgets a piece."""

from __future__ import annotations

from app.core.config import Settings
from app.core.redis import create_redis
from app.webhooks import outbox
from app.worker import enqueue


def subscribe_all() -> None:
    """Every domain that reacts to events subscribes (idempotent). Enough for a process that
    records events but publishes nothing (the CLI): the scheduler publishes what they cause."""
    outbox.subscribe()


def wire_process(settings: Settings, *, background: bool) -> enqueue.Publisher:
    """Publish this process's jobs to the broker of `settings`; webhooks subscribe to events.
    The caller closes the publisher (`await publisher.close()`) when the process stops."""
    publisher = enqueue.Publisher(
        create_redis(settings.redis),
        breaker_s=settings.tasks.publish_breaker_s,
        background=background,
    )
    enqueue.configure(publisher)
    subscribe_all()
    return publisher


def unwire_process() -> None:
    enqueue.configure(None)
