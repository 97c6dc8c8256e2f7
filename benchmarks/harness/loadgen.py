"""The load generator, run as its own process: `python -m benchmarks.harness.loadgen SPEC OUT`.

SPEC is a JSON object whose `mode` is one of:

- `http_count`: send `count` requests over `concurrency` keep-alive connections (closed loop);
- `http_rate`: open loop at `rate` requests per second for `duration_s`; each latency is taken
  from the request's scheduled start, so a slow server cannot hide its queueing;
- `longpoll`: submit a short `sleep` task, then `GET /v1/tasks/{id}?wait=` at once; the wake is
  the response's arrival minus the task's `finished_at`;
- `celery_send`: raw Celery `apply_async` of a no-op from this one process, as fast as it goes;
- `celery_rate`: `bench.stamp(time.time())` at `rate` per second for `duration_s`.

OUT receives a JSON object of what happened. Every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.harness.httpclient import Connection, HttpError, build_request

MAX_CONNECTIONS = 512
HARD_LIMIT_S = 600.0


def _request(spec: dict[str, Any]) -> bytes:
    headers = {"Content-Type": "application/json", **spec.get("headers", {})}
    return build_request(
        spec.get("method", "POST"),
        spec["path"],
        port=spec["port"],
        headers=headers,
        body=spec.get("body", "").encode(),
    )


class _Tally:
    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.latencies_ms: list[float] = []

    def as_dict(self) -> dict[str, Any]:
        ok = sum(n for status, n in self.statuses.items() if 200 <= status < 300)
        return {
            "sent": sum(self.statuses.values()) + sum(self.errors.values()),
            "ok": ok,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "errors": dict(self.errors),
            "latencies_ms": [round(x, 3) for x in self.latencies_ms],
        }


async def _one(connection: Connection, raw: bytes, tally: _Tally, since: float) -> None:
    try:
        status, _ = await connection.request(raw)
    except (HttpError, TimeoutError) as exc:
        tally.errors[f"{type(exc).__name__}: {exc}"[:120]] += 1
        return
    tally.statuses[status] += 1
    if 200 <= status < 300:
        tally.latencies_ms.append((time.perf_counter() - since) * 1000)


async def http_count(spec: dict[str, Any]) -> dict[str, Any]:
    raw = _request(spec)
    tally = _Tally()
    left = int(spec["count"])
    deadline = time.monotonic() + float(spec.get("timeout_s", HARD_LIMIT_S))

    async def loop() -> None:
        nonlocal left
        connection = Connection(spec["port"])
        try:
            while left > 0 and time.monotonic() < deadline:
                left -= 1
                await _one(connection, raw, tally, time.perf_counter())
        finally:
            connection.close()

    started = time.time()
    await asyncio.gather(*(loop() for _ in range(min(int(spec["concurrency"]), left))))
    return {**tally.as_dict(), "started": started, "ended": time.time()}


async def http_rate(spec: dict[str, Any]) -> dict[str, Any]:
    raw = _request(spec)
    tally = _Tally()
    rate = float(spec["rate"])
    count = int(rate * float(spec["duration_s"]))
    idle: list[Connection] = []
    opened = 0
    late = 0
    running: set[asyncio.Task[None]] = set()

    async def send(at: float) -> None:
        nonlocal opened
        connection = idle.pop() if idle else Connection(spec["port"])
        try:
            await _one(connection, raw, tally, at)
        finally:
            idle.append(connection)

    started_wall = time.time()
    start = time.perf_counter()
    for i in range(count):
        at = start + i / rate
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            late += 1
        if len(running) >= MAX_CONNECTIONS:
            tally.errors["generator_saturated"] += 1
            continue
        if not idle:
            opened += 1
        task = asyncio.create_task(send(at))
        running.add(task)
        task.add_done_callback(running.discard)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(60):
            await asyncio.gather(*running)
    for connection in idle:
        connection.close()
    return {
        **tally.as_dict(),
        "started": started_wall,
        "ended": time.time(),
        "late_starts": late,
        "connections": opened,
    }


async def longpoll(spec: dict[str, Any]) -> dict[str, Any]:
    port, auth = spec["port"], spec["auth"]
    body = json.dumps({"type": "sleep", "input": {"seconds": spec["sleep_s"]}}).encode()
    submit = build_request(
        "POST",
        spec["tasks_path"],
        port=port,
        headers={"Content-Type": "application/json", "Authorization": auth},
        body=body,
    )
    wakes_ms: list[float] = []
    errors: Counter[str] = Counter()
    per_stream = max(1, int(spec["count"]) // int(spec["streams"]))
    deadline = time.monotonic() + float(spec.get("timeout_s", HARD_LIMIT_S))

    async def stream() -> None:
        connection = Connection(port, timeout_s=float(spec["wait_s"]) + 30)
        try:
            for _ in range(per_stream):
                if time.monotonic() > deadline:
                    errors["deadline"] += 1
                    return
                status, answer = await connection.request(submit)
                if status != 202:
                    errors[f"submit_{status}"] += 1
                    continue
                task_id = json.loads(answer)["id"]
                get = build_request(
                    "GET",
                    f"/v1/tasks/{task_id}?wait={spec['wait_s']}",
                    port=port,
                    headers={"Authorization": auth},
                )
                status, answer = await connection.request(get)
                arrived = time.time()
                task = json.loads(answer) if status == 200 else {}
                if task.get("status") != "succeeded" or not task.get("finished_at"):
                    errors[f"get_{status}_{task.get('status')}"] += 1
                    continue
                finished = datetime.fromisoformat(task["finished_at"]).timestamp()
                wakes_ms.append(round((arrived - finished) * 1000, 3))
        except (HttpError, TimeoutError) as exc:
            errors[type(exc).__name__] += 1
        finally:
            connection.close()

    await asyncio.gather(*(stream() for _ in range(int(spec["streams"]))))
    return {"wakes_ms": wakes_ms, "errors": dict(errors)}


def celery_send(spec: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.harness.celery_peer import app

    task = app.tasks[spec.get("task", "bench.noop")]
    args = tuple(spec.get("args", []))
    count = int(spec.get("count", 10_000_000))
    deadline = time.monotonic() + float(spec.get("duration_s", HARD_LIMIT_S))
    task.apply_async(args=args)  # connect and warm up outside the measured window
    sent = 0
    started = time.time()
    t0 = time.perf_counter()
    while sent < count and time.monotonic() < deadline:
        task.apply_async(args=args)
        sent += 1
    seconds = time.perf_counter() - t0
    return {"sent": sent + 1, "measured": sent, "seconds": seconds, "started": started}


def celery_rate(spec: dict[str, Any]) -> dict[str, Any]:
    from benchmarks.harness.celery_peer import stamp

    rate = float(spec["rate"])
    count = int(rate * float(spec["duration_s"]))
    late = 0
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.005:
            late += 1
        stamp.apply_async(args=(time.time(),))
    return {"sent": count, "late_starts": late}


def _run_async(coroutine: Any) -> dict[str, Any]:
    try:
        import uvloop
    except ImportError:
        result: dict[str, Any] = asyncio.run(coroutine)
        return result
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(coroutine)
    return result


def main() -> None:
    spec_path, out_path = (Path(arg) for arg in sys.argv[1:3])
    spec: dict[str, Any] = json.loads(spec_path.read_text())
    mode = spec["mode"]
    if mode == "http_count":
        result = _run_async(http_count(spec))
    elif mode == "http_rate":
        result = _run_async(http_rate(spec))
    elif mode == "longpoll":
        result = _run_async(longpoll(spec))
    elif mode == "celery_send":
        result = celery_send(spec)
    elif mode == "celery_rate":
        result = celery_rate(spec)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    out_path.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
