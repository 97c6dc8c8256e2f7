"""`/metrics` of a running platform: every process's figures in one scrape, promtool's check."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from tests.metrics import FAMILIES, check_metrics, family_types, samples, total
from tests.platform import Platform
from tests.support import free_port, http_ok, wait_until

pytestmark = pytest.mark.e2e


def _scrape(platform: Platform) -> str:
    response = httpx.get(f"{platform.base_url}/metrics", timeout=10)
    assert response.status_code == 200
    return response.text


class TestMetricsScrape:
    async def test_one_scrape_sums_every_api_and_worker_process_and_passes_promtool(
        self, platform: Platform
    ) -> None:
        assert platform.api is not None
        platform.processes.stop(platform.api)
        platform.start_api(workers=2)
        platform.start_worker(concurrency=2)
        task_ids = await platform.submit_many(6, {"type": "echo", "input": {"n": 1}})
        await platform.wait_terminal(task_ids, timeout_s=60)
        # A worker counts an attempt once it is recorded, just after the task turned terminal.
        wait_until(
            lambda: total(_scrape(platform), "taskgate_tasks_finished_total") >= 6,
            timeout_s=30,
            what="the worker's attempts in the API's scrape",
        )

        text = _scrape(platform)

        checked = check_metrics(text)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        types = family_types(text)
        assert {name: types.get(name) for name in FAMILIES} == FAMILIES
        # The two API processes' requests and the worker's attempts, whichever process served.
        assert total(text, "taskgate_tasks_submitted_total", type="echo") == 6
        submits = {"route": "/v1/projects/{project_id}/tasks", "method": "POST", "status": "202"}
        assert total(text, "taskgate_http_requests_total", **submits) == 6
        assert total(text, "taskgate_tasks_finished_total", type="echo", status="succeeded") == 6
        assert total(text, "taskgate_task_run_duration_seconds_count", type="echo") == 6
        assert total(text, "taskgate_task_queue_wait_seconds_count", queue="default") == 6
        assert {labels["queue"] for labels, _ in samples(text, "taskgate_queue_depth")} == {
            "high",
            "webhooks",
            "default",
            "low",
        }
        [(_, busy)] = samples(text, "taskgate_worker_busy_ratio")
        assert 0 <= busy <= 1
        assert total(text, "taskgate_worker_job_slots") == 2
        pools = {
            (labels["process"], labels["state"])
            for labels, _ in samples(text, "taskgate_db_pool_connections")
        }
        assert {("api", "size"), ("worker", "size"), ("scheduler", "size")} <= pools
        assert total(text, "taskgate_db_pool_connections", process="api", state="size") == 2 * 30
        # No label carries an id: the project's and the tasks' ids appear nowhere.
        assert str(platform.project_id) not in text
        assert not any(task_id in text for task_id in task_ids)


class TestStockCeleryWorkerMetrics:
    async def test_celery_a_app_worker_writes_to_the_host_s_directory(
        self, platform: Platform, tmp_path: Path
    ) -> None:
        # Celery's command line loads Flower's plugin, and prometheus_client with it, before
        # `app.celery` sets the directory; its prefork pool processes record the attempts.
        platform.processes.start(
            [
                str(Path(sys.executable).parent / "celery"),
                *("-A", "app", "worker", "--concurrency=2", "--hostname=stock-metrics@localhost"),
            ],
            env={**platform.env, "TASKGATE_WORKER__POOL": "prefork"},
            log_path=tmp_path / "celery.log",
        )
        task_ids = await platform.submit_many(2, {"type": "echo", "input": {"n": 1}})
        await platform.wait_terminal(task_ids, timeout_s=60)
        wait_until(
            lambda: total(_scrape(platform), "taskgate_tasks_finished_total") >= 2,
            timeout_s=30,
            what="the stock worker's attempts in the API's scrape",
        )

        text = _scrape(platform)

        assert total(text, "taskgate_tasks_finished_total", type="echo", status="succeeded") == 2
        assert total(text, "taskgate_worker_job_slots") == 2  # one per pool process


class TestWorkerMetrics:
    async def test_a_worker_on_a_host_of_its_own_serves_that_host_s_metrics(
        self, platform: Platform, tmp_path: Path
    ) -> None:
        port = free_port()
        platform.processes.start_python(
            *("-m", "app.cli", "worker", "--concurrency=2", "--hostname=own-host@localhost"),
            env={
                **platform.env,
                # Another host: a metrics directory no API process reads.
                "TASKGATE_METRICS__DIR": str(tmp_path / "other-host"),
                "TASKGATE_METRICS__WORKER_PORT": str(port),
            },
            log_path=tmp_path / "own-host.log",
        )
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{port}/metrics"), timeout_s=60, what="its /metrics"
        )
        task_ids = await platform.submit_many(2, {"type": "echo", "input": {"n": 1}})
        await platform.wait_terminal(task_ids, timeout_s=60)

        def worker_text() -> str:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text

        wait_until(
            lambda: total(worker_text(), "taskgate_tasks_finished_total") >= 2,
            timeout_s=30,
            what="the attempts in the worker's own /metrics",
        )

        text = worker_text()
        checked = check_metrics(text)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert total(text, "taskgate_tasks_finished_total", type="echo", status="succeeded") == 2
        assert total(text, "taskgate_worker_job_slots") == 2
        assert total(_scrape(platform), "taskgate_tasks_finished_total") == 0
