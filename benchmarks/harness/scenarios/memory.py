"""Resident memory of the API and worker processes over 10,000 tasks (500 in quick mode)."""

from __future__ import annotations

import threading
from typing import Any

from benchmarks.harness.results import Figure, Target
from benchmarks.harness.scenarios.common import ECHO, Context, submit_count
from benchmarks.rss import rss_bytes

MIB = 1024 * 1024
CHUNKS = 10


class _PeakSampler:
    """The highest RSS of any one API process, sampled every 100 ms while the load runs."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        for _ in range(100_000):
            self.peak = max([self.peak, *(rss_bytes(p) for p in self.ctx.tg.api_pids())])
            if self._stop.wait(0.1):
                return

    def __enter__(self) -> _PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _sample(ctx: Context, done: int) -> dict[str, Any]:
    api = [rss_bytes(pid) / MIB for pid in ctx.tg.api_pids()]
    workers = [rss_bytes(pid) / MIB for pid in ctx.tg.worker_pids()]
    return {
        "tasks": done,
        "api_mib": [round(x, 1) for x in api],
        "api_total_mib": round(sum(api), 1),
        "worker_mib": [round(x, 1) for x in workers],
        "worker_total_mib": round(sum(workers), 1),
    }


def _growth(first: float, last: float) -> float:
    return (last - first) / first * 100 if first else 0.0


def run_memory(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    tg = ctx.tg
    total = ctx.size(500, 10_000)
    chunk = total // CHUNKS
    project = ctx.project("memory")
    tg.probe_workers(project)
    samples = [_sample(ctx, 0)]
    with _PeakSampler(ctx) as peak:
        for i in range(1, CHUNKS + 1):
            submit_count(ctx, project, ECHO, chunk, concurrency=16)
            tg.wait_finished(project, i * chunk + 1, timeout_s=ctx.settle_timeout_s)
            samples.append(_sample(ctx, i * chunk))
    # The first chunk warms every process up (imports, pools, caches): growth is counted from it.
    warm, last = samples[1], samples[-1]
    api_peak = max(peak.peak / MIB, *(max(s["api_mib"], default=0) for s in samples))
    api_growth = _growth(warm["api_total_mib"], last["api_total_mib"])
    worker_growth = _growth(warm["worker_total_mib"], last["worker_total_mib"])
    span = f"tasks {chunk:,} → {total:,}"
    figures = [
        Figure(
            "memory.api_peak",
            "API process RSS under load (largest process)",
            api_peak,
            "MiB",
            target=Target("below", 150, "< 150 MiB"),
        ),
        Figure(
            "memory.api_growth",
            f"API RSS growth, {span}",
            api_growth,
            "%",
            target=Target("below", 10, "< 10%"),
        ),
        Figure(
            "memory.worker_growth",
            f"worker RSS growth (main + pool), {span}",
            worker_growth,
            "%",
            target=Target("below", 10, "< 10%"),
            note="the pool may replace its processes: worker_max_tasks_per_child",
        ),
    ]
    return figures, {"tasks": total, "samples": samples, "api_peak_mib": round(api_peak, 1)}
