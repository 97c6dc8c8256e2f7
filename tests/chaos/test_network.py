"""A bad network between the platform and its engines: latency, every connection cut.

The API, the workers and the scheduler reach PostgreSQL and Redis through the suite's TCP
proxies (`tests/proxy.py`); the test itself, its assertions and Celery's pings go straight to
the engines.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.events.models import Event
from app.tasks.models import Task
from tests.platform import FAST_SETTINGS, Platform
from tests.proxy import Proxy
from tests.support import ProcessGroup

pytestmark = pytest.mark.e2e


@pytest.fixture
def database_proxy(settings: Settings) -> Iterator[Proxy]:
    with Proxy.to(settings.database.url) as proxy:
        yield proxy


@pytest.fixture
def redis_proxy(settings: Settings) -> Iterator[Proxy]:
    with Proxy.to(settings.redis.url) as proxy:
        yield proxy


@pytest.fixture
async def proxied(
    database_proxy: Proxy,
    redis_proxy: Proxy,
    settings: Settings,
    processes: ProcessGroup,
    process_env: dict[str, str],
    celery_control: Celery,
    engine: AsyncEngine,
    tmp_path: Path,
) -> Platform:
    """`platform` whose processes reach PostgreSQL and Redis only through the proxies (set up
    before the processes, so they outlive them)."""
    platform = Platform(
        processes=processes,
        env={
            **process_env,
            **FAST_SETTINGS,
            "TASKGATE_DATABASE__URL": database_proxy.url(settings.database.url),
            "TASKGATE_REDIS__URL": redis_proxy.url(settings.redis.url),
            "TASKGATE_METRICS__DIR": str(tmp_path / "metrics"),
        },
        logs=tmp_path,
        celery=celery_control,
        engine=engine,
    )
    await platform.create_project()
    platform.start_api()
    platform.start_scheduler()
    return platform


class Load:
    """Submits over HTTP with bounded concurrency, resending a 503 with the same
    `Idempotency-Key` after its `Retry-After`; keeps every answer's status."""

    def __init__(self, platform: Platform, body: dict[str, Any], *, concurrency: int) -> None:
        self.platform = platform
        self.body = body
        self.semaphore = asyncio.Semaphore(concurrency)
        self.answers: Counter[int] = Counter()
        self.unavailable_without_retry_after = 0
        self.task_ids: list[str] = []

    async def submit(self, client: httpx.AsyncClient) -> None:
        path = f"/v1/projects/{self.platform.project_id}/tasks"
        headers = {**self.platform.headers, "Idempotency-Key": uuid.uuid4().hex}
        async with self.semaphore:
            for _ in range(60):
                response = await client.post(path, json=self.body, headers=headers)
                self.answers[response.status_code] += 1
                if response.status_code != 503:
                    break
                if "Retry-After" not in response.headers:
                    self.unavailable_without_retry_after += 1
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
        assert response.status_code in (200, 202), response.text
        self.task_ids.append(response.json()["id"])

    async def run(self, count: int) -> None:
        async with httpx.AsyncClient(base_url=self.platform.base_url, timeout=60) as client:
            await asyncio.gather(*(self.submit(client) for _ in range(count)))


async def _tasks_of_project(platform: Platform) -> int:
    async with create_sessionmaker(platform.engine)() as session:
        return (
            await session.scalar(
                select(func.count()).select_from(Task).where(Task.project_id == platform.project_id)
            )
            or 0
        )


async def _started_per_attempt(platform: Platform, task_ids: list[str]) -> Counter[int]:
    """How many (task, attempt) pairs have 1, 2… `task.started` events (each must have one)."""
    async with create_sessionmaker(platform.engine)() as session:
        rows = await session.execute(
            select(func.count())
            .where(Event.subject_id.in_(task_ids), Event.kind == "task.started")
            .group_by(Event.subject_id, Event.data["attempt"].as_integer())
        )
        return Counter(count for (count,) in rows)


async def _assert_all_succeeded_once(platform: Platform, task_ids: list[str]) -> None:
    counts = await platform.wait_terminal(task_ids, timeout_s=90)
    assert counts == {"succeeded": len(task_ids)}
    assert await platform.terminal_event_counts(task_ids) == {1: len(task_ids)}
    assert set(await _started_per_attempt(platform, task_ids)) == {1}


async def _while_cutting(
    load: Coroutine[Any, Any, None], proxy: Proxy, *, times: int, every_s: float
) -> list[int]:
    """Run `load` while every connection through `proxy` is cut `times` times, `every_s` apart;
    how many each cut reset. A failing load stops the cuts."""
    cut: list[int] = []

    async def cuts() -> None:
        for _ in range(times):
            await asyncio.sleep(every_s)
            cut.append(proxy.cut())

    async with asyncio.TaskGroup() as group:
        group.create_task(load)
        group.create_task(cuts())
    return cut


