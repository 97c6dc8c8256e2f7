"""Log lines of real processes: the API's one access line per request, workers' JSON lines."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from app.core.db import create_sessionmaker
from app.events.models import Event
from tests.platform import Platform
from tests.support import free_port, wait_until

pytestmark = pytest.mark.e2e

VENV_BIN = Path(sys.executable).parent


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """Every complete line of `path`, each of which must be one JSON object (a line still being
    written, after the last newline, is left for the next read)."""
    *lines, _partial = path.read_text().split("\n")
    return [orjson.loads(line) for line in lines if line.strip()]


async def _event_request_ids(platform: Platform, task_id: str) -> dict[str, str | None]:
    async with create_sessionmaker(platform.engine)() as session:
        rows = await session.execute(
            select(Event.kind, Event.request_id).where(Event.subject_id == uuid.UUID(task_id))
        )
        return {row[0]: row[1] for row in rows}


def _access_lines(path: Path, request_id: str) -> list[dict[str, Any]]:
    return [
        entry
        for entry in _json_lines(path)
        if entry["logger"] == "taskgate.access" and entry.get("request_id") == request_id
    ]


class TestApiAccessLog:
    async def test_each_request_is_one_json_line_and_uvicorn_logs_none(
        self, platform: Platform
    ) -> None:
        log = platform.logs / "api.log"
        marker = f"query-{uuid.uuid4().hex}"
        requests = {
            "submit": ("POST", f"/v1/projects/{platform.project_id}/tasks", {"type": "echo"}),
            "read": ("GET", f"/v1/projects/{platform.project_id}?note={marker}", None),
            "missing": ("GET", f"/v1/nowhere?note={marker}", None),
        }

        async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
            statuses = {
                name: (
                    await client.request(
                        method,
                        path,
                        json=body,
                        headers={**platform.headers, "X-Request-ID": f"log-{name}"},
                    )
                ).status_code
                for name, (method, path, body) in requests.items()
            }
        # The line is written once the response is sent: wait for the last request's.
        wait_until(
            lambda: bool(_access_lines(log, "log-missing")),
            timeout_s=30,
            what="the access line of the last request",
        )

        assert statuses == {"submit": 202, "read": 200, "missing": 404}
        entries = _json_lines(log)  # every line of the process is JSON
        assert not [entry for entry in entries if entry["logger"] == "uvicorn.access"]
        [submit] = _access_lines(log, "log-submit")
        assert submit["route"] == "/v1/projects/{project_id}/tasks"
        assert (submit["method"], submit["status"]) == ("POST", 202)
        assert submit["project_id"] == str(platform.project_id)
        assert "api_key_id" in submit
        assert submit["duration_ms"] >= 0
        [read] = _access_lines(log, "log-read")
        assert (read["route"], read["status"]) == ("/v1/projects/{project_id}", 200)
        [missing] = _access_lines(log, "log-missing")
        assert (missing["route"], missing["status"]) == ("unmatched", 404)
        assert marker not in log.read_text()


class TestStockCeleryWorkerLog:
    async def test_celery_a_app_worker_writes_json_lines_with_the_task_s_and_request_s_ids(
        self, platform: Platform, tmp_path: Path
    ) -> None:
        hostname = f"stock-log-{free_port()}@localhost"
        stderr = tmp_path / "celery.stderr"
        # Celery's defaults: a prefork pool; its pool processes set their logging up again.
        platform.processes.start(
            [
                str(VENV_BIN / "celery"),
                "-A",
                "app",
                "worker",
                "--concurrency=1",
                "--loglevel=info",
                f"--hostname={hostname}",
            ],
            env={
                **platform.env,
                "TASKGATE_WORKER__POOL": "prefork",
                "TASKGATE_WORKER__CONCURRENCY": "1",
            },
            log_path=tmp_path / "celery.stdout",
            stderr_path=stderr,
        )
        request_id = f"worker-log-{uuid.uuid4().hex}"
        async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
            response = await client.post(
                f"/v1/projects/{platform.project_id}/tasks",
                json={"type": "echo", "input": {"n": 1}},
                headers={**platform.headers, "X-Request-ID": request_id},
            )
        assert response.status_code == 202, response.text
        task_id = response.json()["id"]

        await platform.wait_terminal([task_id], timeout_s=60)
        wait_until(
            lambda: any(
                entry.get("task_id") == task_id and entry["logger"] == "app.tasks.runner"
                for entry in _json_lines(stderr)
            ),
            timeout_s=30,
            what="the attempt's log line",
        )

        entries = _json_lines(stderr)  # every line on stderr is one JSON object
        assert any(entry["logger"].startswith("celery") for entry in entries)
        [attempt] = [  # (a message the scheduler published again may log "nothing to lease")
            entry
            for entry in entries
            if entry.get("task_id") == task_id
            and entry["logger"] == "app.tasks.runner"
            and entry["message"].startswith("task attempt")
        ]
        assert attempt["level"] == "info"
        assert attempt["project_id"] == str(platform.project_id)
        assert attempt["request_id"] == request_id  # the submit's, from the message's header
        # The worker's events carry it too (the lease's, written before the row is read).
        assert await _event_request_ids(platform, task_id) == {
            "task.created": request_id,
            "task.started": request_id,
            "task.succeeded": request_id,
        }
        assert (attempt["type"], attempt["attempt"], attempt["status"]) == ("echo", 1, "succeeded")
        assert "duration_ms" in attempt
