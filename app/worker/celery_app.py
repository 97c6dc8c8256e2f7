"""The one Celery app: JSON, late acks, prefetch 1, priority queues; task state lives in PostgreSQL.

Nothing is built at import: `celery_app()` makes the process's app from the environment on first
use (`app/celery.py` calls it for the stock `celery -A app …` commands), and `create_celery`
builds one for given settings. Job modules declare their entry points with `shared_task`, so
they bind to whichever app runs them.
"""

from __future__ import annotations

import functools
import logging

from celery import Celery, signals
from kombu import Queue as KombuQueue

from app.core.config import Settings, get_settings
from app.core.logging import configure_logging
from app.core.redis import connection_options
from app.worker.names import ALL_QUEUES, Queue
from app.worker.transport import TRANSPORT

# Modules holding `@shared_task` entry points; each domain adds its `jobs` module here.
JOB_MODULES = ["app.tasks.jobs", "app.files.jobs", "app.webhooks.jobs"]


def create_celery(settings: Settings) -> Celery:
    """Build the Celery app for `settings` (a function, so tests can point one at their engines)."""
    app = Celery("taskgate", include=JOB_MODULES)
    redis_options = connection_options(settings.redis)
    transport_options = {
        "visibility_timeout": settings.worker.visibility_timeout_s,
        # A dead worker's unacked messages come back within seconds, not the default hour.
        "unacked_restore_interval": settings.worker.unacked_restore_interval_s,
        "unacked_restore_throttle": 0.0,
        # Poll the queues in the order given (high, default, low) instead of round robin.
        "queue_order_strategy": "priority",
        "socket_timeout": redis_options["socket_timeout"],
        "socket_connect_timeout": redis_options["socket_connect_timeout"],
        "health_check_interval": redis_options["health_check_interval"],
        "max_connections": settings.redis.max_connections,
    }
    ssl_options = None
    if settings.redis.url.startswith("rediss://"):
        ssl_options = {"ssl_cert_reqs": "required"}
        if settings.redis.ssl_ca_file is not None:
            ssl_options["ssl_ca_certs"] = str(settings.redis.ssl_ca_file)
    app.conf.update(
        broker_url=settings.redis.url,
        broker_transport=TRANSPORT,
        broker_use_ssl=ssl_options,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        task_track_started=False,
        worker_prefetch_multiplier=1,
        worker_max_tasks_per_child=1000,
        worker_hijack_root_logger=False,
        worker_send_task_events=settings.worker.task_events,
        task_send_sent_event=True,
        task_queues=[KombuQueue(queue.value, routing_key=queue.value) for queue in ALL_QUEUES],
        task_default_queue=Queue.default.value,
        task_default_routing_key=Queue.default.value,
        task_create_missing_queues=False,
        enable_utc=True,
        timezone="UTC",
    )
    return app


@functools.cache
def celery_app() -> Celery:
    """This process's app, configured from the environment (built once, on first use)."""
    return create_celery(get_settings())


@signals.setup_logging.connect
def _log_as_json(loglevel: int | str | None = None, **_: object) -> None:
    """Replace Celery's logging setup with ours (`core.logging`: one JSON object per line, with
    the task and project ids), for `taskgate worker` and the stock `celery -A app worker` alike.

    Celery's `--loglevel` sets the level (`TASKGATE_LOG_LEVEL` where it gives none, as in a pool
    process); lines go to stderr, so `--logfile` is not used."""
    settings = get_settings()
    level = logging.getLevelName(loglevel) if isinstance(loglevel, int) and loglevel else None
    if isinstance(loglevel, str) and loglevel:
        level = loglevel.upper()
    configure_logging(level or settings.log_level, json=settings.log_json)
