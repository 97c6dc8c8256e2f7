"""PNG charts of a run (matplotlib, Agg backend): taskgate's bars beside its same-run peers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")

import matplotlib.pyplot as plt

from benchmarks.harness.results import ScenarioResult

TASKGATE, PEER = "#1f6feb", "#9aa4ae"
THROUGHPUT_SCENARIOS = ("submit", "end_to_end", "drain")
LATENCY_SCENARIOS = ("submit", "submit_rate", "queue_latency", "longpoll", "read", "webhooks")


def _bars(
    results: Sequence[ScenarioResult], scenarios: Sequence[str], units: set[str]
) -> list[tuple[str, float, bool]]:
    rows: list[tuple[str, float, bool]] = []
    for result in results:
        if not result.ok or result.name not in scenarios:
            continue
        seen: set[str] = set()
        for figure in result.figures:
            if figure.unit not in units or math.isnan(figure.value):
                continue
            if figure.label not in seen:
                seen.add(figure.label)
                rows.append((f"taskgate: {figure.label}", figure.value, True))
            if figure.peer and figure.peer_value is not None and not math.isnan(figure.peer_value):
                rows.append((f"    {figure.peer}", figure.peer_value, False))
    return rows


def _bar_chart(rows: list[tuple[str, float, bool]], title: str, unit: str, path: Path) -> Path:
    height = max(2.5, 0.38 * len(rows) + 1.2)
    fig, ax = plt.subplots(figsize=(10, height))
    labels = [label for label, _, _ in reversed(rows)]
    values = [max(value, 1e-3) for _, value, _ in reversed(rows)]
    colors = [TASKGATE if mine else PEER for _, _, mine in reversed(rows)]
    ax.barh(range(len(rows)), values, color=colors)
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(f"{unit} (log scale)")
    ax.set_title(title, fontsize=10)
    for i, value in enumerate(values):
        ax.text(value, i, f" {value:,.1f}", va="center", fontsize=7)
    ax.margins(x=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _scaling(data: dict[str, Any], path: Path) -> Path:
    points = data["points"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    by_processes = [p for p in points if p["axis"] == "processes"]
    x = [p["processes"] for p in by_processes]
    left.plot(x, [p["taskgate"] for p in by_processes], "o-", color=TASKGATE, label="taskgate")
    left.plot(x, [p["raw_celery"] for p in by_processes], "s--", color=PEER, label="raw Celery")
    left.set_xticks(x)
    left.set_ylim(bottom=0)
    left.set_xlabel("worker processes (echo / no-op)")
    left.set_ylabel("tasks/s")
    left.set_title("drain vs worker processes", fontsize=10)
    left.legend(fontsize=8)
    by_duration = [p for p in points if p["axis"] == "duration"]
    labels = [f"{p['duration_ms']} ms" for p in by_duration]
    positions = range(len(by_duration))
    right.bar(
        [i - 0.2 for i in positions],
        [p["taskgate"] for p in by_duration],
        0.4,
        color=TASKGATE,
        label="taskgate",
    )
    right.bar(
        [i + 0.2 for i in positions],
        [p["raw_celery"] for p in by_duration],
        0.4,
        color=PEER,
        label="raw Celery",
    )
    right.set_xticks(list(positions), labels)
    right.set_yscale("log")
    lowest = min(
        (v for p in by_duration for v in (p["taskgate"], p["raw_celery"]) if v > 0), default=1
    )
    right.set_ylim(bottom=lowest / 2)  # a log axis must not start above the shortest bar
    right.set_xlabel(
        f"task duration (sleep), {by_duration[0]['processes']} processes"
        if by_duration
        else "task duration"
    )
    right.set_title("drain vs task duration", fontsize=10)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _memory(data: dict[str, Any], path: Path) -> Path:
    samples = data["samples"][1:]
    fig, ax = plt.subplots(figsize=(10, 3.5))
    x = [s["tasks"] for s in samples]
    ax.plot(x, [s["api_total_mib"] for s in samples], "o-", color=TASKGATE, label="API (all)")
    ax.plot(
        x,
        [max(s["api_mib"], default=0) for s in samples],
        "o:",
        color=TASKGATE,
        label="API (largest process)",
    )
    ax.plot(
        x,
        [s["worker_total_mib"] for s in samples],
        "s-",
        color="#d97706",
        label="worker (main + pool)",
    )
    ax.set_xlabel("tasks done")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title("resident memory over the run", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def draw(results: Sequence[ScenarioResult], out_dir: Path) -> list[Path]:
    """Every chart the results allow; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    throughput = _bars(results, THROUGHPUT_SCENARIOS, {"req/s", "tasks/s"})
    if throughput:
        written.append(
            _bar_chart(
                throughput,
                "throughput: taskgate and its peers, same run",
                "per second",
                out_dir / "throughput.png",
            )
        )
    latency = _bars(results, LATENCY_SCENARIOS, {"ms"})
    if latency:
        written.append(
            _bar_chart(
                latency, "latency: taskgate and its peers, same run", "ms", out_dir / "latency.png"
            )
        )
    by_name = {result.name: result for result in results if result.ok}
    if "scaling" in by_name:
        written.append(_scaling(by_name["scaling"].data, out_dir / "scaling.png"))
    if "memory" in by_name:
        written.append(_memory(by_name["memory"].data, out_dir / "memory.png"))
    return written
