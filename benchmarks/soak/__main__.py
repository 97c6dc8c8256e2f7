"""The soak: mixed load on taskgate for `--minutes`, a worker node SIGKILLed every `--kill-every`
seconds, a drain, then the checks (docs/benchmarks.md, "Soak").

    .venv/bin/python -m benchmarks.soak [--short] [--minutes N] [--kill-every SECONDS]
                                        [--rate SUBMITS_PER_S] [--out DIR] [--keep]
                                        [--set TASKGATE_X=VALUE ...]

The stack is the harness's (`benchmarks/harness/stack.py`: durable embedded engines, 2 API
processes, 2 worker nodes of 4 threads, the scheduler). The default run (30 minutes, a kill every
5) writes `benchmarks/results/soak-<date>.json`; `--short` (45 s of load, a kill every 15 s) and
other runs write to `benchmarks/out/soak/`. Exit code 0 only when every check passed, 1 when one
failed or the run could not finish, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.dev_startup import load_average, machine
from benchmarks.harness import report
from benchmarks.harness.options import add_set_option, overrides_of
from benchmarks.harness.procs import (
    REPO_ROOT,
    BenchError,
    Processes,
    interrupt_on_sigterm,
    say,
    signals_deferred,
    wait_until,
    warn,
)
from benchmarks.harness.receiver import Receiver
from benchmarks.harness.stack import TERMINAL, Project, Taskgate
from benchmarks.soak import checks
from benchmarks.soak.checks import Check
from benchmarks.soak.load import MixedLoad, Plan, Record

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
SCRATCH_OUT = REPO_ROOT / "benchmarks" / "out" / "soak"
# Recovery in seconds rather than minutes, so the drain after the last kill is short and
# bounded: a killed worker's tasks come back after the lease (5 s), lost messages after 10 s,
# a killed webhook attempt after its timeout and grace (7 s). The same in every mode.
SOAK_SETTINGS = {
    "TASKGATE_TASKS__LEASE_S": "5",
    "TASKGATE_TASKS__HEARTBEAT_S": "1",
    "TASKGATE_TASKS__RETRY_BASE_S": "0.5",
    "TASKGATE_TASKS__REDISPATCH_AFTER_S": "10",
    "TASKGATE_WORKER__UNACKED_RESTORE_INTERVAL_S": "1",
    "TASKGATE_WEBHOOKS__TIMEOUT_S": "5",
    "TASKGATE_WEBHOOKS__LEASE_GRACE_S": "2",
    "TASKGATE_WEBHOOKS__REDISPATCH_AFTER_S": "5",
}
FULL_MINUTES, FULL_KILL_EVERY_S, FULL_RATE = 30.0, 300.0, 8.0
SHORT_SECONDS, SHORT_KILL_EVERY_S = 45.0, 15.0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__)
    parser.add_argument("--short", action="store_true", help="45 s of load, a kill every 15 s")
    parser.add_argument("--minutes", type=float, default=FULL_MINUTES, help="load duration")
    parser.add_argument(
        "--kill-every", type=float, default=None, help="seconds between worker kills (300)"
    )
    parser.add_argument(
        "--rate", type=float, default=FULL_RATE, help="submits (and reads) per second"
    )
    parser.add_argument("--out", type=Path, help="write the JSON here instead")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (logs)")
    add_set_option(parser)
    args = parser.parse_args(argv)
    args.overrides = overrides_of(parser, args)
    if args.short:
        seconds, kill_every = SHORT_SECONDS, args.kill_every or SHORT_KILL_EVERY_S
        args.plan = Plan(seconds, kill_every, args.rate, args.rate, sample_every_s=2.0)
        args.mode, args.bucket_s, args.drain_s = "short", 5.0, 90.0
        args.latency_slack = checks.SHORT_SLACK_SCALE
    else:
        seconds, kill_every = args.minutes * 60, args.kill_every or FULL_KILL_EVERY_S
        args.plan = Plan(seconds, kill_every, args.rate, args.rate, sample_every_s=10.0)
        args.latency_slack = 1.0
        full = (args.minutes, kill_every, args.rate) == (FULL_MINUTES, FULL_KILL_EVERY_S, FULL_RATE)
        args.mode = "full" if full and not args.overrides else "custom"
        args.bucket_s, args.drain_s = 60.0, 300.0
    if args.plan.kill_every_s >= args.plan.seconds - 1:
        parser.error("--kill-every must leave room for at least one kill within the run")
    args.warmup_s = min(max(10.0, seconds * 0.1), 180.0)
    return args


def _commit() -> dict[str, Any]:
    def git(*argv: str) -> str:
        done = subprocess.run(  # noqa: S603 - fixed argv
            ["git", *argv],  # noqa: S607 - git from PATH
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout.strip()

    dirty = bool(git("status", "--short", "--untracked-files=no"))
    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": dirty}


def _drain(tg: Taskgate, record: Record, timeout_s: float) -> float:
    """Wait (bounded) until every 202'd task is terminal; the seconds it took."""
    ids = list(record.tasks)

    def drained() -> bool:
        tg.check_alive()
        left = tg.pg.value(
            "SELECT count(*) FROM tasks WHERE id = ANY($1::uuid[]) AND status <> ALL($2::text[])",
            ids,
            list(TERMINAL),
        )
        return int(left) == 0

    try:
        return wait_until(drained, what="every task terminal", timeout_s=timeout_s, interval_s=0.5)
    except BenchError as exc:
        warn(f"drain: {exc} (the checks say which)")
        return timeout_s


