"""Faults under load on engines and processes the test started itself: PostgreSQL stopped, a
worker's warm shutdown, an API process killed, Redis killed while tasks run."""

from __future__ import annotations

import asyncio
import os
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
from redis import Redis as SyncRedis
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker, utc_now
from app.devstack.engines.postgres import Postgres
from app.devstack.engines.valkey import valkey_binary
from app.events.models import Event
from app.tasks.models import Task
from app.worker.celery_app import create_celery
from tests.platform import FAST_SETTINGS, Platform
from tests.support import ProcessGroup, free_port, run_alembic, wait_until

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


async def _submit(
    client: httpx.AsyncClient, platform: Platform, key: str | None = None, *, base_url: str = ""
) -> Answer:
    headers = {**platform.headers, "Idempotency-Key": key or uuid.uuid4().hex}
    at = time.monotonic()
    try:
        response = await client.post(
            f"{base_url}/v1/projects/{platform.project_id}/tasks", json=ECHO, headers=headers
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


@pytest.fixture
async def postgres_platform(
    own_postgres: Postgres,
    postgres_engine: AsyncEngine,
    processes: ProcessGroup,
    process_env: dict[str, str],
    celery_control: Celery,
    tmp_path: Path,
) -> Platform:
    """API, scheduler and a worker on `own_postgres`."""
    env = {**process_env, **FAST_SETTINGS, "TASKGATE_DATABASE__URL": own_postgres.url}
    platform = Platform(
        processes=processes, env=env, logs=tmp_path, celery=celery_control, engine=postgres_engine
    )
    await platform.create_project()
    platform.start_api()
    platform.start_scheduler()
    platform.start_worker(concurrency=2)
    return platform


class TestPostgresStopped:
    async def test_submits_get_202_or_503_through_a_10_s_outage_and_every_202_runs(
        self, own_postgres: Postgres, postgres_platform: Platform
    ) -> None:
        platform = postgres_platform
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

    async def test_a_restart_while_the_api_is_idle_costs_no_request_a_503(
        self, own_postgres: Postgres, postgres_platform: Platform
    ) -> None:
        platform = postgres_platform
        async with httpx.AsyncClient(base_url=platform.base_url, timeout=20) as client:
            warm = await asyncio.gather(*(_submit(client, platform) for _ in range(8)))
            await asyncio.to_thread(_stop, own_postgres)
            await asyncio.to_thread(own_postgres.start, time.monotonic() + 60)
            await asyncio.sleep(1)  # the pooled connections have heard the server go

            after = await asyncio.gather(*(_submit(client, platform) for _ in range(8)))

        assert [a.status for a in warm] == [202] * 8
        assert [a.status for a in after] == [202] * 8
        await _wait_succeeded(
            platform, [a.task_id for a in warm + after if a.task_id], timeout_s=60
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
        # Leases of 30 s: a task that waited for its lease to expire could not run again in time.
        platform.env |= {"TASKGATE_TASKS__LEASE_S": "30", "TASKGATE_WORKER__SHUTDOWN_GRACE_S": "1"}
        stopping = platform.start_worker(concurrency=4)
        first = _worker_names(platform)
        platform.start_worker(concurrency=4)
        (other,) = _worker_names(platform) - first
        # The other worker takes no task until the first runs all four.
        platform.celery.control.cancel_consumer("default", destination=[other], reply=True)
        task_ids = await platform.submit_many(4, {"type": "sleep", "input": {"seconds": 8}})
        await _until_running(platform, task_ids, count=4)
        platform.celery.control.add_consumer("default", destination=[other], reply=True)

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
        assert all(events[1][1]["worker"] != events[3][1]["worker"] for events in history.values())
        restarted_at = max(events[3][2] for events in history.values())
        restarted_after = (restarted_at - signalled_at).total_seconds()
        assert restarted_after < 10  # a third of the lease
        print(  # noqa: T201 (reported figure)
            f"\nSIGTERM with 4 tasks of 8 s running (grace 1 s): the worker exited after "
            f"{(stopped_at - signalled_at).total_seconds():.1f}s, the last of the 4 ran on the "
            f"other worker {restarted_after:.1f}s after the signal (lease 30 s)"
        )


def _worker_names(platform: Platform) -> set[str]:
    return {name for reply in platform.celery.control.ping(timeout=1) or [] for name in reply}


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


class TestApiKilled:
    async def test_kill_9_of_one_of_two_apis_under_load_loses_nothing_and_makes_no_twin(
        self, platform: Platform
    ) -> None:
        assert platform.api is not None
        killed, first = platform.api, platform.base_url
        platform.start_api()
        second = platform.base_url
        platform.start_worker(concurrency=4)
        answers: dict[str, Answer] = {}  # by Idempotency-Key: the answer the client kept
        cut: list[tuple[str, str]] = []  # (API, error) of each request that got no answer
        stop = asyncio.Event()

        async def submit_until_stopped(apis: tuple[str, str]) -> None:
            # A client that resends to the other API, with the same key, when one cuts it off.
            while not stop.is_set():
                key = uuid.uuid4().hex
                for api in apis:
                    answer = await _submit(client, platform, key, base_url=api)
                    if answer.status is not None:
                        break
                    cut.append((api, answer.error or ""))
                answers[key] = answer

        async with httpx.AsyncClient(timeout=20) as client:
            submitters = [
                asyncio.create_task(
                    submit_until_stopped((first, second) if n % 2 else (second, first))
                )
                for n in range(6)
            ]
            await asyncio.sleep(3)
            os.killpg(killed.pid, signal.SIGKILL)
            await asyncio.sleep(3)
            stop.set()
            await asyncio.gather(*submitters)

        assert killed.wait(timeout=10) == -signal.SIGKILL
        assert Counter(answer.status for answer in answers.values()).keys() <= {200, 202}
        assert {api for api, _ in cut} == {first}
        connection_errors = {"ConnectError", "ReadError", "WriteError", "RemoteProtocolError"}
        assert {error for _, error in cut} <= connection_errors
        task_ids = sorted({answer.task_id for answer in answers.values() if answer.task_id})
        assert len(task_ids) == len(answers)  # one task per key, none lost
        assert await _project_task_count(platform) == len(answers)  # and no twin
        await _wait_succeeded(platform, task_ids, timeout_s=90)
        print(  # noqa: T201 (reported figure)
            f"\nkill -9 of one of two APIs under 6 submitters: {len(answers)} tasks, "
            f"{dict(Counter(answer.status for answer in answers.values()))}, requests cut off: "
            f"{dict(Counter(error for _, error in cut))}; every task succeeded once"
        )


async def _project_task_count(platform: Platform) -> int:
    async with create_sessionmaker(platform.engine)() as session:
        count = await session.scalar(
            select(func.count()).select_from(Task).where(Task.project_id == platform.project_id)
        )
        return count or 0


class TestRedisKilledWhileTasksRun:
    async def test_kill_9_of_redis_under_running_tasks_ends_each_once_after_its_restart(
        self,
        processes: ProcessGroup,
        process_env: dict[str, str],
        engine: AsyncEngine,
        tmp_path: Path,
    ) -> None:
        port = free_port()
        redis_url = f"redis://127.0.0.1:{port}/0"
        valkey_argv = [str(valkey_binary()), "--bind", "127.0.0.1", "--port", str(port)]
        valkey_argv += ["--dir", str(tmp_path), "--save", "", "--appendonly", "no"]
        valkey = processes.start(valkey_argv, env={}, log_path=tmp_path / "valkey.log")
        wait_until(lambda: _ping(redis_url), timeout_s=10, what="valkey")
        celery = create_celery(
            Settings.model_validate({"env": "test", "redis": {"url": redis_url}})
        )
        env = {**process_env, **FAST_SETTINGS, "TASKGATE_REDIS__URL": redis_url}
        platform = Platform(
            processes=processes, env=env, logs=tmp_path, celery=celery, engine=engine
        )
        await platform.create_project()
        platform.start_api()
        platform.start_scheduler()
        platform.start_worker(concurrency=4)
        platform.start_worker(concurrency=4)
        running = await platform.submit_many(40, {"type": "sleep", "input": {"seconds": 2}})
        await _until_running(platform, running, count=8)

        os.killpg(valkey.pid, signal.SIGKILL)
        valkey.wait(timeout=10)
        killed_at = time.monotonic()
        # Submits while it is away; meanwhile attempts end, publish and ack on dead connections.
        waiting = await platform.submit_many(10, ECHO, concurrency=5)
        await asyncio.sleep(max(0.0, killed_at + 4 - time.monotonic()))
        processes.start(valkey_argv, env={}, log_path=tmp_path / "valkey-2.log")  # empty
        await _wait_succeeded(platform, running + waiting, timeout_s=120)
        done_after = time.monotonic() - killed_at
        celery.close()

        print(  # noqa: T201 (reported figure)
            f"\nkill -9 of Redis with 8 of 40 tasks running, 4 s away, 10 submitted meanwhile: "
            f"all 50 succeeded once {done_after:.1f}s after the kill"
        )


def _ping(redis_url: str) -> bool:
    client = SyncRedis.from_url(redis_url, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except RedisError:
        return False
    finally:
        client.close()
