"""Durable submit: throughput and latency at 64 connections (wrk), and p50 at a fixed 200 req/s."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from benchmarks.harness import costs, load
from benchmarks.harness.celery_peer import QUEUE
from benchmarks.harness.results import Figure, Target, summary
from benchmarks.harness.scenarios.common import ECHO, Context, failures, http_spec, settle

CONNECTIONS = 64
FIXED_RATE = 200
# The ceiling's path has the same shape as taskgate's; the project id is not looked up.
CEILING_PATH = "/v1/projects/00000000-0000-4000-8000-000000000000/tasks"
FLOWER_PATH = "/api/task/async-apply/bench.noop"
FLOWER_BODY = json.dumps({"args": []})


def _warm(ctx: Context, url: str, body: str, auth: str) -> None:
    if not ctx.quick:  # a warm-up second: connection pools, caches, lazy imports
        load.wrk(ctx.scratch, url=url, body=body, auth=auth, connections=CONNECTIONS, duration_s=1)


def _wrk(
    ctx: Context, url: str, body: str, auth: str, seconds: float, *, warm: bool = True
) -> load.WrkResult:
    if warm:
        _warm(ctx, url, body, auth)
    return load.wrk(
        ctx.scratch, url=url, body=body, auth=auth, connections=CONNECTIONS, duration_s=seconds
    )


def run_submit(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    """Closed loop, 64 connections, consumers stopped on both sides: what the front door takes."""
    tg, peers = ctx.tg, ctx.peers
    seconds = ctx.seconds(1, 5)
    project = ctx.project("submit")
    body = json.dumps(ECHO)

    ceiling = peers.start_ceiling(tg.api_workers)
    try:
        bare = _wrk(
            ctx,
            f"http://127.0.0.1:{peers.ceiling_port}{CEILING_PATH}",
            body,
            f"Bearer {peers.ceiling_key}",
            seconds,
        )
    finally:
        ctx.procs.stop(ceiling)

    flower_proc = peers.start_flower()
    try:
        flower = _wrk(
            ctx,
            f"http://127.0.0.1:{peers.flower_port}{FLOWER_PATH}",
            FLOWER_BODY,
            peers.flower_auth,
            seconds,
        )
    finally:
        ctx.procs.stop(flower_proc)
        peers.broker.purge([QUEUE])

    send = ctx.loadgen({"mode": "celery_send", "duration_s": ctx.seconds(1, 5)})
    peers.broker.purge([QUEUE])
    raw_send = send["measured"] / send["seconds"]

    tg.stop_workers()  # like the peers: nothing consumes meanwhile
    try:
        url = tg.base_url + project.tasks_path
        _warm(ctx, url, body, project.auth)
        before = costs.snapshot(tg)
        submit = _wrk(ctx, url, body, project.auth, seconds, warm=False)
        per_request = costs.per_task(before, costs.snapshot(tg), max(submit.requests, 1))
    finally:
        settle(ctx)

    data: dict[str, Any] = {
        "connections": CONNECTIONS,
        "seconds": seconds,
        "taskgate": submit.as_dict(),
        "flower_async_apply": flower.as_dict(),
        "raw_celery_send": {"sent": send["measured"], "seconds": round(send["seconds"], 3)},
        "fastapi_ceiling": bare.as_dict(),
        # What one durable submit cost the stack: docs/scaling.md.
        "per_request": per_request,
    }
    label = f"durable submit, {CONNECTIONS} connections"
    figures = [
        Figure(
            "submit.vs_flower",
            label,
            submit.rate,
            "req/s",
            "Flower async-apply",
            flower.rate,
            Target("ratio_at_least", 3.0, "≥ 3x Flower"),
        ),
        Figure(
            "submit.vs_raw_send",
            label,
            submit.rate,
            "req/s",
            "raw Celery apply_async, 1 process",
            raw_send,
            Target("ratio_at_least", 1.5, "≥ 1.5x raw send"),
        ),
        Figure(
            "submit.vs_ceiling",
            label,
            submit.rate,
            "req/s",
            "bare FastAPI validated POST",
            bare.rate,
            note="the HTTP ceiling under the same uvicorn settings",
        ),
        Figure(
            "submit.p99",
            f"submit p99, {CONNECTIONS} connections",
            submit.p99_ms,
            "ms",
            "Flower async-apply p99",
            flower.p99_ms,
            Target("at_most", 100, "≤ 100 ms"),
        ),
        Figure(
            "submit.p50",
            f"submit p50, {CONNECTIONS} connections",
            submit.p50_ms,
            "ms",
            "Flower async-apply p50",
            flower.p50_ms,
        ),
    ]
    for name, result in (("taskgate", submit), ("Flower", flower), ("ceiling", bare)):
        if result.non_2xx or result.socket_errors:
            data.setdefault("warnings", []).append(
                f"{name}: {result.non_2xx} non-2xx, {result.socket_errors} socket errors"
            )
    return figures, data


def _fixed_rate(ctx: Context, port: int, path: str, auth: str, body: Any) -> dict[str, Any]:
    spec = {**http_spec(port, path, auth, {}), "body": body}
    result = ctx.loadgen(
        {**spec, "mode": "http_rate", "rate": FIXED_RATE, "duration_s": ctx.seconds(1, 5)}
    )
    return {
        "latency_ms": summary(result["latencies_ms"]),
        "sent": result["sent"],
        "ok": result["ok"],
        "statuses": result["statuses"],
        "errors": result["errors"],
        "late_starts": result["late_starts"],
    }


def run_submit_rate(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    """Open loop at 200 req/s, consumers running: the latency a client sees on a calm day."""
    tg, peers = ctx.tg, ctx.peers
    project = ctx.project("submit-rate")
    taskgate = _fixed_rate(ctx, tg.port, project.tasks_path, project.auth, json.dumps(ECHO))
    settle(ctx)

    workers = peers.start_celery("prefork", 2)
    flower_proc = peers.start_flower()
    try:
        peers.wait_celery_ready(workers)
        flower = _fixed_rate(ctx, peers.flower_port, FLOWER_PATH, peers.flower_auth, FLOWER_BODY)
    finally:
        ctx.procs.stop(flower_proc)
        peers.stop_celery(workers)
        peers.broker.purge([QUEUE])

    ceiling = peers.start_ceiling(tg.api_workers)
    try:
        bare = _fixed_rate(
            ctx, peers.ceiling_port, CEILING_PATH, f"Bearer {peers.ceiling_key}", json.dumps(ECHO)
        )
    finally:
        ctx.procs.stop(ceiling)

    label = f"submit p50 at {FIXED_RATE} req/s"
    p50 = taskgate["latency_ms"]["p50"]
    figures = [
        Figure(
            "submit_rate.p50",
            label,
            p50,
            "ms",
            "Flower async-apply p50",
            flower["latency_ms"]["p50"],
            Target("at_most", 5, "≤ 5 ms"),
        ),
        Figure(
            "submit_rate.p50_vs_ceiling",
            label,
            p50,
            "ms",
            "bare FastAPI p50",
            bare["latency_ms"]["p50"],
        ),
        Figure(
            "submit_rate.p99",
            f"submit p99 at {FIXED_RATE} req/s",
            taskgate["latency_ms"]["p99"],
            "ms",
            "Flower async-apply p99",
            flower["latency_ms"]["p99"],
        ),
    ]
    if taskgate["ok"] != taskgate["sent"]:
        figures[0] = replace(figures[0], note=failures(taskgate))
    data = {
        "rate": FIXED_RATE,
        "taskgate": taskgate,
        "flower_async_apply": flower,
        "fastapi_ceiling": bare,
    }
    return figures, data
