"""A task attempt's figures: its outcome and run time always, its queue wait on the first only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from app.tasks.metrics import record_attempt
from app.tasks.models import Priority, Task

CREATED = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def _task(*, attempt: int, started_after_s: float, run_at: datetime | None = None) -> Task:
    return Task(
        id=uuid.uuid4(),
        type=f"metrics.{uuid.uuid4().hex[:8]}",  # a type of its own: counts start at zero
        priority=Priority.low,
        attempt=attempt,
        created_at=CREATED,
        run_at=run_at,
        started_at=CREATED + timedelta(seconds=started_after_s),
    )


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class TestRecordAttempt:
    def test_counts_the_outcome_and_times_the_attempt(self) -> None:
        task = _task(attempt=2, started_after_s=30)

        record_attempt(task, status="retrying", duration_s=1.5)

        assert _value("taskgate_tasks_finished_total", type=task.type, status="retrying") == 1
        assert _value("taskgate_task_run_duration_seconds_sum", type=task.type) == 1.5

    def test_a_first_attempt_waited_from_creation(self) -> None:
        before = _value("taskgate_task_queue_wait_seconds_sum", queue="low")

        record_attempt(_task(attempt=1, started_after_s=4), status="succeeded", duration_s=0.1)

        assert _value("taskgate_task_queue_wait_seconds_sum", queue="low") - before == 4

    def test_a_task_scheduled_later_waited_from_its_run_at(self) -> None:
        before = _value("taskgate_task_queue_wait_seconds_sum", queue="low")
        task = _task(attempt=1, started_after_s=65, run_at=CREATED + timedelta(seconds=60))

        record_attempt(task, status="succeeded", duration_s=0.1)

        assert _value("taskgate_task_queue_wait_seconds_sum", queue="low") - before == 5

    def test_a_retry_adds_no_queue_wait(self) -> None:
        before = _value("taskgate_task_queue_wait_seconds_count", queue="low")

        record_attempt(_task(attempt=3, started_after_s=900), status="failed", duration_s=0.1)

        assert _value("taskgate_task_queue_wait_seconds_count", queue="low") == before
