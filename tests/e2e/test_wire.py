"""Messages the API writes straight onto Redis are ordinary Celery messages: a stock
`celery -A app worker` runs them and Flower, watching that worker's events, lists them."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.platform import Platform
from tests.support import free_port, http_ok, wait_until

pytestmark = pytest.mark.e2e

VENV_BIN = Path(sys.executable).parent


async def _flower_tasks(base: str, task_ids: list[str], *, timeout_s: float) -> dict[str, str]:
    """Flower's state of the `tasks.execute` job of each taskgate task, once it has them all."""
    deadline = time.monotonic() + timeout_s
    seen: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while time.monotonic() < deadline:
            listed = (await client.get("/api/tasks")).json()
            seen = {
                str(info["args"]).strip("(),' "): info["state"]
                for info in listed.values()
                if info.get("name") == "tasks.execute"
            }
            if all(seen.get(task_id) == "SUCCESS" for task_id in task_ids):
                return seen
            await asyncio.sleep(0.25)
    raise AssertionError(f"flower did not list every task as done: {seen}")


class TestStockCelery:
    async def test_a_stock_worker_runs_the_api_s_messages_and_flower_lists_them(
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

        task_ids = await platform.submit_many(5, {"type": "echo", "input": {"n": 1}})

        assert await platform.wait_terminal(task_ids, timeout_s=60) == {"succeeded": 5}
        listed = await _flower_tasks(flower, task_ids, timeout_s=30)
        assert all(listed[task_id] == "SUCCESS" for task_id in task_ids)
