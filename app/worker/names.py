"""Job names and queues: the API enqueues by name and never imports job code."""

from __future__ import annotations

import enum


class Job(enum.StrEnum):
    execute_task = "tasks.execute"
    deliver_webhook = "webhooks.deliver"
    digest_file = "files.digest"


class Queue(enum.StrEnum):
    high = "high"
    default = "default"
    low = "low"
    webhooks = "webhooks"


# Every queue a worker may consume. By default (`taskgate worker`) webhook deliveries come right
# after `high` tasks: short, time-boxed jobs that must not wait behind a backlog of tasks.
ALL_QUEUES = (Queue.high, Queue.webhooks, Queue.default, Queue.low)

# Jobs whose arguments are independent items (task ids): one message may carry several, and the
# job handles each as if it came alone.
BATCHED_JOBS = frozenset({Job.execute_task})
