from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from pydantic import BaseModel

from app.tasks.lifecycle import retry_delay
from app.tasktypes.base import TaskCanceled, TaskContext, TaskInputError, TaskType
from app.tasktypes.builtin import PrimesInput, count_primes
from app.tasktypes.registry import Registry, TaskTypeNotRegistered, _load_entry_points, get_registry


def _context() -> TaskContext:
    return TaskContext(
        task_id=uuid.uuid4(),
        project_id=uuid.uuid4(),
        attempt=1,
        max_attempts=1,
        idempotency_key=None,
    )


class TestRegistry:
    def test_the_built_in_types_are_registered(self) -> None:
        names = [task_type.name for task_type in get_registry().all()]

        assert {"echo", "sleep", "cpu.primes", "fail"} <= set(names)

    def test_an_unknown_name_raises(self) -> None:
        with pytest.raises(TaskTypeNotRegistered):
            Registry().get("nope")

    def test_a_name_cannot_be_registered_twice(self) -> None:
        task_type = get_registry().get("echo")

        with pytest.raises(ValueError, match="registered twice"):
            Registry([task_type, task_type])

    def test_each_type_serves_a_json_schema(self) -> None:
        schema = get_registry().get("sleep").input_schema()

        assert schema["properties"]["seconds"]["maximum"] == 3600

    async def test_invalid_input_is_a_non_retryable_input_error(self) -> None:
        with pytest.raises(TaskInputError) as raised:
            await get_registry().get("sleep").run({"seconds": -1}, _context())

        assert raised.value.retryable is False

    async def test_sync_handlers_run_off_the_event_loop(self) -> None:
        class Empty(BaseModel):
            pass

        def handler(_data: Empty, _context: TaskContext) -> str:
            return threading.current_thread().name

        task_type = TaskType(name="t", description="", input_model=Empty, handler=handler)

        thread_name = await task_type.run({}, _context())

        assert thread_name != "MainThread"


class TestCountPrimes:
    @pytest.mark.parametrize(
        ("n", "count"), [(0, 0), (2, 0), (3, 1), (10, 4), (100, 25), (1_000_000, 78_498)]
    )
    def test_counts_the_primes_below_n(self, n: int, count: int) -> None:
        assert count_primes(PrimesInput(n=n), _context())["count"] == count

    def test_stops_at_a_stop_point_once_asked(self) -> None:
        context = _context()
        context.stop()

        with pytest.raises(TaskCanceled):
            count_primes(PrimesInput(n=10_000_000), context)

    def test_reports_progress_up_to_one(self) -> None:
        context = _context()

        count_primes(PrimesInput(n=3_000_000), context)

        assert context.take_progress() == (1.0, None)


class TestRetryDelay:
    @pytest.mark.parametrize("attempt", [1, 2, 3, 4, 5])
    def test_grows_exponentially_within_jitter_bounds(self, attempt: int) -> None:
        ceiling = 2.0 * 2 ** (attempt - 1)

        delays = [retry_delay(attempt, base_s=2.0, cap_s=1000) for _ in range(50)]

        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)

    def test_is_capped(self) -> None:
        assert retry_delay(30, base_s=2.0, cap_s=60) <= 60


class TestEntryPoints:
    def test_task_types_of_installed_plugins_are_loaded(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "tg_plugin_demo.py").write_text(
            "from pydantic import BaseModel\n"
            "from app.tasktypes.registry import TaskType\n"
            "class Empty(BaseModel):\n"
            "    pass\n"
            "async def handle(data, context):\n"
            "    return {'plugin': True}\n"
            "def task_types():\n"
            "    return [TaskType(name='demo.plugin', description='d', input_model=Empty, handler=handle)]\n"
        )
        dist_info = tmp_path / "tg_plugin_demo-1.0.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: tg-plugin-demo\nVersion: 1.0\n"
        )
        (dist_info / "entry_points.txt").write_text(
            "[taskgate.task_types]\ndemo = tg_plugin_demo:task_types\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        registry = Registry()

        _load_entry_points(registry)

        assert "demo.plugin" in registry

    def test_a_broken_plugin_is_skipped(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        dist_info = tmp_path / "tg_broken-1.0.dist-info"
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: tg-broken\nVersion: 1.0\n"
        )
        (dist_info / "entry_points.txt").write_text(
            "[taskgate.task_types]\nbroken = tg_no_such_module:task_types\n"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        registry = Registry()

        _load_entry_points(registry)

        assert registry.all() == []
        assert "could not load task types" in caplog.text