class TestLatency:
    async def test_with_60_ms_to_postgresql_and_redis_every_task_succeeds_once(
        self, proxied: Platform, database_proxy: Proxy, redis_proxy: Proxy
    ) -> None:
        proxied.start_worker(concurrency=4)
        for proxy in (database_proxy, redis_proxy):
            proxy.delay(0.03)  # each way: 60 ms a round trip
        started = time.monotonic()

        load = Load(proxied, {"type": "sleep", "input": {"seconds": 0.2}}, concurrency=16)
        await load.run(150)
        await _assert_all_succeeded_once(proxied, load.task_ids)

        assert load.answers == {202: 150}
        print(  # noqa: T201 (reported figure)
            f"\n150 tasks with 60 ms round trips to PostgreSQL and Redis: all succeeded once "
            f"{time.monotonic() - started:.1f}s after the first submit"
        )


class TestPostgresqlConnectionsCut:
    async def test_submits_answer_202_or_503_and_every_accepted_task_succeeds_once(
        self, proxied: Platform, database_proxy: Proxy
    ) -> None:
        proxied.start_worker(concurrency=4)
        load = Load(proxied, {"type": "sleep", "input": {"seconds": 0.1}}, concurrency=12)

        cuts = await _while_cutting(load.run(300), database_proxy, times=4, every_s=1.5)
        await _assert_all_succeeded_once(proxied, load.task_ids)
        # The pools recovered by themselves: the next submits are accepted at once.
        after = Load(proxied, {"type": "echo"}, concurrency=4)
        await after.run(20)
        await _assert_all_succeeded_once(proxied, after.task_ids)

        assert all(cuts), cuts
        assert set(load.answers) <= {202, 200, 503}, load.answers
        assert load.unavailable_without_retry_after == 0
        assert await _tasks_of_project(proxied) == 320  # a resent submit made no twin
        assert after.answers == {202: 20}
        print(  # noqa: T201 (reported figure)
            f"\nPostgreSQL connections cut 4 times ({cuts}) under 300 submits: answers "
            f"{dict(load.answers)}, all accepted tasks succeeded once"
        )

    async def test_unreachable_for_two_seconds_it_answers_503_and_then_recovers(
        self, proxied: Platform, database_proxy: Proxy
    ) -> None:
        proxied.start_worker(concurrency=4)
        load = Load(proxied, {"type": "sleep", "input": {"seconds": 0.1}}, concurrency=12)

        async def outage() -> None:
            # Once the load is under way (a fixed delay outlasts 200 submits on a fast machine),
            # with most of it still to come, so that some of it meets the outage.
            for _ in range(3000):
                if load.answers.total() >= 20:
                    break
                await asyncio.sleep(0.01)
            database_proxy.refuse(2)  # connects refused for 2 s, as while PostgreSQL restarts
            database_proxy.cut()

        async with asyncio.TaskGroup() as group:
            group.create_task(load.run(200))
            group.create_task(outage())
        await _assert_all_succeeded_once(proxied, load.task_ids)

        assert set(load.answers) <= {202, 200, 503}, load.answers
        assert load.answers[503] > 0
        assert load.unavailable_without_retry_after == 0
        assert await _tasks_of_project(proxied) == 200
        print(  # noqa: T201 (reported figure)
            f"\nPostgreSQL unreachable for 2 s under 200 submits: answers {dict(load.answers)}, "
            "all accepted tasks succeeded once"
        )


class TestRedisConnectionsCut:
    async def test_running_tasks_and_lost_publishes_all_end_succeeded_once(
        self, proxied: Platform, redis_proxy: Proxy
    ) -> None:
        proxied.start_worker(concurrency=4)
        proxied.start_worker(concurrency=4)
        load = Load(proxied, {"type": "sleep", "input": {"seconds": 1}}, concurrency=8)

        cuts = await _while_cutting(load.run(120), redis_proxy, times=4, every_s=2)
        await _assert_all_succeeded_once(proxied, load.task_ids)

        assert all(cuts), cuts
        assert load.answers == {202: 120}
        print(  # noqa: T201 (reported figure)
            f"\nRedis connections cut 4 times ({cuts}) with tasks running: all 120 succeeded once"
        )

    async def test_unreachable_for_two_seconds_with_tasks_running_every_task_succeeds_once(
        self, proxied: Platform, redis_proxy: Proxy
    ) -> None:
        proxied.start_worker(concurrency=4)
        load = Load(proxied, {"type": "sleep", "input": {"seconds": 1}}, concurrency=8)

        async def outage() -> None:
            await asyncio.sleep(2)
            redis_proxy.refuse(2)  # connects refused for 2 s, as while Redis restarts
            redis_proxy.cut()

        async with asyncio.TaskGroup() as group:
            group.create_task(load.run(60))
            group.create_task(outage())
        await _assert_all_succeeded_once(proxied, load.task_ids)

        assert load.answers == {202: 60}
