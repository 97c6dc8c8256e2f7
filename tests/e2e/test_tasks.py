"""The task engine end to end: real API, worker and scheduler processes over HTTP."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from celery import Celery
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import create_sessionmaker
from app.events.models import Event
from tests.platform import FAST_SETTINGS, Platform
from tests.support import ProcessGroup

pytestmark = pytest.mark.e2e


class TestThroughput:
    async def test_a_thousand_concurrent_echo_tasks_all_succeed_once(
        self, platform: Platform
    ) -> None:
        platform.start_worker(concurrency=3)

        started = time.monotonic()
        task_ids = await platform.submit_many(
            1000, {"type": "echo", "input": {"x": 1}}, concurrency=50
        )
        submitted = time.monotonic()
        counts = await platform.wait_terminal(task_ids, timeout_s=180)
        finished = time.monotonic()

        assert counts == {"succeeded": 1000}
        assert await platform.terminal_event_counts(task_ids) == {1: 1000}
        print(  # noqa: T201 (reported figure)
            f"\n1000 echo tasks: submitted in {submitted - started:.1f}s, "
            f"all succeeded {finished - started:.1f}s after the first submit"
        )


class TestIdempotencyRace:
    async def test_twenty_concurrent_submits_with_one_key_make_one_task(
        self, platform: Platform
    ) -> None:
        headers = {**platform.headers, "Idempotency-Key": "race-1"}
        async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.post(
                        f"/v1/projects/{platform.project_id}/tasks",
                        json={"type": "echo", "input": {"k": 1}},
                        headers=headers,
                    )
                    for _ in range(20)
                )
            )

        assert sorted(response.status_code for response in responses) == [200] * 19 + [202]
        assert len({response.json()["id"] for response in responses}) == 1


class TestLongPoll:
    async def test_wait_answers_as_soon_as_the_task_finishes(self, platform: Platform) -> None:
        platform.start_worker(concurrency=1)
        [task_id] = await platform.submit_many(1, {"type": "sleep", "input": {"seconds": 1}})

        started = time.monotonic()
        async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
            response = await client.get(f"/v1/tasks/{task_id}?wait=20", headers=platform.headers)
        waited = time.monotonic() - started

        assert response.json()["status"] == "succeeded"
        assert waited < 10  # woken by the finish, not by the 20 s timeout

    async def test_wait_times_out_with_the_task_as_it_is(self, platform: Platform) -> None:
        [task_id] = await platform.submit_many(1, {"type": "echo"})  # no worker: stays queued

        async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
            response = await client.get(f"/v1/tasks/{task_id}?wait=1", headers=platform.headers)

        assert response.json()["status"] == "queued"


class TestCancel:
    async def test_a_running_task_is_canceled_over_http(self, platform: Platform) -> None:
        platform.start_worker(concurrency=1)
        [task_id] = await platform.submit_many(1, {"type": "sleep", "input": {"seconds": 60}})
        async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
            for _ in range(100):
                status = (await client.get(f"/v1/tasks/{task_id}", headers=platform.headers)).json()
                if status["status"] == "running":
                    break
                await asyncio.sleep(0.1)

            cancel = await client.post(f"/v1/tasks/{task_id}/cancel", headers=platform.headers)
            done = await client.get(f"/v1/tasks/{task_id}?wait=15", headers=platform.headers)

        assert cancel.status_code == 202
        assert done.json()["status"] == "canceled"


class TestRetries:
    async def test_an_always_failing_task_runs_max_attempts_times_with_growing_delays(
        self, platform: Platform
    ) -> None:
        platform.start_worker(concurrency=1)
        [task_id] = await platform.submit_many(
            1, {"type": "fail", "input": {"message": "nope"}, "max_attempts": 4}
        )

        counts = await platform.wait_terminal([task_id], timeout_s=60)

        assert counts == {"failed": 1}
        async with create_sessionmaker(platform.engine)() as session:
            events = (
                await session.scalars(
                    select(Event).where(Event.subject_id == task_id).order_by(Event.at)
                )
            ).all()
        kinds = [event.kind for event in events]
        assert kinds.count("task.started") == 4
        assert kinds.count("task.failed") == 1
        delays = [event.data["delay_s"] for event in events if event.kind == "task.retrying"]
        assert len(delays) == 3
        assert delays == sorted(delays)
        starts = [event.at for event in events if event.kind == "task.started"]
        retries = [event.at for event in events if event.kind == "task.retrying"]
        for delay, retried, next_start in zip(delays, retries, starts[1:], strict=True):
            assert (next_start - retried).total_seconds() >= delay


class TestPriorities:
    async def test_high_priority_tasks_start_before_queued_low_ones(
        self, platform: Platform
    ) -> None:
        low = await platform.submit_many(5, {"type": "echo", "priority": "low"}, concurrency=1)
        high = await platform.submit_many(5, {"type": "echo", "priority": "high"}, concurrency=1)
        await asyncio.sleep(1)  # all published before any worker runs

        platform.start_worker(concurrency=1)
        await platform.wait_terminal(low + high, timeout_s=60)

        async with create_sessionmaker(platform.engine)() as session:
            started = (
                await session.scalars(
                    select(Event.subject_id)
                    .where(Event.subject_id.in_(low + high), Event.kind == "task.started")
                    .order_by(Event.at)
                )
            ).all()
        assert {str(task_id) for task_id in started[:5]} == set(high)


class TestSubmitCommand:
    def _run(self, platform: Platform, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 (fixed argv)
            [sys.executable, "-m", "app.cli", "tasks", "submit", *args, "--wait", "--timeout=60"],
            env={
                **platform.env,
                "TASKGATE_URL": platform.base_url,
                "TASKGATE_API_KEY": platform.api_key,
                "TASKGATE_PROJECT": str(platform.project_id),
            },
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def test_follows_a_task_to_success_and_prints_its_result(self, platform: Platform) -> None:
        platform.start_worker(concurrency=1)

        result = self._run(platform, "sleep", "--input", '{"seconds": 1}')

        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"slept": 1}
        assert "succeeded" in result.stderr

    def test_exits_1_with_the_error_when_the_task_fails(self, platform: Platform) -> None:
        platform.start_worker(concurrency=1)

        result = self._run(platform, "fail", "--input", '{"retryable": false, "message": "no"}')

        assert result.returncode == 1
        assert json.loads(result.stdout) == {"type": "fail", "message": "no"}

    def test_bad_input_json_is_a_usage_error(self, platform: Platform) -> None:
        result = self._run(platform, "echo", "--input", "{not json")

        assert result.returncode == 2
        assert "not JSON" in result.stderr


class TestLongPollConnections:
    async def test_waiting_requests_hold_no_database_connection(
        self,
        processes: ProcessGroup,
        process_env: dict[str, str],
        celery_control: Celery,
        engine: AsyncEngine,
        tmp_path: Path,
    ) -> None:
        tiny_pool = {
            "TASKGATE_DATABASE__POOL_SIZE": "2",
            "TASKGATE_DATABASE__MAX_OVERFLOW": "0",
            "TASKGATE_DATABASE__POOL_TIMEOUT_S": "2",
        }
        platform = Platform(
            processes=processes,
            env={**process_env, **FAST_SETTINGS, **tiny_pool},
            logs=tmp_path,
            celery=celery_control,
            engine=engine,
        )
        await platform.create_project()
        platform.start_api()
        [task_id] = await platform.submit_many(1, {"type": "echo"})  # no worker: stays queued

        async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
            url = f"/v1/tasks/{task_id}"
            waits = [
                asyncio.create_task(client.get(f"{url}?wait=4", headers=platform.headers))
                for _ in range(8)
            ]
            await asyncio.sleep(1)  # all eight are waiting now
            meanwhile = await client.get(url, headers=platform.headers)
            waited = await asyncio.gather(*waits)

        assert meanwhile.status_code == 200
        assert [response.status_code for response in waited] == [200] * 8
