"""The soak's short mode (`make soak-short`): 45 s of mixed load on a stack of its own, a worker
SIGKILLed twice, then every check of the 30-minute soak (docs/benchmarks.md, "Soak")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

pytestmark = pytest.mark.e2e


class TestSoakShortMode:
    @pytest.mark.timeout(600)
    def test_no_task_stuck_or_lost_and_memory_and_latency_stay_flat(self, tmp_path: Path) -> None:
        done = subprocess.run(  # noqa: S603 - fixed argv
            [sys.executable, "-m", "benchmarks.soak", "--short", "--out", str(tmp_path)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=580,
            check=False,
        )

        [written] = tmp_path.glob("soak-*.json")
        result = json.loads(written.read_text())
        failed = [check for check in result["checks"] if not check["passed"]]
        assert done.returncode == 0, (
            failed,
            result["error"],
            done.stdout[-3000:],
            done.stderr[-3000:],
        )
        assert result["passed"]
        assert len(result["checks"]) >= 15
        assert result["results"]["kills"]
