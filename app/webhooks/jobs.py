"""Celery entry point for webhooks: a thin shell around `delivery.deliver`."""

from __future__ import annotations

import uuid

from celery.signals import worker_init, worker_process_init

from app.core.config import get_settings
from app.webhooks import delivery, dispatch
from app.worker import runtime
from app.worker.celery_app import celery_app
from app.worker.names import Job


@celery_app.task(name=Job.deliver_webhook.value)
def deliver_webhook(delivery_id: str) -> None:
    """Make one attempt of a webhook delivery (at-least-once; the claim makes it one attempt)."""
    runtime.run(
        delivery.deliver(
            runtime.sessionmaker(), uuid.UUID(delivery_id), settings=get_settings().webhooks
        )
    )


@worker_init.connect
@worker_process_init.connect
def _install_publisher(**_: object) -> None:
    """Deliveries of events recorded on this worker (a task finishing) are published at once."""
    settings = get_settings()
    dispatch.install(
        dispatch.DeliveryPublisher(
            celery_app,
            timeout_s=settings.webhooks.timeout_s,
            breaker_s=settings.tasks.publish_breaker_s,
            background=False,
        )
    )
