"""The benchmark harness: taskgate against raw Celery, Flower, a bare FastAPI app and PgQueuer.

    .venv/bin/python -m benchmarks.run [--quick] [--only submit,drain,...] [--out DIR] [--keep]
                                       [--set TASKGATE_X=VALUE ...]

One production-like stack on the embedded engines (durable PostgreSQL, 2 API processes, 2 worker
processes, the scheduler) and the peers on the same engines, in the same run. A full run of every
scenario writes `benchmarks/results/<date>.json`, the charts in `docs/benchmarks/` and the results
section of `docs/benchmarks.md`; `--quick`, `--only` and `--set` runs (a setting tried against the
defaults) write to `benchmarks/out/` instead.
The exit code is 0 only if every selected scenario ran to the end and produced its figures (never
a speed: a target that fails is reported, not an error), 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from benchmarks.dev_startup import load_average, machine
from benchmarks.harness import charts, report
from benchmarks.harness.load import ensure_wrk
from benchmarks.harness.options import add_set_option, overrides_of
from benchmarks.harness.peers import Peers
from benchmarks.harness.procs import (
    REPO_ROOT,
    BenchError,
    Processes,
    interrupt_on_sigterm,
    say,
    signals_deferred,
    warn,
)
from benchmarks.harness.results import ScenarioResult, number, ratio_text
from benchmarks.harness.scenarios import BY_NAME, SCENARIOS, Context, Scenario
from benchmarks.harness.scenarios.common import settle
from benchmarks.harness.stack import Taskgate

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SCRATCH_OUT = REPO_ROOT / "benchmarks" / "out"
DOCS = REPO_ROOT / "docs" / "benchmarks.md"
CHARTS_DIR = REPO_ROOT / "docs" / "benchmarks"
# Quick mode only: a short lease, so recovery after kill -9 fits in its minute (full: default).
QUICK_OVERRIDES = {"TASKGATE_TASKS__LEASE_S": "5", "TASKGATE_TASKS__HEARTBEAT_S": "1"}
PACKAGES = ("celery", "kombu", "flower", "pgqueuer", "fastapi", "uvicorn", "sqlalchemy", "asyncpg")


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes: about a minute")
    parser.add_argument("--only", default="", help=f"comma-separated: {','.join(BY_NAME)}")
    parser.add_argument("--out", type=Path, help="write the JSON and charts here instead")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (logs)")
    parser.add_argument(
        "--worker-pool",
        choices=("threads", "prefork", "solo"),
        default="threads",
        help="taskgate's worker pool (threads: one process per peer process, jobs overlapping)",
    )
    parser.add_argument("--worker-threads", type=int, default=4, help="jobs per threads process")
    add_set_option(parser)
    args = parser.parse_args(argv)
    args.overrides = overrides_of(parser, args)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in BY_NAME]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    args.scenarios = [BY_NAME[name] for name in names] if names else list(SCENARIOS)
    return args


def _versions() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "missing"
    done = subprocess.run(  # noqa: S603 - fixed argv
        [ensure_wrk(), "-v"], capture_output=True, text=True, timeout=10, check=False
    )
    found["wrk"] = (done.stdout + done.stderr).split("\n", 1)[0].strip()
    return found


def _run_one(ctx: Context, scenario: Scenario) -> ScenarioResult:
    say(f"\n== {scenario.name}: {scenario.title}")
    started = time.monotonic()
    try:
        figures, data = scenario.run(ctx)
        settle(ctx)
    except (BenchError, OSError, ValueError, KeyError, RuntimeError) as exc:
        warn(f"scenario {scenario.name} FAILED: {exc}")
        warn("".join(traceback.format_exception(exc)[-3:]))
        try:
            settle(ctx)
        except BenchError as again:
            warn(f"  and the stack did not settle afterwards: {again}")
        return ScenarioResult(
            scenario.name, scenario.title, False, time.monotonic() - started, error=str(exc)
        )
    result = ScenarioResult(
        scenario.name, scenario.title, True, time.monotonic() - started, figures, data
    )
    for figure in figures:
        verdict = "" if figure.passed is None else ("  pass" if figure.passed else "  FAIL")
        peer = (
            f"   {figure.peer}: {number(figure.peer_value, figure.unit)} ({ratio_text(figure.ratio)})"
            if figure.peer
            else ""
        )
        target = f"  [{figure.target.text}]" if figure.target else ""
        say(f"  {figure.label}: {number(figure.value, figure.unit)}{peer}{target}{verdict}")
    say(f"  ({result.seconds:.1f} s)")
    return result


def _problems(results: Sequence[ScenarioResult], selected: Sequence[Scenario]) -> list[str]:
    """What makes the run a failure: a scenario that did not run, failed, or gave no figure."""
    problems = []
    ran = {result.name: result for result in results}
    for scenario in selected:
        result = ran.get(scenario.name)
        if result is None:
            problems.append(f"{scenario.name}: did not run")
        elif not result.ok:
            problems.append(f"{scenario.name}: {result.error}")
        elif not result.figures or any(math.isnan(f.value) for f in result.figures):
            problems.append(f"{scenario.name}: produced no figure (or a NaN)")
    return problems


def _execute(args: argparse.Namespace, scratch: Path, meta: dict[str, Any]) -> list[ScenarioResult]:
    procs = Processes(scratch / "logs")
    overrides = {**(QUICK_OVERRIDES if args.quick else {}), **args.overrides}
    tg = Taskgate(
        procs,
        scratch,
        overrides,
        worker_pool=args.worker_pool,
        worker_threads=args.worker_threads,
    )
    meta["stack"]["worker_pool"] = args.worker_pool
    if args.worker_pool != "prefork":
        meta["stack"]["worker_threads"] = args.worker_threads
    peers: Peers | None = None
    results: list[ScenarioResult] = []
    try:
        ensure_wrk()
        tg.start()
        meta["stack"]["durability"] = tg.durability
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("TASKGATE_")}
        urls = tg.stack_urls
        peers = Peers(procs, scratch, base_env, urls.redis_url, urls.database_url)
        ctx = Context(tg, peers, procs, scratch, args.quick, base_env)
        for scenario in args.scenarios:
            results.append(_run_one(ctx, scenario))
    finally:
        with signals_deferred():
            if peers is not None:
                peers.broker.close()
            tg.stop()
            leftovers = procs.leftovers()
            if leftovers:
                warn(f"stopped processes left behind: {', '.join(leftovers)}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    interrupt_on_sigterm()
    full_docs = (
        not args.quick
        and not args.overrides
        and len(args.scenarios) == len(SCENARIOS)
        and args.out is None
    )
    mode = "quick" if args.quick else "full"
    started = time.monotonic()
    now = datetime.now(UTC)
    meta: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%d"),
        "started_at": now.isoformat(timespec="seconds"),
        "mode": mode,
        "machine": machine(),
        "load_average": {"before": load_average()},
        "stack": {
            "api_processes": 2,
            "worker_processes": 2,
            "settings_overrides": {**(QUICK_OVERRIDES if args.quick else {}), **args.overrides},
            "durability": {},
        },
        "versions": {},
    }
    scratch = Path(tempfile.mkdtemp(prefix="taskgate-bench-"))
    say(f"taskgate benchmark harness, {mode} mode: {', '.join(s.name for s in args.scenarios)}")
    say(f"scratch (logs): {scratch}")
    results: list[ScenarioResult] = []
    interrupted = False
    try:
        meta["versions"] = _versions()
        results = _execute(args, scratch, meta)
    except KeyboardInterrupt:
        interrupted = True
    except BenchError as exc:
        warn(f"the stack could not start: {exc}")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    if interrupted:
        warn("interrupted: every child was stopped")
        return 130
    meta["load_average"]["after"] = load_average()
    meta["seconds"] = round(time.monotonic() - started, 1)
    out_dir = args.out or (RESULTS_DIR if full_docs else SCRATCH_OUT / mode)
    json_path = out_dir / f"{meta['date']}.json"
    report.write_json(json_path, report.document(results, meta=meta))
    drawn = charts.draw(results, CHARTS_DIR if full_docs else out_dir)
    table = report.table(results)
    say("\n" + table + "\n\n" + report.targets_line(results))
    if full_docs:
        section = report.docs_section(
            results, meta=meta, json_name=json_path.name, charts=drawn, docs_dir=DOCS.parent
        )
        report.update_docs(DOCS, section)
        say(
            f"\nwrote {json_path.relative_to(REPO_ROOT)}, docs/benchmarks.md and {len(drawn)} charts"
        )
    else:
        say(f"\nwrote {json_path} and {len(drawn)} charts in {out_dir}")
    problems = _problems(results, args.scenarios)
    if not drawn:
        problems.append("no chart was drawn")
    say(f"run took {meta['seconds']:.0f} s")
    if problems:
        warn("\nFAILED:\n  " + "\n  ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
