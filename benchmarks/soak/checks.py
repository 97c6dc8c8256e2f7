"""The soak's verdicts: what PostgreSQL, the receiver and the load's own record say after the
drain. Each check has a bound and its reason in docs/benchmarks.md ("Soak")."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.harness.load import percentile
from benchmarks.harness.receiver import Arrival
from benchmarks.harness.stack import TERMINAL, Project, Taskgate
from benchmarks.soak.load import EXPECTED_STATUS, Plan, Record

WEBHOOK_EVENTS = ("task.succeeded", "task.failed")
# Both trends compare the first and the last third of the run after its warm-up (processes just
# started, caches and pools filling). Memory: the median RSS of the last third of the samples
# against the first third's, at most this much higher: 10 %, or 8 MiB for processes too small
# for 10 % to be above the allocator's noise.
MEMORY_GROWTH_PCT = 10.0
MEMORY_GROWTH_MIB = 8.0
# Latency: the last third's p50 at most 1.5x the first third's + 10 ms, p99 at most 2x + 50 ms.
# The added milliseconds absorb a shared machine's jitter; a real upward trend (a table or a
# queue growing under steady load) goes past them within minutes.
P50_FACTOR, P50_SLACK_MS = 1.5, 10.0
P99_FACTOR, P99_SLACK_MS = 2.0, 50.0
# The short mode's thirds are 15 s each, with a worker killed in each: a kill's recovery moves a
# third's percentiles by tens of milliseconds, so there the slack is this many times larger and
# the check catches gross growth only (a trend needs the long run).
SHORT_SLACK_SCALE = 5.0
TREND_KINDS = ("submit", "read")


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    value: Any
    bound: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _few(items: Sequence[str], n: int = 5) -> str:
    return ", ".join(items[:n]) + (f" (+{len(items) - n})" if len(items) > n else "")


def task_checks(tg: Taskgate, project: Project, record: Record) -> list[Check]:
    rows = {
        row["id"]: row
        for row in tg.pg.fetch(
            "SELECT id::text AS id, type, status, attempt, max_attempts,"
            " result->>'sha256' AS sha256 FROM tasks WHERE project_id = $1::uuid",
            project.id,
        )
    }
    terminal_events = {
        row["id"]: int(row["n"])
        for row in tg.pg.fetch(
            "SELECT subject_id::text AS id, count(*) AS n FROM events WHERE project_id = $1::uuid"
            " AND kind IN ('task.succeeded', 'task.failed', 'task.canceled') GROUP BY subject_id",
            project.id,
        )
    }
    accepted = record.tasks
    lost = [task_id for task_id in accepted if task_id not in rows]
    stuck = [t for t in accepted if t in rows and rows[t]["status"] not in TERMINAL]
    wrong = [
        f"{t} {accepted[t].type} {rows[t]['status']}"
        for t in accepted
        if t in rows and rows[t]["status"] in TERMINAL and rows[t]["status"] != accepted[t].expect
    ]
    bad_sums = [
        t
        for t, sent in accepted.items()
        if sent.sha256 is not None
        and t in rows
        and rows[t]["status"] == "succeeded"
        and rows[t]["sha256"] != sent.sha256
    ]
    unanswered_submits = record.errors_of("submit")
    extra = [t for t in rows if t not in accepted]
    not_once = [f"{t}: {terminal_events.get(t, 0)}" for t in rows if terminal_events.get(t) != 1]
    checksums = sum(1 for sent in accepted.values() if sent.sha256 is not None)
    return [
        Check("lost", not lost, len(lost), "0 of the 202'd ids missing", _few(lost)),
        Check("stuck", not stuck, len(stuck), "0 not terminal after the drain", _few(stuck)),
        Check(
            "outcome", not wrong, len(wrong), "0 ended other than their type's outcome", _few(wrong)
        ),
        Check(
            "checksums",
            not bad_sums and checksums > 0,
            f"{checksums - len(bad_sums)} of {checksums}",
            "every file.checksum's sha256 is the uploaded bytes'",
            _few(bad_sums),
        ),
        Check(
            "unaccounted",
            len(extra) <= unanswered_submits,
            len(extra),
            "tasks not 202'd ≤ submits that got no answer",
            _few(extra),
        ),
        Check(
            "terminal_events",
            not not_once,
            len(not_once),
            "0 tasks without exactly one terminal event",
            _few(not_once),
        ),
    ]


def webhook_checks(
    tg: Taskgate, project: Project, endpoint_id: str, arrivals: Sequence[Arrival]
) -> list[Check]:
    events = {
        row["id"]: (row["kind"], row["subject_id"])
        for row in tg.pg.fetch(
            "SELECT id::text AS id, kind, subject_id::text AS subject_id FROM events"
            " WHERE project_id = $1::uuid AND kind = ANY($2::text[])",
            project.id,
            list(WEBHOOK_EVENTS),
        )
    }
    deliveries = tg.pg.fetch(
        "SELECT id::text AS id, event_id::text AS event_id, state FROM webhook_deliveries"
        " WHERE endpoint_id = $1::uuid",
        endpoint_id,
    )
    delivered = {row["event_id"] for row in deliveries if row["state"] == "succeeded"}
    undelivered = [event_id for event_id in events if event_id not in delivered]
    not_succeeded = [
        f"{row['id']} {row['state']}" for row in deliveries if row["state"] != "succeeded"
    ]
    received = {a.webhook_id: a for a in arrivals if a.signed}
    missing = [
        row["id"] for row in deliveries if row["state"] == "succeeded" and row["id"] not in received
    ]
    badly_signed = [a.webhook_id for a in arrivals if not a.signed]
    by_id = {row["id"]: events.get(row["event_id"]) for row in deliveries}
    mismatched = [
        a.webhook_id
        for a in received.values()
        if by_id.get(a.webhook_id) is not None and by_id[a.webhook_id] != (a.kind, a.task_id)
    ]
    duplicates = len(arrivals) - len({a.webhook_id for a in arrivals})
    return [
        Check(
            "webhooks_delivered",
            not undelivered and not not_succeeded and len(events) > 0,
            f"{len(delivered)} of {len(events)} events",
            "every task.succeeded/failed event: its delivery succeeded",
            _few(undelivered + not_succeeded),
        ),
        Check(
            "webhooks_received",
            not missing and not mismatched,
            f"{len(received)} signed, {duplicates} repeated",
            "every succeeded delivery arrived, signed, naming its event and task",
            _few(missing + mismatched),
        ),
        Check(
            "webhook_signatures",
            not badly_signed,
            len(badly_signed),
            "0 arrivals with a bad or missing signature",
            _few(badly_signed),
        ),
    ]


def load_checks(record: Record, plan: Plan) -> list[Check]:
    bad = Counter(
        f"{kind} {status or 'no answer'}"
        for kind, _, _, status in record.requests
        if status != EXPECTED_STATUS[kind]
    )
    planned_kills = math.floor((plan.seconds - 1) / plan.kill_every_s)
    return [
        Check(
            "http_statuses",
            not bad,
            sum(bad.values()),
            "0 valid requests answered otherwise than 2xx (or not at all)",
            ", ".join(f"{n}x {what}" for what, n in bad.most_common(8)),
        ),
        Check(
            "load_sent",
            record.skipped == 0,
            record.skipped,
            "0 ticks skipped (64 requests waiting)",
        ),
        Check(
            "worker_kills",
            len(record.kills) == planned_kills and planned_kills > 0,
            len(record.kills),
            f"{planned_kills} (every {plan.kill_every_s:.0f} s), at least 1",
            ", ".join(f"{k.at:.0f} s: {k.running_tasks} running" for k in record.kills),
        ),
        Check(
            "kills_mid_task",
            any(kill.running_tasks for kill in record.kills),
            sum(kill.running_tasks for kill in record.kills),
            "at least one kill took running tasks with it",
        ),
    ]


def thirds(
    samples: Sequence[tuple[float, float]], start: float, end: float
) -> tuple[list[float], list[float]]:
    """The values of the first and the last third of [start, end] (by time)."""
    third = (end - start) / 3
    first = [value for at, value in samples if start <= at < start + third]
    last = [value for at, value in samples if end - third <= at <= end]
    return first, last


def memory_checks(record: Record, plan: Plan, warmup_s: float) -> list[Check]:
    checks = []
    for key, label in (("api_mib", "memory_api"), ("steady_worker_mib", "memory_worker")):
        points = [(s["at"], s[key]) for s in record.samples if s[key] > 0]
        first, last = thirds(points, warmup_s, plan.seconds)
        if not first or not last:
            checks.append(Check(label, False, None, "samples in both thirds", "too few samples"))
            continue
        before, after = statistics.median(first), statistics.median(last)
        allowed = max(before * MEMORY_GROWTH_PCT / 100, MEMORY_GROWTH_MIB)
        growth = after - before
        checks.append(
            Check(
                label,
                growth <= allowed,
                f"{before:.1f} → {after:.1f} MiB ({growth:+.1f} MiB, {growth / before * 100:+.1f}%)",
                f"≤ +{allowed:.1f} MiB (10% or 8 MiB)",
            )
        )
    return checks


def buckets(record: Record, bucket_s: float) -> dict[str, list[dict[str, float]]]:
    """p50 and p99 of submits and reads per `bucket_s` of the run."""
    out: dict[str, list[dict[str, float]]] = {}
    for kind in TREND_KINDS:
        grouped: dict[int, list[float]] = {}
        for k, at, ms, status in record.requests:
            if k == kind and status == EXPECTED_STATUS[kind]:
                grouped.setdefault(int(at // bucket_s), []).append(ms)
        out[kind] = [
            {
                "from_s": index * bucket_s,
                "count": len(values),
                "p50_ms": round(percentile(values, 50), 2),
                "p99_ms": round(percentile(values, 99), 2),
            }
            for index, values in sorted(grouped.items())
        ]
    return out


def latency_checks(
    record: Record, plan: Plan, warmup_s: float, *, slack_scale: float = 1.0
) -> list[Check]:
    checks = []
    p50_slack, p99_slack = P50_SLACK_MS * slack_scale, P99_SLACK_MS * slack_scale
    for kind in TREND_KINDS:
        points = [
            (at, ms)
            for k, at, ms, status in record.requests
            if k == kind and status == EXPECTED_STATUS[kind]
        ]
        first, last = thirds(points, warmup_s, plan.seconds)
        if not first or not last:
            checks.append(Check(f"latency_{kind}", False, None, "requests in both thirds"))
            continue
        p50 = (percentile(first, 50), percentile(last, 50))
        p99 = (percentile(first, 99), percentile(last, 99))
        passed = (
            p50[1] <= p50[0] * P50_FACTOR + p50_slack and p99[1] <= p99[0] * P99_FACTOR + p99_slack
        )
        checks.append(
            Check(
                f"latency_{kind}",
                passed,
                f"p50 {p50[0]:.1f} → {p50[1]:.1f} ms, p99 {p99[0]:.1f} → {p99[1]:.1f} ms",
                f"last third: p50 ≤ {P50_FACTOR:g}x first + {p50_slack:g} ms,"
                f" p99 ≤ {P99_FACTOR:g}x first + {p99_slack:g} ms",
            )
        )
    return checks
