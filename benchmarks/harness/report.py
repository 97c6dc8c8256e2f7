"""The run's outputs: the JSON document, the Markdown table, and the section of docs/benchmarks.md."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness.results import Figure, ScenarioResult, number, ratio_text

DOCS_START = "<!-- harness:results:start -->"
DOCS_END = "<!-- harness:results:end -->"


def _verdict(figure: Figure) -> str:
    if figure.target is None:
        return ""
    passed = figure.passed
    return "n/a" if passed is None else ("**pass**" if passed else "**FAIL**")


def table(results: Sequence[ScenarioResult]) -> str:
    lines = [
        "| scenario | figure | taskgate | peer (same run) | peer | ratio | target | result |",
        "|---|---|---:|---|---:|---:|---|---|",
    ]
    for result in results:
        if not result.ok:
            lines.append(
                f"| {result.title} | **did not run to the end**: {_cell(result.error)} |"
                " | | | | | **FAIL** |"
            )
            continue
        for figure in result.figures:
            label = figure.label + (f" — {figure.note}" if figure.note else "")
            lines.append(
                f"| {result.title} | {_cell(label)} | {number(figure.value, figure.unit)}"
                f" | {_cell(figure.peer or '—')} | {number(figure.peer_value, figure.unit)}"
                f" | {ratio_text(figure.ratio)} | {figure.target.text if figure.target else ''}"
                f" | {_verdict(figure)} |"
            )
    return "\n".join(lines)


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ")[:300]


def targets_line(results: Sequence[ScenarioResult]) -> str:
    checked = [f for r in results if r.ok for f in r.figures if f.target is not None]
    passed = sum(1 for f in checked if f.passed)
    return f"{passed} of {len(checked)} targets pass."


def document(results: Sequence[ScenarioResult], *, meta: dict[str, Any]) -> dict[str, Any]:
    return {**meta, "scenarios": [result.as_dict() for result in results]}


def _clean(value: Any) -> Any:
    """NaN is not JSON: write it as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(doc), indent=2, ensure_ascii=False) + "\n")


def docs_section(
    results: Sequence[ScenarioResult],
    *,
    meta: dict[str, Any],
    json_name: str,
    charts: Sequence[Path],
    docs_dir: Path,
) -> str:
    machine = meta["machine"]
    load = meta["load_average"]
    lines = [
        DOCS_START,
        "",
        f"One full run of the harness (`make bench-harness`, the first step of `make bench`) on {meta['date']}: {machine['cpus']} CPUs"
        f" ({machine['cpu_model']}), {machine['memory_gib']} GiB, Linux {machine['kernel']},"
        f" Python {machine['python']}; PostgreSQL {meta['stack']['durability'].get('server_version')}"
        f" with fsync, synchronous_commit and full_page_writes on. The machine was shared with"
        f" other engineers' test suites (load average {load['before']} before the run,"
        f" {load['after']} after), so the absolute figures are noise; the ratios against the"
        f" peers measured in the same run, on the same engines, are what counts. The whole run"
        f" took {meta['seconds'] / 60:.1f} min. Raw data: `benchmarks/results/{json_name}`.",
        "",
        table(results),
        "",
        targets_line(results),
        "",
    ]
    for chart in charts:
        relative = chart.relative_to(docs_dir)
        lines.append(f"![{chart.stem}]({relative.as_posix()})")
        lines.append("")
    lines.append(DOCS_END)
    return "\n".join(lines)


def update_docs(path: Path, section: str) -> None:
    """Replace the text between the markers (or append the section once)."""
    text = path.read_text()
    if DOCS_START in text and DOCS_END in text:
        head, _, rest = text.partition(DOCS_START)
        _, _, tail = rest.partition(DOCS_END)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
