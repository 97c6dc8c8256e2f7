"""The scheduler's periodic sends (celery beat). Each entry carries `expires=` so none pile up."""

from __future__ import annotations

from typing import Any

# name -> celery beat entry; domains add their periodic jobs here.
BEAT_SCHEDULE: dict[str, dict[str, Any]] = {}
