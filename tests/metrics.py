"""Reading a Prometheus text exposition in tests: family types, samples, promtool's verdict."""

from __future__ import annotations

import re
import subprocess

from prometheus_client.parser import text_string_to_metric_families

from tests.debian import promtool

# Every family `/metrics` must have (docs/operations.md#metrics), by its exposed name.
FAMILIES = {
    "taskgate_http_requests_total": "counter",
    "taskgate_http_request_duration_seconds": "histogram",
    "taskgate_tasks_submitted_total": "counter",
    "taskgate_tasks_finished_total": "counter",
    "taskgate_task_run_duration_seconds": "histogram",
    "taskgate_task_queue_wait_seconds": "histogram",
    "taskgate_queue_depth": "gauge",
    "taskgate_worker_busy_ratio": "gauge",
    "taskgate_db_pool_connections": "gauge",
    "taskgate_cache_requests_total": "counter",
    "taskgate_rate_limited_total": "counter",
    "taskgate_webhook_deliveries_total": "counter",
}


def family_types(text: str) -> dict[str, str]:
    """`# TYPE name type` lines: every family the exposition declares, samples or not."""
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
    return types


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples named `name` (`taskgate_queue_depth`, `…_total`, `…_bucket`)."""
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def total(text: str, name: str, **labels: str) -> float:
    return sum(
        value
        for found, value in samples(text, name)
        if all(found.get(key) == want for key, want in labels.items())
    )


def check_metrics(text: str) -> subprocess.CompletedProcess[str]:
    """`promtool check metrics` on `text` (exit 0: it parses and passes promtool's lint)."""
    return subprocess.run(  # noqa: S603 - the installed promtool
        [promtool(), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# PromQL words that are not metric names (aggregations and functions are followed by "(").
_PROMQL_WORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
    | {"and", "or", "unless", "inf", "nan"}
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: label matchers, strings, ranges, grouping
    clauses, Grafana variables, functions and keywords left out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        name = match.group()
        if text[match.end() :].lstrip().startswith("(") or name.lower() in _PROMQL_WORDS:
            continue
        names.add(name)
    return names


def series_names(text: str) -> set[str]:
    """Every series name an exposition's families can have (a histogram's `_bucket`, …)."""
    names = set()
    for name, kind in family_types(text).items():
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names