def _drain_webhooks(
    tg: Taskgate, project: Project, endpoint_id: str, receiver: Receiver, timeout_s: float
) -> float:
    """Wait (bounded) until each terminal event has a finished delivery that has arrived."""

    def delivered() -> bool:
        tg.check_alive()
        row = tg.pg.fetch(
            "SELECT (SELECT count(*) FROM events WHERE project_id = $1::uuid"
            "         AND kind = ANY($3::text[])) AS events,"
            " (SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $2::uuid"
            "   AND state = 'succeeded') AS succeeded",
            project.id,
            endpoint_id,
            list(checks.WEBHOOK_EVENTS),
        )[0]
        arrived = len({a.webhook_id for a in receiver.arrivals})
        return int(row["succeeded"]) >= int(row["events"]) and arrived >= int(row["events"])

    try:
        return wait_until(delivered, what="every delivery", timeout_s=timeout_s, interval_s=0.5)
    except BenchError as exc:
        warn(f"webhook drain: {exc} (the checks say which)")
        return timeout_s


def _soak(args: argparse.Namespace, scratch: Path, meta: dict[str, Any]) -> list[Check]:
    procs = Processes(scratch / "logs")
    overrides = {**SOAK_SETTINGS, **args.overrides}
    tg = Taskgate(procs, scratch, overrides, worker_pool="threads", worker_threads=4)
    try:
        tg.start()
        meta["stack"]["durability"] = tg.durability
        tg.probe_workers(tg.new_project("soak probe"))
        project = tg.new_project("soak")
        with Receiver() as receiver:
            [endpoint] = tg.add_webhooks(
                project, [receiver.url("soak")], events=checks.WEBHOOK_EVENTS
            )
            receiver.secrets["soak"] = endpoint["secret"]
            plan = args.plan
            say(
                f"load: {plan.seconds:.0f} s, {plan.submits_per_s:g} submits/s and"
                f" {plan.reads_per_s:g} reads/s, {plan.long_pollers} long-pollers, an upload"
                f" every {plan.upload_every_s:g} s, worker node 0 killed every"
                f" {plan.kill_every_s:.0f} s"
            )
            started = time.monotonic()
            record = asyncio.run(MixedLoad(tg, project, plan).run())
            meta["load_s"] = round(time.monotonic() - started, 1)
            say(f"load done: {len(record.tasks)} tasks accepted; draining")
            meta["drain_s"] = round(_drain(tg, record, args.drain_s), 1)
            meta["webhook_drain_s"] = round(
                _drain_webhooks(tg, project, endpoint["id"], receiver, args.drain_s), 1
            )
            arrivals = list(receiver.arrivals)
        tg.check_alive()
        verdicts = [
            *checks.task_checks(tg, project, record),
            *checks.webhook_checks(tg, project, endpoint["id"], arrivals),
            *checks.load_checks(record, plan),
            *checks.memory_checks(record, plan, args.warmup_s),
            *checks.latency_checks(record, plan, args.warmup_s, slack_scale=args.latency_slack),
        ]
        meta["results"] = _results(tg, project, record, arrivals, args.bucket_s)
    finally:
        with signals_deferred():
            tg.stop()
            leftovers = procs.leftovers()
            if leftovers:
                warn(f"stopped processes left behind: {', '.join(leftovers)}")
    return verdicts


