"""Celery entry point for webhooks: a thin shell around `delivery.deliver`."""

from __future__ import annotations

import uuid

from celery import shared_task

from app.core.config import get_settings
from app.webhooks import delivery
from app.worker import runtime
from app.worker.names import Job


@shared_task(name=Job.deliver_webhook.value)
def deliver_webhook(delivery_id: str) -> None:
    """Make one attempt of a webhook delivery (at-least-once; the claim makes it one attempt)."""
    runtime.run(
        delivery.deliver(
            runtime.sessionmaker(), uuid.UUID(delivery_id), settings=get_settings().webhooks
        )
    )
