"""What the scenarios share: the run's context, sizes, and the drain and submit building blocks."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import load
from benchmarks.harness.celery_peer import QUEUE
from benchmarks.harness.peers import CELERY_KINDS, Peers
from benchmarks.harness.procs import BenchError, Processes, say, wait_until
from benchmarks.harness.stack import Project, Taskgate

ECHO = {"type": "echo", "input": {"n": 1}}
SUBMIT_CONCURRENCY = 32


@dataclass
class Context:
    tg: Taskgate
    peers: Peers
    procs: Processes
    scratch: Path
    quick: bool
    base_env: dict[str, str]
    _projects: int = field(default=0)

    def size(self, quick: int, full: int) -> int:
        return quick if self.quick else full

    def seconds(self, quick: float, full: float) -> float:
        return quick if self.quick else full

    def project(self, purpose: str) -> Project:
        self._projects += 1
        return self.tg.new_project(f"bench {purpose} {self._projects}")

    def loadgen(self, spec: Mapping[str, Any], *, timeout_s: float = 300.0) -> dict[str, Any]:
        return load.loadgen(self.procs, self.scratch, spec, env=self.peers.env, timeout_s=timeout_s)

    @property
    def settle_timeout_s(self) -> float:
        return self.seconds(90, 400)


def http_spec(port: int, path: str, auth: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "port": port,
        "path": path,
        "headers": {"Authorization": auth},
        "body": json.dumps(body),
    }


def failures(result: dict[str, Any]) -> str:
    """What went wrong in a load run, for a table note: non-2xx statuses and client errors."""
    parts = [
        f"{n} HTTP {status}"
        for status, n in sorted(result["statuses"].items())
        if not 200 <= int(status) < 300
    ]
    for error, n in sorted(result["errors"].items()):
        if error == "generator_saturated":
            parts.append(f"{n} not sent (all connections of the generator busy)")
        else:
            parts.append(f"{n} {error.split(':', 1)[0]}")
    return f"{', '.join(parts)} of {result['sent']} requests"


def submit_count(
    ctx: Context,
    project: Project,
    body: Mapping[str, Any],
    count: int,
    *,
    concurrency: int = SUBMIT_CONCURRENCY,
) -> dict[str, Any]:
    """Submit `count` tasks from the load generator; raise unless every one was accepted."""
    spec = http_spec(ctx.tg.port, project.tasks_path, project.auth, body)
    result = ctx.loadgen({**spec, "mode": "http_count", "count": count, "concurrency": concurrency})
    if result["ok"] != count:
        raise BenchError(
            f"{count - result['ok']} of {count} submissions failed: "
            f"{result['statuses']} {result['errors']}"
        )
    return result


def task_window(ctx: Context, project: Project) -> dict[str, float]:
    """From PostgreSQL: tasks, succeeded, first started_at, last finished_at (epoch seconds)."""
    row = ctx.tg.pg.fetch(
        "SELECT count(*) AS tasks, count(*) FILTER (WHERE status = 'succeeded') AS succeeded,"
        " extract(epoch FROM min(started_at))::float8 AS first_started,"
        " extract(epoch FROM max(finished_at))::float8 AS last_finished,"
        " extract(epoch FROM min(created_at))::float8 AS first_created"
        " FROM tasks WHERE project_id = $1::uuid",
        project.id,
    )[0]
    return {key: float(row[key] or 0.0) for key in row.keys()}  # noqa: SIM118 - asyncpg Record


def settle(ctx: Context) -> None:
    """Default workers running and every task of the run terminal, before the next scenario."""
    tg = ctx.tg
    if tg.running_concurrency != tg.worker_concurrency:
        tg.stop_workers()
        tg.start_workers(tg.worker_concurrency)

    def idle() -> bool:
        tg.check_alive()
        left = tg.pg.value(
            "SELECT count(*) FROM tasks WHERE status NOT IN ('succeeded', 'failed', 'canceled')"
        )
        return int(left) == 0

    waited = wait_until(
        idle, what="the taskgate backlog to drain", timeout_s=ctx.settle_timeout_s, interval_s=0.2
    )
    if waited > 1:
        say(f"  (settled: the backlog drained in {waited:.1f} s)")


def taskgate_drain(
    ctx: Context, body: Mapping[str, Any], count: int, *, concurrency: int, purpose: str
) -> dict[str, float]:
    """Workers stopped, `count` tasks preloaded, `worker --concurrency N` started: drain rate.

    The window is the first `started_at` to the last `finished_at`, so the worker's start-up
    is not counted (the peer's is not either). The workers are left running; `settle` puts the
    default ones back.
    """
    tg = ctx.tg
    project = ctx.project(purpose)
    t0 = time.monotonic()
    tg.stop_workers()
    t1 = time.monotonic()
    submit_count(ctx, project, body, count)
    t2 = time.monotonic()
    tg.start_workers(concurrency)
    tg.wait_finished(project, count, timeout_s=ctx.settle_timeout_s)
    t3 = time.monotonic()
    window = task_window(ctx, project)
    if window["succeeded"] < count:
        raise BenchError(f"only {window['succeeded']:.0f} of {count} tasks succeeded")
    seconds = window["last_finished"] - window["first_started"]
    return {
        "tasks": count,
        "seconds": round(seconds, 3),
        "rate": count / max(seconds, 1e-6),
        "stop_s": round(t1 - t0, 2),
        "preload_s": round(t2 - t1, 2),
        "start_and_drain_s": round(t3 - t2, 2),
    }


def celery_drain(
    ctx: Context,
    kind: str,
    processes: int,
    count: int,
    *,
    task: str = "bench.noop",
    args: list[Any] | None = None,
) -> dict[str, float]:
    """Raw Celery: `count` messages preloaded, workers started; first consumed to queue empty."""
    peers = ctx.peers
    peers.broker.purge([QUEUE])
    ctx.loadgen({"mode": "celery_send", "count": count - 1, "task": task, "args": args or []})
    preloaded = peers.broker.waiting([QUEUE])
    if preloaded < count:
        raise BenchError(f"only {preloaded} of {count} messages were queued")
    workers = peers.start_celery(kind, processes)
    try:
        deadline = time.monotonic() + ctx.settle_timeout_s
        first = 0.0
        while time.monotonic() < deadline:
            if peers.broker.waiting([QUEUE]) < preloaded:
                first = time.time()
                break
            time.sleep(0.002)
        if not first:
            raise BenchError(f"raw Celery ({kind}) consumed nothing")
        last = peers.wait_celery_empty(workers, timeout_s=ctx.settle_timeout_s)
    finally:
        peers.stop_celery(workers)
    seconds = last - first
    return {
        "tasks": preloaded,
        "seconds": round(seconds, 3),
        "rate": preloaded / max(seconds, 1e-6),
    }


def best_celery_drain(ctx: Context, count: int, processes: int = 2) -> dict[str, Any]:
    """Both Celery set-ups (prefork N, N solo workers); the better one is the peer."""
    runs = {kind: celery_drain(ctx, kind, processes, count) for kind in CELERY_KINDS}
    best = max(runs, key=lambda kind: runs[kind]["rate"])
    return {"runs": runs, "best": best, "rate": runs[best]["rate"]}


__all__ = ["CELERY_KINDS", "Context", "Peers"]
