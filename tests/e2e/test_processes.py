"""The platform's processes started for real, as an operator would, and checked over the network."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from celery import Celery

from tests.support import ProcessGroup, free_port, http_ok, wait_until

pytestmark = pytest.mark.e2e

VENV_BIN = Path(sys.executable).parent


def _worker_names(celery: Celery) -> set[str]:
    replies = celery.control.ping(timeout=0.5) or []
    return {name for reply in replies for name in reply}


def _wait_for_worker(celery: Celery, hostname: str) -> None:
    wait_until(
        lambda: any(name.endswith(hostname) for name in _worker_names(celery)),
        timeout_s=60,
        interval_s=0.2,
        what=f"worker {hostname} to answer a ping",
    )


class TestWorkerProcesses:
    def test_taskgate_worker_consumes_the_priority_and_webhook_queues(
        self,
        processes: ProcessGroup,
        process_env: dict[str, str],
        celery_control: Celery,
        tmp_path: Path,
    ) -> None:
        hostname = f"w1-{free_port()}@localhost"
        processes.start_python(
            "-m",
            "app.cli",
            "worker",
            "--concurrency=1",
            f"--hostname={hostname}",
            env=process_env,
            log_path=tmp_path / "worker.log",
        )

        _wait_for_worker(celery_control, hostname)

        queues = celery_control.control.inspect(timeout=2).active_queues() or {}
        mine = next(names for name, names in queues.items() if name.endswith(hostname))
        assert {queue["name"] for queue in mine} == {"high", "webhooks", "default", "low"}

    def test_the_stock_celery_command_runs_a_worker_from_the_repo_root(
        self,
        processes: ProcessGroup,
        process_env: dict[str, str],
        celery_control: Celery,
        tmp_path: Path,
    ) -> None:
        hostname = f"stock-{free_port()}@localhost"
        processes.start(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "app",
                "worker",
                "--concurrency=1",
                "--loglevel=info",
                f"--hostname={hostname}",
            ],
            env=process_env,
            log_path=tmp_path / "celery.log",
        )

        _wait_for_worker(celery_control, hostname)


class TestApiProcess:
    def test_taskgate_api_serves_readiness_over_http(
        self, processes: ProcessGroup, process_env: dict[str, str], tmp_path: Path
    ) -> None:
        port = free_port()
        base = f"http://127.0.0.1:{port}"

        processes.start_python(
            "-m",
            "app.cli",
            "api",
            "--port",
            str(port),
            env=process_env,
            log_path=tmp_path / "api.log",
        )
        wait_until(lambda: http_ok(f"{base}/health/live"), timeout_s=60, what="the API to start")

        response = httpx.get(f"{base}/health/ready", timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ok"

    def test_api_workers_that_start_slower_than_uvicorns_default_healthcheck_still_serve(
        self, processes: ProcessGroup, process_env: dict[str, str], tmp_path: Path
    ) -> None:
        # A CPU-starved host: each spawned uvicorn worker needs 7 s before it can answer the
        # supervisor's first health ping (uvicorn's default allows 5 s, then kills and respawns).
        (tmp_path / "sitecustomize.py").write_text(
            "import sys, time\nif '--multiprocessing-fork' in sys.argv:\n    time.sleep(7)\n"
        )
        env = {**process_env, "PYTHONPATH": str(tmp_path)}
        port = free_port()
        log = tmp_path / "api.log"

        processes.start_python(
            "-m", "app.cli", "api", "--port", str(port), "--workers", "2", env=env, log_path=log
        )
        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{port}/health/live"),
            timeout_s=60,
            what="the API to start",
        )

        assert "died" not in log.read_text()


class TestFlower:
    def test_the_stock_flower_command_starts_against_the_broker(
        self, processes: ProcessGroup, process_env: dict[str, str], tmp_path: Path
    ) -> None:
        port = free_port()

        processes.start(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "app",
                "flower",
                f"--port={port}",
                "--address=127.0.0.1",
            ],
            env=process_env,
            log_path=tmp_path / "flower.log",
        )

        wait_until(
            lambda: http_ok(f"http://127.0.0.1:{port}/healthcheck"),
            timeout_s=60,
            what="flower to answer its health check",
        )
