"""Messages the API writes straight onto Redis are ordinary Celery messages: a stock
`celery -A app worker` runs them, and Flower, watching that worker's events, tells the truth
about them: each under its task's type, with an args line of type, project and attempt (never
the input), as Celery task `<task id>-<attempt>`, and FAILURE for an attempt that failed."""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from tests.platform import Platform
from tests.support import free_port, http_ok, wait_until

pytestmark = pytest.mark.e2e

VENV_BIN = Path(sys.executable).parent


async def _flower_tasks(
    base: str, expected: dict[str, str], *, timeout_s: float
) -> dict[str, dict[str, Any]]:
    """Flower's `/api/tasks`, once each Celery task id of `expected` is in its expected state."""
    deadline = time.monotonic() + timeout_s
    listed: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while time.monotonic() < deadline:
            listed = (await client.get("/api/tasks")).json()
            if all(listed.get(id_, {}).get("state") == state for id_, state in expected.items()):
                return listed
            await asyncio.sleep(0.25)
    seen = {id_: listed.get(id_, {}).get("state") for id_ in expected}
    raise AssertionError(f"flower did not list every job as expected: {seen}")


def _unacked_of(redis_url: str, task_ids: list[str]) -> list[str]:
    """Messages of these tasks that a worker took and never acknowledged (kombu's `unacked`)."""
    with Redis.from_url(redis_url) as redis:
        held = [value.decode() for value in redis.hvals("unacked")]
    return [message for message in held if any(task_id in message for task_id in task_ids)]


class TestStockCeleryAndFlower:
    async def test_flower_shows_each_attempt_by_type_and_derived_id_and_failures_as_failure(
        self, platform: Platform, tmp_path: Path
    ) -> None:
        flower_port = free_port()
        platform.processes.start(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "app",
                "flower",
                f"--port={flower_port}",
                "--address=127.0.0.1",
            ],
            # Flower 2 serves its API only with auth configured, or with this.
            env={**platform.env, "FLOWER_UNAUTHENTICATED_API": "true"},
            log_path=tmp_path / "flower.log",
        )
        flower = f"http://127.0.0.1:{flower_port}"
        wait_until(lambda: http_ok(f"{flower}/healthcheck"), timeout_s=60, what="flower")
        platform.processes.start(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "app",
                "worker",
                "--concurrency=1",
                "--events",
                f"--hostname=stock-{flower_port}@localhost",
            ],
            env=platform.env,
            log_path=tmp_path / "celery.log",
        )
        marker = f"input-{uuid.uuid4().hex}"

        echoes = await platform.submit_many(3, {"type": "echo", "input": {"note": marker}})
        [failing] = await platform.submit_many(
            1, {"type": "fail", "input": {"message": marker}, "max_attempts": 2}
        )

        assert await platform.wait_terminal([*echoes, failing], timeout_s=60) == {
            "succeeded": 3,
            "failed": 1,
        }
        expected = {f"{task_id}-1": "SUCCESS" for task_id in echoes}
        expected |= {f"{failing}-1": "FAILURE", f"{failing}-2": "FAILURE"}
        listed = await _flower_tasks(flower, expected, timeout_s=30)
        project = platform.project_id
        for task_id in echoes:
            job = listed[f"{task_id}-1"]
            assert (job["name"], job["args"]) == ("echo", f"type=echo project={project} attempt=1")
        for attempt, ended in ((1, "retrying"), (2, "failed")):
            job = listed[f"{failing}-{attempt}"]
            assert job["name"] == "fail"
            assert job["args"] == f"type=fail project={project} attempt={attempt}"
            assert job["exception"] == f"AttemptUnsuccessful('{failing}: {ended} (fail)')"
        assert marker not in json.dumps(listed)  # neither the input nor the error's message
        async with httpx.AsyncClient(base_url=flower, timeout=5) as client:
            info = await client.get(f"/api/task/info/{failing}-2")
        assert info.status_code == 200
        assert (info.json()["name"], info.json()["state"]) == ("fail", "FAILURE")
        # A failed job is acknowledged, not left for the broker to deliver again.
        assert _unacked_of(platform.env["TASKGATE_REDIS__URL"], [*echoes, failing]) == []
