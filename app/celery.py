"""Entry point for the stock Celery commands: `celery -A app worker`, `celery -A app flower`.

Importing this module builds the app from the environment; nothing else imports it.
"""

from app import wiring
from app.worker.celery_app import celery_app

wiring.wire_workers()
app = celery_app()

__all__ = ["app"]
