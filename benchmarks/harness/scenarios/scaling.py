"""Drain throughput vs worker processes (1, 2, 4) and vs task duration (0, 10, 100 ms of sleep).

Each point drains a preloaded backlog, taskgate with `worker --concurrency N` and raw Celery with
a prefork pool of the same size, so the ratio at each point is like for like.
"""

from __future__ import annotations

from typing import Any

from benchmarks.harness.results import Figure
from benchmarks.harness.scenarios.common import ECHO, Context, celery_drain, taskgate_drain

PROCESSES = (1, 2, 4)
DURATIONS_MS = (0, 10, 100)
# Quick mode checks that the scenario works, not how it scales: the ends of each axis only.
QUICK_PROCESSES = (1, 4)
QUICK_DURATIONS_MS = (0, 100)


def _count(ctx: Context, duration_ms: int, processes: int) -> int:
    """Enough tasks for about 0.5 s (quick) or 3 s (full) of work at full parallelism."""
    if duration_ms == 0:
        return ctx.size(40, 500)
    per_second = processes * 1000 / duration_ms
    return max(10, int(per_second * ctx.seconds(0.5, 3)))


def run_scaling(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    figures: list[Figure] = []
    points: list[dict[str, Any]] = []
    for processes in QUICK_PROCESSES if ctx.quick else PROCESSES:
        count = _count(ctx, 0, processes)
        tg = taskgate_drain(ctx, ECHO, count, concurrency=processes, purpose=f"scale-{processes}")
        celery = celery_drain(ctx, "prefork", processes, count)
        points.append(
            {
                "axis": "processes",
                "processes": processes,
                "duration_ms": 0,
                "tasks": count,
                "taskgate": tg["rate"],
                "raw_celery": celery["rate"],
                "detail": {"taskgate": tg, "raw_celery": celery},
            }
        )
        word = "process" if processes == 1 else "processes"
        figures.append(
            Figure(
                f"scaling.processes.{processes}",
                f"drain, echo, {processes} worker {word}",
                tg["rate"],
                "tasks/s",
                f"raw Celery (prefork {processes})",
                celery["rate"],
            )
        )
    processes = ctx.tg.worker_concurrency
    for duration_ms in QUICK_DURATIONS_MS if ctx.quick else DURATIONS_MS:
        count = _count(ctx, duration_ms, processes)
        seconds = duration_ms / 1000
        sleep = {"type": "sleep", "input": {"seconds": seconds}}
        tg = taskgate_drain(
            ctx, sleep, count, concurrency=processes, purpose=f"sleep-{duration_ms}"
        )
        celery = celery_drain(ctx, "prefork", processes, count, task="bench.sleep", args=[seconds])
        ideal = processes * 1000 / duration_ms if duration_ms else None
        points.append(
            {
                "axis": "duration",
                "processes": processes,
                "duration_ms": duration_ms,
                "tasks": count,
                "taskgate": tg["rate"],
                "raw_celery": celery["rate"],
                "detail": {"taskgate": tg, "raw_celery": celery},
                "ideal": ideal,
            }
        )
        figures.append(
            Figure(
                f"scaling.duration.{duration_ms}",
                f"drain, sleep {duration_ms} ms, {processes} worker processes",
                tg["rate"],
                "tasks/s",
                f"raw Celery (prefork {processes})",
                celery["rate"],
                note=f"ideal {ideal:.0f}/s" if ideal else "",
            )
        )
    return figures, {"points": points}
