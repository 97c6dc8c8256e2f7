"""Faults under load on engines and processes the test started itself: PostgreSQL stopped, a
worker's warm shutdown, an API process killed, Redis killed while tasks run."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker, utc_now
from app.devstack.engines.postgres import Postgres
from app.events.models import Event
from tests.platform import FAST_SETTINGS, Platform
from tests.support import ProcessGroup, run_alembic

pytestmark = pytest.mark.e2e

ECHO = {"type": "echo"}


@dataclass
class Answer:
    """What one submit got: a status and its Retry-After, or the transport error's name."""

    at: float
    status: int | None
    retry_after: str | None = None
    task_id: str | None = None
    error: str | None = None


async def _submit(client: httpx.AsyncClient, platform: Platform, key: str | None = None) -> Answer:
    headers = {**platform.headers, "Idempotency-Key": key or uuid.uuid4().hex}
    at = time.monotonic()
    try:
        response = await client.post(
            f"/v1/projects/{platform.project_id}/tasks", json=ECHO, headers=headers
        )
    except httpx.TransportError as exc:
        return Answer(at, None, error=type(exc).__name__)
    task_id = response.json().get("id") if response.status_code in (200, 202) else None
    return Answer(at, response.status_code, response.headers.get("retry-after"), task_id)


async def _submit_until(
    client: httpx.AsyncClient, platform: Platform, stop: asyncio.Event, answers: list[Answer]
) -> None:
    while not stop.is_set():
        answer = await _submit(client, platform)
        answers.append(answer)
        if answer.status != 202:
            await asyncio.sleep(0.05)


async def _wait_succeeded(platform: Platform, task_ids: list[str], *, timeout_s: float) -> None:
    counts = await platform.wait_terminal(task_ids, timeout_s=timeout_s)
    assert counts == {"succeeded": len(task_ids)}
    assert await platform.terminal_event_counts(task_ids) == {1: len(task_ids)}


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[Postgres]:
    """A PostgreSQL only this test uses, migrated, that it may stop and start on the same port."""
    (tmp_path / "postgres" / "logs").mkdir(parents=True)
    server = Postgres(
        tmp_path / "postgres",
        durable=False,
        on_spawn=lambda _name, _pid: None,
        cancelled=threading.Event(),
        database_name="taskgate",
    )
    server.start(time.monotonic() + 60)
    server.keep_port()
    try:
        run_alembic(server.url, "upgrade", "head")
        yield server
    finally:
        server.signal_stop()
        server.wait_stopped()


