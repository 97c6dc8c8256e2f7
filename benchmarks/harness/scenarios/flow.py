"""Throughput through the whole path: end to end (submit → succeeded) and drain of a backlog."""

from __future__ import annotations

from typing import Any

from benchmarks.harness import costs
from benchmarks.harness.celery_peer import QUEUE
from benchmarks.harness.procs import BenchError
from benchmarks.harness.results import Figure, Target
from benchmarks.harness.scenarios.common import (
    CELERY_KINDS,
    ECHO,
    Context,
    best_celery_drain,
    submit_count,
    task_window,
    taskgate_drain,
)


def _celery_end_to_end(ctx: Context, kind: str, count: int) -> dict[str, float]:
    peers = ctx.peers
    peers.broker.purge([QUEUE])
    workers = peers.start_celery(kind, ctx.tg.worker_concurrency)
    try:
        peers.wait_celery_ready(workers)
        sent = ctx.loadgen({"mode": "celery_send", "count": count - 1})
        done = peers.wait_celery_empty(workers, timeout_s=ctx.settle_timeout_s)
    finally:
        peers.stop_celery(workers)
    seconds = done - sent["started"]
    return {
        "tasks": sent["measured"],
        "seconds": round(seconds, 3),
        "rate": sent["measured"] / seconds,
    }


def run_end_to_end(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    """N `echo` tasks from the load generator, 2 worker processes: first submit to last success."""
    tg = ctx.tg
    count = ctx.size(100, 3000)  # long enough that a second of noise is not the figure
    project = ctx.project("end-to-end")
    tg.probe_workers(project)
    before = costs.snapshot(tg)
    submitted = submit_count(ctx, project, ECHO, count)
    tg.wait_finished(project, count + 1, timeout_s=ctx.settle_timeout_s)
    per_task = costs.per_task(before, costs.snapshot(tg), count)
    window = task_window(ctx, project)
    if window["succeeded"] < count + 1:
        raise BenchError(f"only {window['succeeded']:.0f} of {count + 1} tasks succeeded")
    seconds = window["last_finished"] - submitted["started"]
    rate = count / seconds
    celery = {kind: _celery_end_to_end(ctx, kind, count) for kind in CELERY_KINDS}
    best = max(celery, key=lambda kind: celery[kind]["rate"])
    processes = tg.worker_concurrency
    figures = [
        Figure(
            "end_to_end.rate",
            f"end to end, {processes} worker processes",
            rate,
            "tasks/s",
            f"raw Celery ({best}, {processes} processes)",
            celery[best]["rate"],
            Target("ratio_at_least", 0.8, "≥ 0.8x raw Celery"),
        )
    ]
    data = {
        "tasks": count,
        "worker_processes": processes,
        "taskgate": {"seconds": round(seconds, 3), "rate": round(rate, 1)},
        "raw_celery": celery,
        "peer": best,
        # What one task cost the stack, and what this PostgreSQL takes: the capacity model's
        # inputs (benchmarks/scaling_model.py, docs/scaling.md).
        "per_task": per_task,
        "pg_commits_per_s": round(costs.commit_capacity(tg)),
    }
    return figures, data


def run_drain(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    """A preloaded backlog, then 2 worker processes: first start to last finish."""
    count = ctx.size(100, 5000)  # several seconds of draining, not one
    processes = ctx.tg.worker_concurrency
    taskgate = taskgate_drain(ctx, ECHO, count, concurrency=processes, purpose="drain")
    celery = best_celery_drain(ctx, count, processes)
    pgqueuer = ctx.peers.pgqueuer_drain(count, processes, timeout_s=ctx.settle_timeout_s)
    label = f"drain of {count:,} queued tasks, {processes} worker processes"
    figures = [
        Figure(
            "drain.vs_celery",
            label,
            taskgate["rate"],
            "tasks/s",
            f"raw Celery ({celery['best']}, {processes} processes)",
            celery["rate"],
            Target("ratio_at_least", 0.8, "≥ 0.8x raw Celery"),
        ),
        Figure(
            "drain.vs_pgqueuer",
            label,
            taskgate["rate"],
            "tasks/s",
            f"PgQueuer ({processes} processes)",
            pgqueuer["rate"],
            note="the PostgreSQL-backed Python peer",
        ),
    ]
    data = {"tasks": count, "taskgate": taskgate, "raw_celery": celery, "pgqueuer": pgqueuer}
    return figures, data
