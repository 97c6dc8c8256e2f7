"""A real taskgate platform for end-to-end tests: API, Celery workers and the scheduler as processes.

They share the session's engines and database; timings are shortened through settings so crash
recovery and retries happen in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import create_sessionmaker, transaction
from app.events.models import Event
from app.projects.models import Project
from app.tasks.models import TERMINAL_STATUSES, Task
from tests.factories import make_api_key, make_project, make_user
from tests.support import ProcessGroup, free_port, http_ok, wait_until

FAST_SETTINGS = {
    "TASKGATE_LOG_LEVEL": "INFO",
    "TASKGATE_TASKS__LEASE_S": "3",
    "TASKGATE_TASKS__HEARTBEAT_S": "1",
    "TASKGATE_TASKS__REDISPATCH_AFTER_S": "3",
    "TASKGATE_TASKS__SCHEDULER_INTERVAL_S": "0.5",
    "TASKGATE_TASKS__RETRY_BASE_S": "0.5",
    "TASKGATE_TASKS__PUBLISH_BREAKER_S": "1",
    "TASKGATE_WORKER__UNACKED_RESTORE_INTERVAL_S": "1",
    # A stopped worker hands back what it still runs after 1 s (a job another test left queued
    # would otherwise hold its teardown for the 30 s default).
    "TASKGATE_WORKER__SHUTDOWN_GRACE_S": "1",
    # Receivers in tests listen on 127.0.0.1; retries and lost deliveries come back in seconds.
    "TASKGATE_WEBHOOKS__ALLOW_LOOPBACK": "true",
    "TASKGATE_WEBHOOKS__TIMEOUT_S": "2",
    "TASKGATE_WEBHOOKS__LEASE_GRACE_S": "1",
    "TASKGATE_WEBHOOKS__REDISPATCH_AFTER_S": "2",
    "TASKGATE_WEBHOOKS__RETRY_SCHEDULE_S": "[0.5, 1, 1, 1]",
}
TERMINAL_KINDS = ("task.succeeded", "task.failed", "task.canceled")


@dataclass
class Platform:
    """Handles on the running processes and a project with a write API key."""

    processes: ProcessGroup
    env: dict[str, str]
    logs: Path
    celery: Celery
    engine: AsyncEngine
    base_url: str = ""
    project: Project | None = None
    api_key: str = ""
    api: subprocess.Popen[bytes] | None = None
    scheduler: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def project_id(self) -> uuid.UUID:
        assert self.project is not None
        return self.project.id

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def start_api(self, *, workers: int = 1) -> None:
        port = free_port()
        self.base_url = f"http://127.0.0.1:{port}"
        self.api = self.processes.start_python(
            "-m",
            "app.cli",
            "api",
            "--port",
            str(port),
            "--workers",
            str(workers),
            env=self.env,
            log_path=self.logs / "api.log",
        )
        wait_until(lambda: http_ok(f"{self.base_url}/health/live"), timeout_s=60, what="the API")

    def start_scheduler(self) -> None:
        self.scheduler = self.processes.start_python(
            "-m", "app.cli", "scheduler", env=self.env, log_path=self.logs / "scheduler.log"
        )

    def start_worker(self, *, concurrency: int = 2) -> subprocess.Popen[bytes]:
        hostname = f"w{len(self.workers)}-{uuid.uuid4().hex[:6]}@localhost"
        worker = self.processes.start_python(
            "-m",
            "app.cli",
            "worker",
            f"--concurrency={concurrency}",
            f"--hostname={hostname}",
            env=self.env,
            log_path=self.logs / f"{hostname}.log",
        )
        self.workers.append(worker)
        wait_until(
            lambda: any(
                hostname in reply for reply in (self.celery.control.ping(timeout=0.5) or [])
            ),
            timeout_s=60,
            interval_s=0.2,
            what=f"worker {hostname}",
        )
        return worker

    def kill_workers(self) -> None:
        """`kill -9` every worker process: main processes and their prefork children."""
        for worker in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
        self.workers.clear()

    def stop_workers(self) -> None:
        for worker in self.workers:
            self.processes.stop(worker)
        self.workers.clear()

    async def create_project(self) -> None:
        async with transaction(create_sessionmaker(self.engine)) as session:
            owner = await make_user(session)
            self.project = await make_project(session, owner=owner)
            _, self.api_key = await make_api_key(session, self.project)

    async def submit_many(
        self,
        count: int,
        body: Mapping[str, Any],
        *,
        concurrency: int = 32,
        project_id: uuid.UUID | None = None,
        api_key: str | None = None,
    ) -> list[str]:
        """Submit `count` tasks over HTTP with bounded concurrency; return their ids. To the
        platform's project with its key, or to `project_id` with `api_key`."""
        path = f"/v1/projects/{project_id or self.project_id}/tasks"
        key_headers = self.headers if api_key is None else {"Authorization": f"Bearer {api_key}"}
        limits = httpx.Limits(max_connections=concurrency)
        semaphore = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=30) as client:

            async def one() -> str:
                # A pooled connection the server closes as it is reused is a transport error, not
                # an answer: resend once with the same Idempotency-Key, which cannot make a twin.
                headers = {**key_headers, "Idempotency-Key": uuid.uuid4().hex}
                async with semaphore:
                    try:
                        response = await client.post(path, json=dict(body), headers=headers)
                    except (httpx.ReadError, httpx.RemoteProtocolError):
                        response = await client.post(path, json=dict(body), headers=headers)
                assert response.status_code == 202, response.text
                task_id: str = response.json()["id"]
                return task_id

            return list(await asyncio.gather(*(one() for _ in range(count))))

    async def statuses(self, task_ids: list[str]) -> dict[str, int]:
        async with create_sessionmaker(self.engine)() as session:
            rows = await session.execute(
                select(Task.status, func.count())
                .where(Task.id.in_([uuid.UUID(task_id) for task_id in task_ids]))
                .group_by(Task.status)
            )
            return {status.value: count for status, count in rows}

    async def wait_terminal(self, task_ids: list[str], *, timeout_s: float) -> dict[str, int]:
        """Poll PostgreSQL until every task is terminal; fail with the counts after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        counts: dict[str, int] = {}
        while time.monotonic() < deadline:
            counts = await self.statuses(task_ids)
            if sum(counts.get(status.value, 0) for status in TERMINAL_STATUSES) == len(task_ids):
                return counts
            await asyncio.sleep(0.25)
        raise AssertionError(f"not all {len(task_ids)} tasks finished in {timeout_s}s: {counts}")

    async def terminal_event_counts(self, task_ids: list[str]) -> dict[int, int]:
        """How many tasks have 0, 1, 2… terminal events (every task must have exactly one)."""
        async with create_sessionmaker(self.engine)() as session:
            per_task = (
                select(Event.subject_id, func.count().label("n"))
                .where(
                    Event.subject_id.in_([uuid.UUID(task_id) for task_id in task_ids]),
                    Event.kind.in_(TERMINAL_KINDS),
                )
                .group_by(Event.subject_id)
                .subquery()
            )
            rows = await session.execute(select(per_task.c.n, func.count()).group_by(per_task.c.n))
            found: dict[int, int] = dict(rows.all())
        found[0] = len(task_ids) - sum(found.values())
        return {n: count for n, count in found.items() if count}
