"""The capacity model reads the harness's JSON and scales each measured cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import scaling_model


def _results(**e2e_extra: Any) -> dict[str, Any]:
    return {
        "date": "2026-12-02",
        "machine": {"cpus": 2},
        "scenarios": [
            {
                "name": "submit",
                "ok": True,
                "data": {"per_request": {"api_cpu_ms": 2.0}},
            },
            {
                "name": "end_to_end",
                "ok": True,
                "data": {
                    "taskgate": {"rate": 100.0},
                    "per_task": {
                        "worker_cpu_ms": 5.0,
                        "commits": 2.0,
                        "wal_bytes": 3000,
                        "rows_written": 4.0,
                    },
                    "pg_commits_per_s": 4000,
                    **e2e_extra,
                },
            },
        ],
    }


def test_each_resource_scales_with_the_rate() -> None:
    given = scaling_model.inputs(_results())

    one, hundred = scaling_model.model(given, [1, 100])

    assert one["api_cores"] == pytest.approx(0.2)  # 100/s x 2 ms
    assert one["worker_cores"] == pytest.approx(0.5)
    assert one["pg_commit_load"] == pytest.approx(0.05)  # 200 of 4,000 commits/s
    assert hundred["tasks_per_s"] == pytest.approx(10_000)
    assert hundred["pg_commit_load"] == pytest.approx(5.0)  # five such PostgreSQLs' worth
    assert hundred["wal_mb_per_s"] == pytest.approx(30.0)
    assert hundred["rows_per_day_m"] == pytest.approx(10_000 * 4 * 86_400 / 1e6)


def test_results_without_cost_figures_are_refused() -> None:
    results = _results()
    del results["scenarios"][1]["data"]["per_task"]
    with pytest.raises(SystemExit, match="predate the cost figures"):
        scaling_model.inputs(results)


def test_the_command_prints_a_table_for_a_results_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.json"
    path.write_text(json.dumps(_results()))

    assert scaling_model.main([str(path), "--scale", "1,10"]) == 0

    out = capsys.readouterr().out
    assert "| 10x | 1,000 |" in out
    assert "500 submits/s per API core" in out