@pytest.fixture
async def postgres_engine(own_postgres: Postgres, settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The test's own connections to it; pinged, so they come back after its restart."""
    database = settings.database.model_copy(update={"url": own_postgres.url, "pool_pre_ping": True})
    engine = create_engine(database)
    yield engine
    await engine.dispose()


class TestPostgresStopped:
    async def test_submits_get_202_or_503_through_a_10_s_outage_and_every_202_runs(
        self,
        own_postgres: Postgres,
        postgres_engine: AsyncEngine,
        processes: ProcessGroup,
        process_env: dict[str, str],
        celery_control: Celery,
        tmp_path: Path,
    ) -> None:
        env = {**process_env, **FAST_SETTINGS, "TASKGATE_DATABASE__URL": own_postgres.url}
        platform = Platform(
            processes=processes,
            env=env,
            logs=tmp_path,
            celery=celery_control,
            engine=postgres_engine,
        )
        await platform.create_project()
        platform.start_api()
        platform.start_scheduler()
        platform.start_worker(concurrency=2)
        answers: list[Answer] = []
        stop = asyncio.Event()

        async with httpx.AsyncClient(base_url=platform.base_url, timeout=20) as client:
            submitters = [
                asyncio.create_task(_submit_until(client, platform, stop, answers))
                for _ in range(4)
            ]
            await asyncio.sleep(2)
            stopped_at = time.monotonic()
            await asyncio.to_thread(_stop, own_postgres)
            await asyncio.sleep(10)
            restarted_at = time.monotonic()
            await asyncio.to_thread(own_postgres.start, time.monotonic() + 60)
            recovered_at = await _first_202_after(answers, restarted_at, timeout_s=30)
            await asyncio.sleep(2)
            stop.set()
            await asyncio.gather(*submitters)

        statuses = Counter(answer.status for answer in answers)
        outage = [answer for answer in answers if stopped_at <= answer.at < recovered_at]
        assert set(statuses) <= {202, 503}, statuses
        assert all(a.retry_after for a in answers if a.status == 503)
        assert any(a.status == 503 for a in outage)
        accepted = [a.task_id for a in answers if a.status == 202 and a.task_id]
        await _wait_succeeded(platform, accepted, timeout_s=60)
        after = Counter(a.status for a in answers if a.at >= recovered_at)
        print(  # noqa: T201 (reported figure)
            f"\nPostgreSQL stopped 10 s under 4 submitters: {dict(statuses)} in all; submits "
            f"succeed again {recovered_at - restarted_at:.1f}s after the restart began, "
            f"answers from then on {dict(after)}; all {len(accepted)} accepted succeeded"
        )


def _stop(server: Postgres) -> None:
    server.signal_stop()  # SIGINT: the fast shutdown, clients cut off at once
    server.wait_stopped()


async def _first_202_after(answers: list[Answer], since: float, *, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if found := [a.at for a in answers if a.at >= since and a.status == 202]:
            return min(found)
        await asyncio.sleep(0.1)
    raise AssertionError(f"no submit succeeded within {timeout_s}s of the restart")


class TestWorkerWarmShutdown:
    async def test_sigterm_hands_its_running_tasks_to_another_worker_at_once(
        self, platform: Platform
    ) -> None:
        # Tasks that outlast the second worker's start; leases of 30 s: a task that waited for its
        # lease to expire could not run again in time.
        platform.env |= {"TASKGATE_TASKS__LEASE_S": "30", "TASKGATE_WORKER__SHUTDOWN_GRACE_S": "1"}
        stopping = platform.start_worker(concurrency=4)
        task_ids = await platform.submit_many(4, {"type": "sleep", "input": {"seconds": 15}})
        await _until_running(platform, task_ids, count=4)
        platform.start_worker(concurrency=4)

        signalled_at = utc_now()
        stopping.send_signal(signal.SIGTERM)
        await asyncio.to_thread(stopping.wait, 30)
        stopped_at = utc_now()
        await _wait_succeeded(platform, task_ids, timeout_s=60)

        assert stopping.returncode == 0
        history = await _events(platform, task_ids)
        for task_id in task_ids:
            assert [(kind, data.get("reason")) for kind, data, _ in history[task_id]] == [
                ("task.created", None),
                ("task.started", None),
                ("task.requeued", "worker_shutdown"),
                ("task.started", None),
                ("task.succeeded", None),
            ]
        restarted_at = max(events[3][2] for events in history.values())
        restarted_after = (restarted_at - signalled_at).total_seconds()
        assert restarted_after < 10  # a third of the lease
        print(  # noqa: T201 (reported figure)
            f"\nSIGTERM with 4 tasks running (grace 1 s): the worker exited after "
            f"{(stopped_at - signalled_at).total_seconds():.1f}s, the last of the 4 ran on the "
            f"other worker {restarted_after:.1f}s after the signal (lease 30 s)"
        )


async def _until_running(platform: Platform, task_ids: list[str], *, count: int) -> None:
    for _ in range(300):
        if (await platform.statuses(task_ids)).get("running", 0) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {count} tasks started within 30 s")


async def _events(
    platform: Platform, task_ids: list[str]
) -> dict[str, list[tuple[str, dict[str, Any], datetime]]]:
    """Each task's events in order: kind, data, time."""
    async with create_sessionmaker(platform.engine)() as session:
        rows = await session.execute(
            select(Event.subject_id, Event.kind, Event.data, Event.at)
            .where(Event.subject_id.in_([uuid.UUID(task_id) for task_id in task_ids]))
            .order_by(Event.at, Event.id)
        )
        history: dict[str, list[tuple[str, dict[str, Any], datetime]]] = {t: [] for t in task_ids}
        for subject_id, kind, data, at in rows:
            history[str(subject_id)].append((kind, data or {}, at))
        return history
