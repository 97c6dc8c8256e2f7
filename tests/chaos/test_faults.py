"""Faults under load on engines and processes the test started itself: PostgreSQL stopped, a
worker's warm shutdown, an API process killed, Redis killed while tasks run."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from celery import Celery
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.db import create_engine
from app.devstack.engines.postgres import Postgres
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
