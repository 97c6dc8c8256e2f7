"""The one INFO line of each attempt: task, project, type, attempt, status and duration."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings, TaskSettings
from app.files.storage import Storage
from app.projects.models import Project
from app.tasks.runner import execute
from app.tasktypes.base import TaskContext, TaskType
from app.tasktypes.builtin import EchoInput
from app.tasktypes.registry import Registry, get_registry
from tests.integration.tasks.conftest import RUNNING_CAP, make_task
from tests.logs import JsonLogs

RUNNER = "app.tasks.runner"


@pytest.fixture
def storage(settings: Settings) -> Storage:
    return Storage.from_settings(settings)


def _attempt_lines(logs: JsonLogs) -> list[dict[str, Any]]:
    return [entry for entry in logs.entries(RUNNER) if entry["level"] in ("info", "warning")]


class TestAttemptLogLine:
    async def test_a_success_is_one_line_with_the_task_s_ids_type_attempt_status_and_duration(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
        json_logs: JsonLogs,
    ) -> None:
        task = await make_task(db, project, input={"hello": "world"})

        await execute(
            db,
            task.id,
            registry=get_registry(),
            limits=limits,
            worker="w",
            storage=storage,
            running_cap=RUNNING_CAP,
        )

        [line] = _attempt_lines(json_logs)
        assert line["message"] == "task attempt succeeded"
        assert line["task_id"] == str(task.id)
        assert line["project_id"] == str(project.id)
        assert (line["type"], line["attempt"], line["status"]) == ("echo", 1, "succeeded")
        assert isinstance(line["duration_ms"], float)
        assert line["duration_ms"] >= 0

    async def test_a_retryable_failure_says_the_task_is_retrying_and_why(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
        json_logs: JsonLogs,
    ) -> None:
        task = await make_task(db, project, type="fail", input={"message": "flaky"})

        await execute(
            db,
            task.id,
            registry=get_registry(),
            limits=limits,
            worker="w",
            storage=storage,
            running_cap=RUNNING_CAP,
        )

        [line] = _attempt_lines(json_logs)
        assert (line["type"], line["attempt"], line["status"]) == ("fail", 1, "retrying")
        assert (line["error_type"], line["retryable"]) == ("fail", True)
        assert line["task_id"] == str(task.id)
        assert "duration_ms" in line
        assert "flaky" not in json_logs.text  # the error message is the task's, not the log's

    async def test_a_result_that_cannot_be_stored_is_logged_as_failed_never_as_succeeded(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        limits: TaskSettings,
        storage: Storage,
        json_logs: JsonLogs,
    ) -> None:
        async def not_a_number(_data: EchoInput, _context: TaskContext) -> dict[str, float]:
            return {"x": float("nan")}

        registry = Registry(
            [TaskType(name="nan", description="", input_model=EchoInput, handler=not_a_number)]
        )
        task = await make_task(db, project, type="nan")

        await execute(
            db,
            task.id,
            registry=registry,
            limits=limits,
            worker="w",
            storage=storage,
            running_cap=RUNNING_CAP,
        )

        [line] = _attempt_lines(json_logs)
        assert (line["status"], line["error_type"]) == ("failed", "invalid_result")
