"""Test harness: real engines once per session, a fresh migrated database, isolated tests.

The engines come from `app.devstack` (embedded PostgreSQL, Valkey and S3 from pip wheels) unless
`TASKGATE_DATABASE__URL`, `TASKGATE_REDIS__URL` or `TASKGATE_S3__ENDPOINT_URL` point at running
ones, in which case those are used as they are.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from celery import Celery
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app import wiring
from app.core.config import Settings
from app.core.db import create_engine
from app.core.redis import create_redis
from app.devstack import DevStack, StackUrls
from app.devstack.stack import REDIS_URL
from app.main import create_app
from app.worker.celery_app import create_celery
from app.worker.enqueue import Publisher
from tests.logs import JsonLogs, capture_json_logs
from tests.platform import FAST_SETTINGS, Platform
from tests.support import ProcessGroup, plain_dsn, run_alembic, settings_env


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackUrls]:
    """The engines for the whole session: embedded ones, or those named by the environment."""
    with DevStack(tmp_path_factory.mktemp("engines"), durable=False) as dev_stack:
        yield _own_redis_database(dev_stack.start())


def _own_redis_database(urls: StackUrls) -> StackUrls:
    """Under pytest-xdist, the Redis database of this test process (gw0 → 0, gw1 → 1, …) when the
    environment names a shared Redis: its queues, broadcasts and caches are then its own. (Each
    process has a PostgreSQL database of its own anyway, and an embedded Redis of its own.)"""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or REDIS_URL not in os.environ:
        return urls
    redis_url = urlsplit(urls.redis_url)._replace(path=f"/{int(worker[2:])}").geturl()
    return dataclasses.replace(urls, redis_url=redis_url)


@contextlib.asynccontextmanager
async def fresh_database(stack: StackUrls, prefix: str) -> AsyncIterator[str]:
    """A new database on the suite's PostgreSQL, migrated with `alembic upgrade head`, dropped
    afterwards: its URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(plain_dsn(stack.database_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(stack.database_url).set(database=name).render_as_string(hide_password=False)
    try:
        run_alembic(url, "upgrade", "head")
        yield url
    finally:
        admin = await asyncpg.connect(plain_dsn(stack.database_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="session")
async def database_url(stack: StackUrls) -> AsyncIterator[str]:
    """A fresh database for this session, migrated with `alembic upgrade head`, dropped afterwards."""
    async with fresh_database(stack, "taskgate_test") as url:
        yield url


@pytest.fixture(scope="session")
def settings(stack: StackUrls, database_url: str) -> Settings:
    """Settings pointing at this session's engines and database."""
    return Settings.model_validate(
        {
            "env": "test",
            "log_json": False,
            "database": {"url": database_url, "pool_size": 5},
            "redis": {"url": stack.redis_url},
            # The suite signs in far more often from 127.0.0.1 than a person would; the tests of
            # these limits set their own.
            "rate_limits": {
                "sign_in_per_ip_per_minute": 1_000_000,
                "register_per_ip_per_minute": 1_000_000,
            },
            "s3": {
                "endpoint_url": stack.s3_endpoint_url,
                "bucket": stack.s3_bucket,
                "region": stack.s3_region,
                "access_key_id": stack.s3_access_key_id,
                "secret_access_key": stack.s3_secret_access_key,
            },
        }
    )


@pytest.fixture(scope="session")
def process_env(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for child processes (API, workers) that points them at this session's engines
    and a metrics directory of its own."""
    metrics_dir = str(tmp_path_factory.mktemp("metrics"))
    return {**os.environ, **settings_env(settings), "TASKGATE_METRICS__DIR": metrics_dir}


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database)
    yield engine
    await engine.dispose()


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions bound to one connection whose outer transaction is rolled back after the test."""
    async with engine.connect() as conn:  # code under test may commit: it releases a savepoint
        outer = await conn.begin()
        yield async_sessionmaker(
            bind=conn, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        await outer.rollback()


@pytest.fixture(scope="session", autouse=True)
def _webhooks_subscribe_to_events() -> None:
    """As every process does at start: events recorded by services get their deliveries, and a
    member leaving a project takes the webhooks they created with them."""
    wiring.subscribe_all()


@pytest.fixture
async def session(db: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for arranging and asserting; it sees what the code under test wrote."""
    async with db() as session:
        yield session


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = create_redis(settings.redis)
    yield client
    await client.aclose()


@pytest.fixture
async def publisher(settings: Settings) -> AsyncIterator[Publisher]:
    """A publisher on this session's broker, as the scheduler and workers have one."""
    publisher = Publisher(create_redis(settings.redis), breaker_s=5)
    yield publisher
    await publisher.close()


@pytest.fixture
async def app(settings: Settings, db: async_sessionmaker[AsyncSession]) -> AsyncIterator[FastAPI]:
    """The API with its lifespan run, its sessions joined to the test's rolled-back transaction."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        application.state.sessionmaker = db
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://taskgate.test") as client:
        yield client


@pytest.fixture
def json_logs() -> Iterator[JsonLogs]:
    """Every log line of this process during the test, at DEBUG and above, as JSON."""
    with capture_json_logs(logging.DEBUG) as logs:
        yield logs


@pytest.fixture
def processes() -> Iterator[ProcessGroup]:
    """Real child processes (API, Celery workers) that are all stopped when the test ends."""
    group = ProcessGroup()
    yield group
    group.stop_all()


@pytest.fixture(scope="session")
def celery_control(settings: Settings) -> Iterator[Celery]:
    """A Celery app on this session's broker, used to ping and inspect real worker processes."""
    app = create_celery(settings)
    yield app
    app.close()


@pytest.fixture
async def platform(
    processes: ProcessGroup,
    process_env: dict[str, str],
    celery_control: Celery,
    engine: AsyncEngine,
    tmp_path: Path,
) -> AsyncIterator[Platform]:
    """The API and the scheduler running as processes, and a project with a write API key.

    Its tasks that never ended are canceled afterwards: another test's workers, on the same
    queues and database, would otherwise run them (and wait for them when stopped)."""
    platform = Platform(
        processes=processes,
        # Its own metrics directory: what a test scrapes is what its processes recorded.
        env={**process_env, **FAST_SETTINGS, "TASKGATE_METRICS__DIR": str(tmp_path / "metrics")},
        logs=tmp_path,
        celery=celery_control,
        engine=engine,
    )
    await platform.create_project()
    platform.start_api()
    platform.start_scheduler()
    yield platform
    processes.stop_all()
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE tasks SET status = 'canceled', finished_at = now(), lease_expires_at = NULL"
                " WHERE project_id = :project AND status IN ('queued', 'running', 'retrying')"
            ),
            {"project": platform.project_id},
        )


@pytest.fixture
async def isolated_platform(
    stack: StackUrls,
    settings: Settings,
    processes: ProcessGroup,
    process_env: dict[str, str],
    celery_control: Celery,
    tmp_path: Path,
) -> AsyncIterator[Platform]:
    """`platform` on a database of its own, dropped afterwards: for tests that leave behind what
    they make (a fuzzer's users, projects and endpoints; a walk-through's), which the other
    tests, sharing the session's database, would otherwise find."""
    async with fresh_database(stack, "taskgate_isolated") as url:
        engine = create_engine(settings.database.model_copy(update={"url": url}))
        platform = Platform(
            processes=processes,
            env={
                **process_env,
                **FAST_SETTINGS,
                "TASKGATE_DATABASE__URL": url,
                "TASKGATE_METRICS__DIR": str(tmp_path / "metrics"),
            },
            logs=tmp_path,
            celery=celery_control,
            engine=engine,
        )
        try:
            await platform.create_project()
            platform.start_api()
            platform.start_scheduler()
            yield platform
        finally:
            processes.stop_all()  # before the database goes
            await engine.dispose()
