"""Figures, their peers and the issue's targets: what every scenario hands to the report."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from benchmarks.harness.load import percentile

TargetKind = Literal["ratio_at_least", "ratio_at_most", "at_most", "below"]


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    threshold: float
    text: str

    def check(self, value: float, ratio: float | None) -> bool | None:
        """True or False against the target; None when the figure or its peer is missing."""
        if math.isnan(value):
            return None
        if self.kind in ("ratio_at_least", "ratio_at_most"):
            if ratio is None or math.isnan(ratio):
                return None
            return (
                ratio >= self.threshold
                if self.kind == "ratio_at_least"
                else ratio <= self.threshold
            )
        if self.kind == "at_most":
            return value <= self.threshold
        return value < self.threshold


@dataclass(frozen=True)
class Figure:
    """One measured figure of taskgate, with the same-run peer it is compared with (if any)."""

    key: str
    label: str
    value: float
    unit: str
    peer: str | None = None
    peer_value: float | None = None
    target: Target | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.peer_value is None or not self.peer_value or math.isnan(self.peer_value):
            return None
        return self.value / self.peer_value

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.target.check(self.value, self.ratio)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = None if self.target is None else self.target.text
        data["ratio"] = None if self.ratio is None else round(self.ratio, 3)
        data["passed"] = self.passed
        return data


@dataclass
class ScenarioResult:
    name: str
    title: str
    ok: bool
    seconds: float
    figures: list[Figure] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "ok": self.ok,
            "seconds": round(self.seconds, 1),
            "error": self.error,
            "figures": [figure.as_dict() for figure in self.figures],
            "data": self.data,
        }


def summary(values: Sequence[float]) -> dict[str, float]:
    """Count, p50, p90, p99 and max of a list of latencies (same unit as given)."""
    return {
        "count": len(values),
        "p50": round(percentile(values, 50), 3),
        "p90": round(percentile(values, 90), 3),
        "p99": round(percentile(values, 99), 3),
        "max": round(max(values), 3) if values else math.nan,
    }


def ratio_text(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    return f"{value:.2f}x"


def number(value: float | None, unit: str = "") -> str:
    """A figure for a table: thousands separated, precision by size."""
    if value is None or math.isnan(value):
        return "—"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()
