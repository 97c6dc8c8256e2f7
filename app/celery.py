"""Entry point for the stock Celery commands: `celery -A app worker`, `celery -A app flower`."""

from app.worker.celery_app import celery_app as app

__all__ = ["app"]
