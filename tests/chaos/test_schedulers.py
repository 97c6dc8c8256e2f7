"""Two schedulers over one database: each due task is published once, each retry promoted
once, each expired lease reaped once (their claims lock rows and re-check what they change)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import create_sessionmaker, utc_now
from app.events.models import Event
from app.tasks.models import Priority, Task
from tests.integration.tasks.test_scheduler import queued_task_ids
from tests.platform import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_schedulers(platform: Platform) -> Platform:
    """`platform` with two scheduler processes, each claiming at most 10 rows a step, so that
    both take part in every backlog of work."""
    assert platform.scheduler is not None
    platform.processes.stop(platform.scheduler)
    platform.env["TASKGATE_TASKS__SCHEDULER_BATCH"] = "10"
    platform.start_scheduler()
    platform.processes.start_python(
        "-m", "app.cli", "scheduler", env=platform.env, log_path=platform.logs / "scheduler-2.log"
    )
    return platform


def _published_by_each(logs: Path) -> list[int]:
    """How many messages each scheduler's passes published (a job may carry several tasks)."""
    totals = []
    for name in ("scheduler.log", "scheduler-2.log"):
        total = 0
        for line in (logs / name).read_text().splitlines():
            if line.startswith("{") and '"scheduler pass"' in line:
                total += int(json.loads(line).get("published", 0))
        totals.append(total)
    return totals


async def _events_per_attempt(engine: AsyncEngine, task_ids: list[str], kind: str) -> Counter[int]:
    """How many (task, attempt) pairs have 1, 2… events of `kind` (each must have one)."""
    async with create_sessionmaker(engine)() as session:
        rows = await session.execute(
            select(func.count())
            .where(Event.subject_id.in_(task_ids), Event.kind == kind)
            .group_by(Event.subject_id, Event.data["attempt"].as_integer())
        )
        return Counter(count for (count,) in rows)


async def _until_dispatched(engine: AsyncEngine, task_ids: list[str]) -> None:
    for _ in range(300):
        async with create_sessionmaker(engine)() as session:
            waiting = await session.scalar(
                select(func.count()).where(Task.id.in_(task_ids), Task.dispatched_at.is_(None))
            )
        if waiting == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the delayed tasks were not all published within 30 s")


class TestTwoSchedulers:
    async def test_each_delayed_task_is_published_once(
        self, two_schedulers: Platform, redis: Redis
    ) -> None:
        platform = two_schedulers
        await asyncio.sleep(2)  # both schedulers are passing
        run_at = (utc_now() + timedelta(seconds=8)).isoformat()  # after the last submit

        task_ids = await platform.submit_many(200, {"type": "echo", "run_at": run_at})
        await _until_dispatched(platform.engine, task_ids)
        await asyncio.sleep(2)  # four more passes of each: none publishes again
        ours = set(task_ids)
        messages: Counter[str] = Counter()
        for priority in Priority:
            queued = await queued_task_ids(redis, priority.queue)
            messages.update(task_id for task_id in queued if task_id in ours)
        platform.start_worker(concurrency=4)
        counts = await platform.wait_terminal(task_ids, timeout_s=60)

        assert messages == dict.fromkeys(task_ids, 1)
        assert all(_published_by_each(platform.logs))  # both schedulers took part
        assert counts == {"succeeded": 200}
        assert await platform.terminal_event_counts(task_ids) == {1: 200}
        assert await _events_per_attempt(platform.engine, task_ids, "task.started") == {1: 200}
        print(  # noqa: T201 (reported figure)
            "\n200 delayed tasks, two schedulers: each published once, in messages sent by "
            f"each scheduler: {_published_by_each(platform.logs)}"
        )

    async def test_each_retry_is_promoted_once(self, two_schedulers: Platform) -> None:
        platform = two_schedulers
        platform.start_worker(concurrency=4)
        body = {"type": "fail", "input": {"retryable": True}, "max_attempts": 3}

        task_ids = await platform.submit_many(40, body)
        counts = await platform.wait_terminal(task_ids, timeout_s=60)

        assert counts == {"failed": 40}
        assert await platform.terminal_event_counts(task_ids) == {1: 40}
        # Three attempts each, every one started once: no retry was promoted (and run) twice.
        assert await _events_per_attempt(platform.engine, task_ids, "task.started") == {1: 120}

    async def test_each_expired_lease_is_reaped_once(self, two_schedulers: Platform) -> None:
        platform = two_schedulers
        platform.start_worker(concurrency=4)
        platform.start_worker(concurrency=4)
        task_ids = await platform.submit_many(24, {"type": "sleep", "input": {"seconds": 2}})
        for _ in range(300):
            if (await platform.statuses(task_ids)).get("running", 0) >= 8:
                break
            await asyncio.sleep(0.1)

        platform.kill_workers()
        platform.start_worker(concurrency=4)
        counts = await platform.wait_terminal(task_ids, timeout_s=90)

        requeued = await _events_per_attempt(platform.engine, task_ids, "task.requeued")
        assert counts == {"succeeded": 24}
        assert await platform.terminal_event_counts(task_ids) == {1: 24}
        assert set(requeued) == {1}, requeued  # each broken attempt was put back once
        assert requeued[1] >= 8
        assert set(await _events_per_attempt(platform.engine, task_ids, "task.started")) == {1}
