"""What a rate-limit check costs the API process: CPU per check of `core/ratelimit.RateLimiter`,
as a submit makes it (one bucket and two caps), with 64 checks in flight as under the harness's
submit load, against an embedded Valkey of its own.

    .venv/bin/python -m benchmarks.limiter_cost [--checks 20000] [--concurrency 64]

Prints CPU µs per check (this process only: Redis's own time is not the API's) and how many
checks shared a script run. Compare with the API's CPU per submit in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

from app.core.config import RateLimitSettings, RedisSettings
from app.core.ratelimit import ALL_PROJECTS, Bucket, Cap, Limit, RateLimiter
from app.core.redis import create_redis
from app.devstack.stack import DevStack


async def _measure(redis_url: str, checks: int, concurrency: int) -> None:
    redis = create_redis(RedisSettings(url=redis_url))
    limiter = RateLimiter(redis, RateLimitSettings())
    project = str(uuid.uuid4())
    limits: list[Limit] = [
        Bucket(f"bench:{uuid.uuid4()}", limit=1_000_000),
        Cap("bench:backlog", project, 100_000_000),
        Cap("bench:backlog", ALL_PROJECTS, 100_000_000),
    ]
    per_worker = checks // concurrency

    async def worker() -> None:
        for _ in range(per_worker):
            await limiter.check(limits)

    await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm: script loaded
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = per_worker * concurrency
    group = limiter._group
    print(  # noqa: T201 - the benchmark's report
        f"{done} checks, {concurrency} in flight: {cpu / done * 1e6:.1f} µs CPU per check, "
        f"{done / wall:,.0f} checks/s, {group.items / max(1, group.runs):.1f} checks per script run"
    )
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        stack = DevStack(Path(scratch), durable=False, environ={})
        urls = stack.start()
        try:
            asyncio.run(_measure(urls.redis_url, args.checks, args.concurrency))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
