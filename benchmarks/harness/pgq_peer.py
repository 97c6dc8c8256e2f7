"""The PgQueuer peer: a PostgreSQL-backed Python queue draining no-op jobs on the same server.

python -m benchmarks.harness.pgq_peer install DSN
python -m benchmarks.harness.pgq_peer enqueue DSN COUNT
python -m benchmarks.harness.pgq_peer drain DSN OUT.json   (exits once the queue is empty)
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

import asyncpg
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
from pgqueuer.types import QueueExecutionMode

ENTRYPOINT = "bench_noop"
BATCH = 1000


async def install(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        if not await queries.schema_is_installed():
            await queries.install()
    finally:
        await connection.close()


async def enqueue(dsn: str, count: int) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        left = count
        while left > 0:
            n = min(BATCH, left)
            await queries.enqueue([ENTRYPOINT] * n, [None] * n, [0] * n)
            left -= n
    finally:
        await connection.close()


async def drain(dsn: str) -> dict[str, float]:
    connection = await asyncpg.connect(dsn)
    seen: list[float] = []
    try:
        manager = QueueManager(Queries(AsyncpgDriver(connection)))

        @manager.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            del job
            seen.append(time.time())

        await manager.run(mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=1))
    finally:
        await connection.close()
    return {"count": len(seen), "first": min(seen, default=0), "last": max(seen, default=0)}


def main() -> None:
    command, dsn, *rest = sys.argv[1:]
    if command == "install":
        asyncio.run(install(dsn))
    elif command == "enqueue":
        asyncio.run(enqueue(dsn, int(rest[0])))
    elif command == "drain":
        Path(rest[0]).write_text(json.dumps(asyncio.run(drain(dsn))))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
