"""The raw Celery peer: no-op tasks on the bench's own Redis, as a user would run Celery.

`celery -A benchmarks.harness.celery_peer worker|flower`, and the load generator's senders. The
broker comes from BENCH_PEER_BROKER; without it the app points at a closed port, never at the
machine's shared Redis.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

BROKER = os.environ.get("BENCH_PEER_BROKER", "redis://127.0.0.1:1/0")
QUEUE = "celery"
LAGS_KEY = "bench:lags"

app = Celery("bench_peer")
app.conf.update(
    broker_url=BROKER,
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_ignore_result=True,
    result_backend=None,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=True,
    enable_utc=True,
)

_recorder: redis.Redis | None = None


def _lags() -> redis.Redis:
    global _recorder  # one client per (forked) pool process
    if _recorder is None:
        _recorder = redis.Redis.from_url(BROKER, socket_timeout=5)
    return _recorder


@app.task(name="bench.noop")
def noop() -> None:
    """Nothing: what the broker and the worker cost on their own."""


@app.task(name="bench.stamp")
def stamp(sent_at: float) -> None:
    """Record how long after `sent_at` (the sender's clock, just before publishing) this began."""
    lag = time.time() - sent_at
    _lags().rpush(LAGS_KEY, repr(lag))


@app.task(name="bench.sleep")
def sleep(seconds: float) -> None:
    time.sleep(seconds)
