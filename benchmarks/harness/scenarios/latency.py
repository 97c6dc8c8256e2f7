"""Latencies of a calm system: queue latency at a fixed 100 tasks/s, and the long-poll wake."""

from __future__ import annotations

from typing import Any

from benchmarks.harness.celery_peer import LAGS_KEY, QUEUE
from benchmarks.harness.procs import BenchError
from benchmarks.harness.results import Figure, Target, summary
from benchmarks.harness.scenarios.common import (
    CELERY_KINDS,
    ECHO,
    Context,
    failures,
    http_spec,
)

RATE = 100
LONGPOLL_SLEEP_S = 0.2
LONGPOLL_WAIT_S = 10


def _celery_lags(ctx: Context, kind: str, seconds: float) -> dict[str, Any]:
    peers = ctx.peers
    peers.broker.purge([QUEUE])
    peers.broker.client.delete(LAGS_KEY)
    workers = peers.start_celery(kind, ctx.tg.worker_concurrency)
    try:
        peers.wait_celery_ready(workers)
        sent = ctx.loadgen({"mode": "celery_rate", "rate": RATE, "duration_s": seconds})
        peers.wait_celery_empty(workers, timeout_s=ctx.settle_timeout_s)
    finally:
        peers.stop_celery(workers)
    lags = [float(x) * 1000 for x in peers.broker.client.lrange(LAGS_KEY, 0, -1)]
    if len(lags) < sent["sent"]:
        raise BenchError(f"raw Celery ({kind}) recorded {len(lags)} of {sent['sent']} lags")
    return {"latency_ms": summary(lags), "late_starts": sent["late_starts"]}


def run_queue_latency(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    """Open loop at 100 tasks/s: commit → handler start (taskgate: created_at → started_at)."""
    tg = ctx.tg
    seconds = ctx.seconds(1, 10)
    project = ctx.project("queue-latency")
    tg.probe_workers(project)
    spec = http_spec(tg.port, project.tasks_path, project.auth, ECHO)
    sent = ctx.loadgen({**spec, "mode": "http_rate", "rate": RATE, "duration_s": seconds})
    if sent["ok"] < 0.9 * sent["sent"]:
        raise BenchError(f"submissions failed: {sent['statuses']} {sent['errors']}")
    tg.wait_finished(project, sent["ok"] + 1, timeout_s=ctx.settle_timeout_s)
    rows = tg.pg.fetch(
        "SELECT extract(epoch FROM started_at - created_at)::float8 * 1000 AS lag_ms"
        " FROM tasks WHERE project_id = $1::uuid AND started_at IS NOT NULL"
        " ORDER BY created_at OFFSET 1",  # the probe went first
        project.id,
    )
    taskgate = summary([float(row["lag_ms"]) for row in rows])
    celery = {kind: _celery_lags(ctx, kind, seconds) for kind in CELERY_KINDS}
    best = min(celery, key=lambda kind: celery[kind]["latency_ms"]["p50"])
    peer = celery[best]["latency_ms"]
    label = f"queue latency at {RATE} tasks/s"
    failed = sent["sent"] - sent["ok"]
    note = failures(sent) if failed else ""
    figures = [
        Figure(
            "queue_latency.p50",
            f"{label}, p50",
            taskgate["p50"],
            "ms",
            f"raw Celery ({best}) p50",
            peer["p50"],
            Target("ratio_at_most", 2.0, "≤ 2x raw Celery"),
            note=note,
        ),
        Figure(
            "queue_latency.p99",
            f"{label}, p99",
            taskgate["p99"],
            "ms",
            f"raw Celery ({best}) p99",
            peer["p99"],
            Target("at_most", 20, "≤ 20 ms"),
        ),
    ]
    data = {
        "rate": RATE,
        "seconds": seconds,
        "taskgate": {
            "latency_ms": taskgate,
            "late_starts": sent["late_starts"],
            "submit_statuses": sent["statuses"],
            "submit_errors": sent["errors"],
        },
        "raw_celery": celery,
        "peer": best,
        "how": "taskgate: tasks.started_at - tasks.created_at in PostgreSQL; raw Celery: handler"
        " start - time.time() passed in the task's args just before apply_async",
    }
    return figures, data


def run_longpoll(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    """`sleep 0.2 s` tasks followed with `GET /v1/tasks/{id}?wait=10`: finished_at → response."""
    tg = ctx.tg
    count = ctx.size(10, 60)
    project = ctx.project("long-poll")
    tg.probe_workers(project)
    result = ctx.loadgen(
        {
            "mode": "longpoll",
            "port": tg.port,
            "auth": project.auth,
            "tasks_path": project.tasks_path,
            "count": count,
            "streams": 2,
            "sleep_s": LONGPOLL_SLEEP_S,
            "wait_s": LONGPOLL_WAIT_S,
            "timeout_s": ctx.seconds(60, 180),
        }
    )
    wakes = result["wakes_ms"]
    if len(wakes) < count // 2:
        raise BenchError(f"{len(wakes)} of {count} long-polls woke: {result['errors']}")
    wake = summary(wakes)
    figures = [
        Figure(
            "longpoll.p50",
            "long-poll wake (terminal → response), p50",
            wake["p50"],
            "ms",
            target=Target("at_most", 10, "≤ 10 ms"),
        ),
        Figure("longpoll.p99", "long-poll wake, p99", wake["p99"], "ms"),
    ]
    return figures, {"wake_ms": wake, "errors": result["errors"], "sleep_s": LONGPOLL_SLEEP_S}
