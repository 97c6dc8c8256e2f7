"""`benchmarks.run`'s command line: settings tried for one run."""

from __future__ import annotations

import pytest

from benchmarks.run import _parse


class TestSet:
    def test_each_setting_reaches_the_stack(self) -> None:
        args = _parse(
            [
                "--only",
                "drain",
                "--set",
                "TASKGATE_TASKS__DISPATCH_BATCH=4",
                "--set",
                "TASKGATE_WORKER__CONCURRENCY=8",
            ]
        )

        assert args.overrides == {
            "TASKGATE_TASKS__DISPATCH_BATCH": "4",
            "TASKGATE_WORKER__CONCURRENCY": "8",
        }

    @pytest.mark.parametrize("item", ["TASKGATE_X", "PATH=/tmp", "=1"])
    def test_anything_but_a_taskgate_setting_is_a_usage_error(self, item: str) -> None:
        with pytest.raises(SystemExit) as exited:
            _parse(["--set", item])

        assert exited.value.code == 2
