from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery

from app.core.config import Settings
from app.worker.celery_app import create_celery


@pytest.fixture(scope="session")
def celery_control(settings: Settings) -> Iterator[Celery]:
    """A Celery app on this session's broker, used to ping and inspect real worker processes."""
    app = create_celery(settings)
    yield app
    app.close()
