"""Entry point for the stock Celery commands: `celery -A app worker`, `celery -A app flower`.

Importing this module builds the app from the environment; nothing else imports it.
"""

from app.core.config import get_settings
from app.core.multiprocess import share_metrics_dir

# The host's metrics directory, before anything imports prometheus_client (`core/multiprocess.py`).
share_metrics_dir(get_settings().metrics)

from app import wiring  # noqa: E402
from app.core.logging import configure_logging  # noqa: E402
from app.worker.celery_app import celery_app  # noqa: E402

# JSON lines from the start, Celery's own warnings before its logging setup included; the
# worker's `--loglevel` applies once it sets logging up (`worker.celery_app._log_as_json`).
configure_logging(get_settings().log_level, json=get_settings().log_json)
wiring.wire_workers()
app = celery_app()

__all__ = ["app"]
