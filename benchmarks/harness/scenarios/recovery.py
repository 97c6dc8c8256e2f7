"""Recovery: kill -9 every worker process mid-task, or flush Redis with tasks queued; how long
until the tasks run again."""

from __future__ import annotations

import time
from typing import Any

import httpx
import redis

from benchmarks.harness.celery_peer import QUEUE
from benchmarks.harness.procs import BenchError, wait_until
from benchmarks.harness.results import Figure, Target
from benchmarks.harness.scenarios.common import ECHO, Context, settle, submit_count, task_window
from benchmarks.harness.stack import Project

SLEEP_S = 600  # far longer than any recovery: the tasks are canceled once measured


def _started_again(ctx: Context, task_ids: list[str], after: float) -> dict[str, float]:
    rows = ctx.tg.pg.fetch(
        "SELECT subject_id::text AS id, extract(epoch FROM min(at))::float8 AS at FROM events"
        " WHERE kind = 'task.started' AND subject_id = ANY($1::uuid[]) AND at > to_timestamp($2)"
        " GROUP BY subject_id",
        task_ids,
        after,
    )
    return {row["id"]: float(row["at"]) for row in rows}


def _cancel(ctx: Context, project: Project, task_ids: list[str]) -> None:
    with httpx.Client(base_url=ctx.tg.base_url, timeout=30) as client:
        for task_id in task_ids:
            client.post(f"/v1/tasks/{task_id}/cancel", headers={"Authorization": project.auth})


def run_recovery(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    tg = ctx.tg
    project = ctx.project("recovery")
    tg.probe_workers(project)
    slots = tg.worker_concurrency
    task_ids = [
        tg.submit(project, {"type": "sleep", "input": {"seconds": SLEEP_S}})["id"]
        for _ in range(slots)
    ]

    def all_running() -> bool:
        n = tg.pg.value(
            "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND status = 'running'",
            task_ids,
        )
        return int(n) == slots

    wait_until(all_running, what=f"{slots} running sleep tasks", timeout_s=60)
    time.sleep(0.5)  # inside the handler, not at the lease
    killed_at = time.time()
    killed = tg.kill_workers()
    tg.start_workers(tg.worker_concurrency)  # as a supervisor would, at once
    timeout_s = ctx.seconds(90, 180)
    try:
        wait_until(
            lambda: len(_started_again(ctx, task_ids, killed_at)) == slots,
            what="the killed tasks to start again",
            timeout_s=timeout_s,
            interval_s=0.1,
        )
        again = _started_again(ctx, task_ids, killed_at)
    finally:
        _cancel(ctx, project, task_ids)
        settle(ctx)
    per_task = sorted(at - killed_at for at in again.values())
    if len(per_task) < slots:
        raise BenchError(f"{len(per_task)} of {slots} killed tasks ran again")
    seconds = per_task[-1]
    lease = ctx.tg.env.get("TASKGATE_TASKS__LEASE_S", "the default")
    figures = [
        Figure(
            "recovery.seconds",
            "kill -9 of every worker → killed tasks running again",
            seconds,
            "s",
            target=Target("at_most", 15, "≤ 15 s"),
            note=f"lease {lease} s" if lease != "the default" else "default lease",
        )
    ]
    data = {
        "killed_processes": len(killed),
        "killed_tasks": slots,
        "per_task_s": [round(s, 3) for s in per_task],
        "lease_s": lease,
        "how": "workers restarted right after the kill; time to each task's next"
        " `task.started` event in PostgreSQL",
    }
    return figures, data


def run_flush(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    """Redis FLUSHALL (the run's own Valkey) with tasks queued and no worker running: how long
    until every one of them has succeeded, against the default `redispatch_after_s`. Raw Celery
    under the same flush: what is left of the messages it had queued."""
    tg, peers = ctx.tg, ctx.peers
    count = ctx.size(50, 100)
    project = ctx.project("flush")
    tg.probe_workers(project)
    tg.stop_workers()
    submit_count(ctx, project, ECHO, count)
    peers.broker.purge([QUEUE])
    ctx.loadgen({"mode": "celery_send", "count": count})
    celery_queued = peers.broker.waiting([QUEUE])
    time.sleep(0.5)  # taskgate's messages are all in the broker
    broker = redis.Redis.from_url(tg.stack_urls.redis_url, socket_timeout=5)
    try:
        flushed_at = time.time()
        broker.flushall()
    finally:
        broker.close()
    celery_left = peers.broker.waiting([QUEUE])
    tg.start_workers(tg.worker_concurrency)
    try:
        tg.wait_finished(project, count + 1, timeout_s=ctx.settle_timeout_s)
    finally:
        settle(ctx)
    window = task_window(ctx, project)
    seconds = window["last_finished"] - flushed_at
    figures = [
        Figure(
            "flush.seconds",
            f"Redis FLUSHALL with {count} tasks queued → all succeeded",
            seconds,
            "s",
            target=Target("at_most", 15, "≤ 15 s"),
            note=f"worker start included; raw Celery kept {celery_left} of {celery_queued}",
        )
    ]
    data = {
        "tasks": count,
        "seconds": round(seconds, 3),
        "raw_celery": {"queued": celery_queued, "left_after_flush": celery_left},
        "how": "workers stopped, tasks submitted and published, FLUSHALL, workers started; time"
        " from the flush to the last `finished_at`",
    }
    return figures, data
