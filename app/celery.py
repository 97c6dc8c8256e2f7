"""Entry point for the stock Celery commands: `celery -A app worker`, `celery -A app flower`.

Importing this module builds the app from the environment; nothing else imports it.
"""

import sys

from app.core.config import get_settings
from app.core.multiprocess import share_metrics_dir

# A worker writes to the host's metrics directory (`core/multiprocess.py`), set before taskgate's
# metrics exist; Flower and `inspect` record nothing of taskgate's and leave it alone.
if "worker" in sys.argv[1:]:
    share_metrics_dir(get_settings().metrics)

from app import wiring
from app.core.logging import configure_logging
from app.worker.celery_app import celery_app

# JSON lines from the start, Celery's own warnings before its logging setup included; the
# worker's `--loglevel` applies once it sets logging up (`worker.celery_app._log_as_json`).
configure_logging(get_settings().log_level, json=get_settings().log_json)
wiring.wire_workers()
app = celery_app()

__all__ = ["app"]
