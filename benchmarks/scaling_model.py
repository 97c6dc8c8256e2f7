"""The capacity model of docs/scaling.md, from the harness's own figures.

    .venv/bin/python -m benchmarks.scaling_model [RESULTS.json] [--scale 10,100]

Reads a full run's JSON (default: the newest in benchmarks/results/) and prints, for this box's
measured end-to-end rate and for each `--scale` multiple of it, what every resource must carry:
API and worker cores (from the CPU one submit and one task cost, measured), PostgreSQL commits
and WAL (per task, measured) against the durable commits this PostgreSQL took in the same run,
and the rows `tasks` and `events` grow by per day. Each resource's load is also a multiple of
what one such box provides, so the first one to pass 1x is what saturates first.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DAY_S = 86_400


@dataclass(frozen=True)
class Inputs:
    """What one box measured (a full harness run)."""

    date: str
    cores: int
    rate: float  # end-to-end tasks/s with the stack's worker processes
    api_cpu_ms: float  # per durable submit, API processes only
    worker_cpu_ms: float  # per task, worker processes (main + pool)
    commits_per_task: float
    wal_bytes_per_task: float
    rows_per_task: float
    pg_commits_per_s: float  # durable commits this PostgreSQL takes, 16 clients


def _scenario(results: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for scenario in results["scenarios"]:
        if scenario["name"] == name and scenario["ok"]:
            data: Mapping[str, Any] = scenario["data"]
            return data
    raise SystemExit(f"the results have no successful {name!r} scenario")


def inputs(results: Mapping[str, Any]) -> Inputs:
    e2e = _scenario(results, "end_to_end")
    submit = _scenario(results, "submit")
    if "per_task" not in e2e or "per_request" not in submit:
        raise SystemExit("these results predate the cost figures: run `make bench` again")
    per_task, per_request = e2e["per_task"], submit["per_request"]
    return Inputs(
        date=results["date"],
        cores=int(results["machine"]["cpus"]),
        rate=float(e2e["taskgate"]["rate"]),
        api_cpu_ms=float(per_request["api_cpu_ms"]),
        worker_cpu_ms=float(per_task["worker_cpu_ms"]),
        commits_per_task=float(per_task["commits"]),
        wal_bytes_per_task=float(per_task["wal_bytes"]),
        rows_per_task=float(per_task["rows_written"]),
        pg_commits_per_s=float(e2e["pg_commits_per_s"]),
    )


def model(given: Inputs, scales: Sequence[float]) -> list[dict[str, float]]:
    """Per scale: each resource's demand, and that demand in boxes of the measured kind."""
    rows = []
    for scale in scales:
        rate = given.rate * scale
        api_cores = rate * given.api_cpu_ms / 1000
        worker_cores = rate * given.worker_cpu_ms / 1000
        commits = rate * given.commits_per_task
        rows.append(
            {
                "scale": scale,
                "tasks_per_s": rate,
                "api_cores": api_cores,
                "worker_cores": worker_cores,
                "pg_commits_per_s": commits,
                "pg_commit_load": commits / given.pg_commits_per_s,
                "wal_mb_per_s": rate * given.wal_bytes_per_task / 1e6,
                "rows_per_day_m": rate * given.rows_per_task * DAY_S / 1e6,
                "tasks_per_day_m": rate * DAY_S / 1e6,
            }
        )
    return rows


def render(given: Inputs, rows: Sequence[Mapping[str, float]]) -> str:
    lines = [
        f"inputs (harness run of {given.date}, {given.cores} cores):",
        f"  end to end {given.rate:,.0f} tasks/s; per submit {given.api_cpu_ms:.2f} ms API CPU"
        f" ({1000 / max(given.api_cpu_ms, 1e-9):,.0f} submits/s per API core)",
        f"  per task {given.worker_cpu_ms:.2f} ms worker CPU"
        f" ({1000 / max(given.worker_cpu_ms, 1e-9):,.0f} tasks/s per worker core),"
        f" {given.commits_per_task:.2f} commits, {given.wal_bytes_per_task:,.0f} WAL bytes,"
        f" {given.rows_per_task:.1f} rows written",
        f"  this PostgreSQL: {given.pg_commits_per_s:,.0f} durable commits/s (16 clients)",
        "",
        "| scale | tasks/s | API cores | worker cores | PG commits/s | PG commit load"
        " | WAL MB/s | rows/day (M) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['scale']:g}x | {row['tasks_per_s']:,.0f} | {row['api_cores']:.1f}"
            f" | {row['worker_cores']:.1f} | {row['pg_commits_per_s']:,.0f}"
            f" | {row['pg_commit_load']:.2f}x | {row['wal_mb_per_s']:.1f}"
            f" | {row['rows_per_day_m']:,.0f} |"
        )
    return "\n".join(lines)


def _newest() -> Path:
    found = sorted(RESULTS_DIR.glob("*.json"))
    if not found:
        raise SystemExit(f"no results in {RESULTS_DIR}: run `make bench`")
    return found[-1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling_model", description=__doc__)
    parser.add_argument("results", nargs="?", type=Path)
    parser.add_argument("--scale", default="1,10,100", help="multiples of the measured rate")
    args = parser.parse_args(argv)
    path = args.results or _newest()
    given = inputs(json.loads(path.read_text()))
    scales = [float(part) for part in args.scale.split(",") if part.strip()]
    sys.stdout.write(render(given, model(given, scales)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