def _results(
    tg: Taskgate, project: Project, record: Record, arrivals: list[Any], bucket_s: float
) -> dict[str, Any]:
    by_status = {
        f"{row['type']} {row['status']}": int(row["n"])
        for row in tg.pg.fetch(
            "SELECT type, status, count(*) AS n FROM tasks WHERE project_id = $1::uuid"
            " GROUP BY type, status ORDER BY type, status",
            project.id,
        )
    }
    requeued = tg.pg.value(
        "SELECT count(*) FROM events WHERE project_id = $1::uuid AND kind = 'task.requeued'",
        project.id,
    )
    return {
        "tasks": {
            "accepted": len(record.tasks),
            "by_type": dict(Counter(sent.type for sent in record.tasks.values())),
            "by_type_and_status": by_status,
            "requeued_events": int(requeued),
        },
        "files_uploaded": len(record.files),
        "requests": record.statuses(),
        "transport_errors": dict(record.errors),
        "unexpected_answers": record.unexpected,
        "kills": [asdict(kill) for kill in record.kills],
        "webhook_arrivals": len(arrivals),
        "memory_samples": record.samples,
        "latency_buckets": checks.buckets(record, bucket_s),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    interrupt_on_sigterm()
    started = time.monotonic()
    now = datetime.now(UTC)
    meta: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%d"),
        "started_at": now.isoformat(timespec="seconds"),
        "mode": args.mode,
        **_commit(),
        "machine": machine(),
        "load_average": {"before": load_average()},
        "stack": {
            "api_processes": 2,
            "worker_nodes": 2,
            "worker_pool": "threads",
            "worker_threads": 4,
            "settings_overrides": {**SOAK_SETTINGS, **args.overrides},
            "durability": {},
        },
        "plan": asdict(args.plan),
        "bounds": {
            "memory": f"≤ +{checks.MEMORY_GROWTH_PCT:g}% or +{checks.MEMORY_GROWTH_MIB:g} MiB",
            "latency": f"p50 ≤ {checks.P50_FACTOR}x + {checks.P50_SLACK_MS:g} ms,"
            f" p99 ≤ {checks.P99_FACTOR}x + {checks.P99_SLACK_MS:g} ms",
            "warmup_s": args.warmup_s,
        },
    }
    scratch = Path(tempfile.mkdtemp(prefix="taskgate-soak-"))
    say(f"taskgate soak, {args.mode} mode; scratch (logs): {scratch}")
    verdicts: list[Check] = []
    failure = ""
    try:
        verdicts = _soak(args, scratch, meta)
    except KeyboardInterrupt:
        warn("interrupted: every child was stopped")
        return 130
    except BenchError as exc:
        failure = str(exc)
        warn(f"the soak could not finish: {exc}")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    meta["load_average"]["after"] = load_average()
    meta["seconds"] = round(time.monotonic() - started, 1)
    meta["error"] = failure or None
    meta["checks"] = [check.as_dict() for check in verdicts]
    passed = bool(verdicts) and not failure and all(check.passed for check in verdicts)
    meta["passed"] = passed
    out_dir = args.out or (RESULTS_DIR if args.mode == "full" else SCRATCH_OUT)
    name = (
        f"soak-{meta['date']}.json"
        if args.mode == "full"
        else f"soak-{meta['date']}-{args.mode}.json"
    )
    report.write_json(out_dir / name, meta)
    say("")
    for check in verdicts:
        verdict = "pass" if check.passed else "FAIL"
        detail = f"  — {check.detail}" if check.detail and not check.passed else ""
        say(f"  {verdict}  {check.name}: {check.value}  [{check.bound}]{detail}")
    results = meta.get("results", {})
    if results:
        say(f"\n  tasks: {results['tasks']['by_type_and_status']}")
        say(f"  requests: {results['requests']}")
    say(f"\nwrote {out_dir / name}; the soak took {meta['seconds']:.0f} s")
    if not passed:
        warn("FAILED: " + (failure or ", ".join(c.name for c in verdicts if not c.passed)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
