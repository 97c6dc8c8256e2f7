"""A cached read: `GET /v1/tasks/{id}` of a finished task at a fixed 200 req/s, against a bare
FastAPI GET of the same shape in the same run. The difference of their medians is everything
taskgate adds to a read (authentication, the rate limit, the cache lookup and access check),
and so bounds what the gateway's protections cost on it."""

from __future__ import annotations

from typing import Any

from benchmarks.harness.procs import BenchError
from benchmarks.harness.results import Figure, Target, summary
from benchmarks.harness.scenarios.common import Context, http_spec

FIXED_RATE = 200


def _fixed_rate(ctx: Context, port: int, path: str, auth: str) -> dict[str, Any]:
    spec = {**http_spec(port, path, auth, {}), "method": "GET", "body": ""}
    result = ctx.loadgen(
        {**spec, "mode": "http_rate", "rate": FIXED_RATE, "duration_s": ctx.seconds(1, 5)}
    )
    if result["ok"] < result["sent"] * 0.99:
        raise BenchError(f"reads failed: {result['statuses']} {result['errors']}")
    return {"latency_ms": summary(result["latencies_ms"]), "sent": result["sent"]}


def run_read(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    """Open loop at 200 req/s on one finished task: what a poller's read costs."""
    tg, peers = ctx.tg, ctx.peers
    project = ctx.project("read")
    task = tg.submit(project, {"type": "echo", "input": {"n": 1}})
    if tg.wait_task(task["id"], project) != "succeeded":
        raise BenchError("the task to read did not succeed")
    path = f"/v1/tasks/{task['id']}"
    taskgate = _fixed_rate(ctx, tg.port, path, project.auth)

    ceiling = peers.start_ceiling(tg.api_workers)
    try:
        bare = _fixed_rate(ctx, peers.ceiling_port, path, f"Bearer {peers.ceiling_key}")
    finally:
        ctx.procs.stop(ceiling)

    p50, bare_p50 = taskgate["latency_ms"]["p50"], bare["latency_ms"]["p50"]
    label = f"cached GET of a finished task, p50 at {FIXED_RATE} req/s"
    figures = [
        Figure("read.p50", label, p50, "ms", "bare FastAPI GET p50", bare_p50),
        Figure(
            "read.over_bare",
            "cached GET, p50 over bare FastAPI's (auth, rate limit, cache, access check)",
            p50 - bare_p50,
            "ms",
            target=Target("at_most", 1, "≤ 1 ms"),
        ),
        Figure(
            "read.p99",
            f"cached GET p99 at {FIXED_RATE} req/s",
            taskgate["latency_ms"]["p99"],
            "ms",
            "bare FastAPI GET p99",
            bare["latency_ms"]["p99"],
        ),
    ]
    return figures, {"taskgate": taskgate, "fastapi_ceiling": bare}
