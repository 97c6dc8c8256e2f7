"""What one task costs the stack, measured over a scenario: CPU seconds of the API and worker
processes, PostgreSQL commits, rows written and WAL bytes. The capacity model
(`benchmarks/scaling_model.py`, docs/scaling.md) is built from these."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg
import psutil

from benchmarks.harness.stack import Taskgate

_DATABASE_COUNTERS = """
SELECT pg_current_wal_lsn() - '0/0'::pg_lsn AS wal,
       xact_commit, tup_inserted + tup_updated + tup_deleted AS rows
FROM pg_stat_database WHERE datname = current_database()
"""


def _cpu_seconds(pids: Iterable[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


@dataclass(frozen=True)
class Snapshot:
    api_cpu_s: float
    worker_cpu_s: float
    wal_bytes: int
    commits: int
    rows: int


def snapshot(tg: Taskgate) -> Snapshot:
    # The statistics collector publishes counters at transaction end; a fresh snapshot of them:
    tg.pg.execute("SELECT pg_stat_clear_snapshot()")
    [row] = tg.pg.fetch(_DATABASE_COUNTERS)
    return Snapshot(
        api_cpu_s=_cpu_seconds(tg.api_pids()),
        worker_cpu_s=_cpu_seconds(tg.worker_pids()),
        wal_bytes=int(row["wal"]),
        commits=int(row["xact_commit"]),
        rows=int(row["rows"]),
    )


def per_task(before: Snapshot, after: Snapshot, tasks: int) -> dict[str, Any]:
    """Costs per task between two snapshots (the harness's own queries included: a few)."""
    return {
        "tasks": tasks,
        "api_cpu_ms": round(1000 * (after.api_cpu_s - before.api_cpu_s) / tasks, 3),
        "worker_cpu_ms": round(1000 * (after.worker_cpu_s - before.worker_cpu_s) / tasks, 3),
        "wal_bytes": round((after.wal_bytes - before.wal_bytes) / tasks),
        "commits": round((after.commits - before.commits) / tasks, 2),
        "rows_written": round((after.rows - before.rows) / tasks, 2),
    }


async def _commits(dsn: str, connections: int, seconds: float) -> float:
    pool = [await asyncpg.connect(dsn) for _ in range(connections)]
    try:
        await pool[0].execute("CREATE TEMP TABLE IF NOT EXISTS bench_commit (v int)")
        done = 0
        deadline = time.monotonic() + seconds

        async def loop(connection: Any) -> None:
            nonlocal done
            await connection.execute("CREATE TEMP TABLE IF NOT EXISTS bench_commit (v int)")
            while time.monotonic() < deadline:
                async with connection.transaction():
                    await connection.execute("INSERT INTO bench_commit VALUES (1)")
                done += 1

        await asyncio.gather(*(loop(connection) for connection in pool))
        return done / seconds
    finally:
        for connection in pool:
            await connection.close()


def commit_capacity(tg: Taskgate, *, connections: int = 16, seconds: float = 2.0) -> float:
    """Durable single-row transactions per second this PostgreSQL takes from `connections`
    clients at once (BEGIN, INSERT, COMMIT): the ceiling for writes that must each commit."""
    return asyncio.run(_commits(tg.pg_dsn, connections, seconds))
