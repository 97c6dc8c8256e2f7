"""Prometheus metrics, named `taskgate_<noun>_<unit>` and labelled by route template, task type,
queue or status, never by an id. Every family is declared here; each process writes its samples
to the host's metrics directory (`core/multiprocess.py`) and `core/exposition.py` serves them."""

from __future__ import annotations

import time
from typing import Any, Literal

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.logging import log_request

REQUEST_DURATION = Histogram(
    "taskgate_http_request_duration_seconds",
    "HTTP request latency by method, route template and status class.",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
REQUESTS = Counter(
    "taskgate_http_requests_total",
    "HTTP requests by method, route template and status code.",
    ["method", "route", "status"],
)

# Tasks: recorded by the API on submit and by workers where an attempt ends (`tasks/metrics.py`).
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600)
TASKS_SUBMITTED = Counter(
    "taskgate_tasks_submitted_total", "Tasks accepted (new, not replays) by task type.", ["type"]
)
TASKS_FINISHED = Counter(
    "taskgate_tasks_finished_total",
    "Task attempts ended on a worker, by task type and the status they left the task in "
    "(succeeded, failed, canceled; retrying: it runs again; lease_lost: it ran elsewhere).",
    ["type", "status"],
)
TASK_RUN_DURATION = Histogram(
    "taskgate_task_run_duration_seconds",
    "Duration of a task attempt on a worker, lease to recorded outcome, by task type.",
    ["type"],
    buckets=TASK_BUCKETS,
)
TASK_QUEUE_WAIT = Histogram(
    "taskgate_task_queue_wait_seconds",
    "Time from a task's creation (or its run_at) to its first attempt's start, by queue.",
    ["queue"],
    buckets=TASK_BUCKETS,
)
# Read from the broker at scrape time (`core/exposition.py`); declared for its help text.
QUEUE_DEPTH_HELP = "Jobs waiting in each broker queue (LLEN), read at scrape time."
# Job slots of the worker processes of this host and how many run a job now (the busy ratio,
# `taskgate_worker_busy_ratio`, is their quotient at scrape time).
WORKER_SLOTS = Gauge(
    "taskgate_worker_job_slots",
    "Jobs the worker processes of this host can run at once.",
    multiprocess_mode="livesum",
)
WORKER_BUSY = Gauge(
    "taskgate_worker_jobs_running",
    "Jobs the worker processes of this host are running now.",
    multiprocess_mode="livesum",
)
DB_POOL = Gauge(
    "taskgate_db_pool_connections",
    "Database pool connections by process kind (api, worker, scheduler): in_use, and size "
    "(the most the pools may hold: pool_size + max_overflow).",
    ["process", "state"],
    multiprocess_mode="livesum",
)
# Counted by `core/readcache.py` (the task and project caches).
CACHE_REQUESTS = Counter(
    "taskgate_cache_requests_total",
    "Read-through cache lookups by cache (task, project) and result (hit, miss).",
    ["cache", "result"],
)
# Counted by `auth/admission.py`.
RATE_LIMITED = Counter(
    "taskgate_rate_limited_total",
    "Requests refused by a rate limit or a backlog cap, by scope (submit, read, sign_in, register; "
    "backlog: a project at its max_queued_tasks, 429; system_backlog: the platform at its cap, 503).",
    ["scope"],
)
WEBHOOK_DELIVERIES = Counter(
    "taskgate_webhook_deliveries_total",
    "Webhook delivery attempts by outcome (succeeded; retrying: another attempt is due; "
    "failed: the delivery gave up; claim_lost: another worker had it).",
    ["outcome"],
)
FAMILIES: tuple[Counter | Gauge | Histogram, ...] = (
    REQUEST_DURATION,
    REQUESTS,
    TASKS_SUBMITTED,
    TASKS_FINISHED,
    TASK_RUN_DURATION,
    TASK_QUEUE_WAIT,
    WORKER_SLOTS,
    WORKER_BUSY,
    DB_POOL,
    CACHE_REQUESTS,
    RATE_LIMITED,
    WEBHOOK_DELIVERIES,
)

ProcessKind = Literal["api", "worker", "scheduler"]


def watch_pool(engine: AsyncEngine, process: ProcessKind) -> None:
    """Keep `taskgate_db_pool_connections` of this process's `engine`: its size once, the
    connections in use on each checkout and checkin (a gauge write, no round trip)."""
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool):  # NullPool and friends hold nothing
        return
    DB_POOL.labels(process, "size").set(pool.size() + pool._max_overflow)
    in_use = DB_POOL.labels(process, "in_use")

    def count(*_: Any) -> None:
        in_use.set(pool.checkedout())

    event.listen(pool, "checkout", count)
    event.listen(pool, "checkin", count)


def _route_template(scope: Scope) -> str:
    # The router records the matched route in the (shared) scope; unmatched paths share one label.
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str):
        return "unmatched"
    # A route of an included router has its path without the router's prefix (`/v1`): the prefix
    # is what the request's path holds before the part the route matched.
    try:
        matched = str(getattr(route, "path_format", template)).format(**scope["path_params"])
    except (KeyError, IndexError, ValueError):
        return template
    path = str(scope.get("path", ""))
    return path.removesuffix(matched) + template if path.endswith(matched) else template


class MetricsMiddleware:
    """Count and time every HTTP request by its route template (bounded label values), and
    write its access log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            duration_s = time.perf_counter() - started
            route = _route_template(scope)
            labels = (scope["method"], route, str(status_code))
            REQUEST_DURATION.labels(*labels).observe(duration_s)
            REQUESTS.labels(*labels).inc()
            log_request(scope, route=route, status=status_code, duration_s=duration_s)
