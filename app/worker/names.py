"""Job names and queues: the API enqueues by name and never imports job code."""

from __future__ import annotations

import enum


class Job(enum.StrEnum):
    execute_task = "tasks.execute"


class Queue(enum.StrEnum):
    high = "high"
    default = "default"
    low = "low"


# Workers consume in this order, so `high` is always served first.
QUEUES_BY_PRIORITY = (Queue.high, Queue.default, Queue.low)
