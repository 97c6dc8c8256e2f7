"""Migrations on a live database, each on a database of its own on the suite's PostgreSQL: two
runs at once take turns on an advisory lock, one doing the work; an additive revision applies
while the API serves requests, none failing; a revision that cannot get its table's lock within
`migration_lock_timeout_ms` gives up, changing nothing, and the requests queued behind it go on."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from alembic.script import ScriptDirectory

from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker, transaction
from app.core.redis import create_redis
from app.migrations import MIGRATION_LOCK_KEY, alembic_config
from tests.factories import make_api_key, make_project, make_user
from tests.support import REPO_ROOT, own_api, plain_dsn, run_alembic

TASKGATE_MIGRATE = [sys.executable, "-m", "app.cli", "migrate"]
ALEMBIC_UPGRADE = [sys.executable, "-m", "alembic", "upgrade", "head"]
# `alembic upgrade head` with the test's revision directory beside the package's.
_UPGRADE_WITH = """
import os, sys
from alembic import command
from app.migrations import MIGRATIONS_DIR, alembic_config
config = alembic_config()
config.set_main_option(
    "version_locations", os.pathsep.join([str(MIGRATIONS_DIR / "versions"), sys.argv[1]])
)
command.upgrade(config, "head")
"""
_ADDITIVE_REVISION = '''"""An additive change: a nullable column on the hottest table, and a table."""

import sqlalchemy as sa
from alembic import op

revision = "a11d0ad00001"
down_revision = "{down_revision}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("load_note", sa.Text(), nullable=True))
    op.create_table("migration_probe", sa.Column("lock_timeout", sa.Text(), nullable=False))
    op.execute("insert into migration_probe select current_setting('lock_timeout')")


def downgrade() -> None:
    op.drop_table("migration_probe")
    op.drop_column("tasks", "load_note")
'''
_LOCK_WAITERS = """
    select count(*) from pg_locks
     where locktype = 'advisory' and not granted
       and database = (select oid from pg_database where datname = current_database())
"""


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


@dataclass
class Run:
    returncode: int
    stderr: str


async def _migrate(argv: list[str], database_url: str, **env: str) -> Run:
    """One migration run in a process of its own, as a deploy starts it."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=REPO_ROOT,
        env={**os.environ, "TASKGATE_DATABASE__URL": database_url, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return Run(process.returncode, stderr.decode())


def _with_additive_revision(directory: Path) -> list[str]:
    (directory / "a11d0ad00001_additive.py").write_text(
        _ADDITIVE_REVISION.format(down_revision=_head())
    )
    return [sys.executable, "-c", _UPGRADE_WITH, str(directory)]


async def _fetchval(database_url: str, query: str) -> object:
    conn = await asyncpg.connect(plain_dsn(database_url))
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


@dataclass
class Traffic:
    """What the API answered while a migration ran: (sent, answered) per request, failures."""

    answered: list[tuple[float, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    async def until(self, count: int, *, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.answered) < count:
            assert time.monotonic() < deadline, f"only {len(self.answered)} requests answered"
            await asyncio.sleep(0.02)

    def between(self, start: float, end: float) -> int:
        return sum(1 for sent, answered in self.answered if answered > start and sent < end)

    def slowest_s(self) -> float:
        return max(answered - sent for sent, answered in self.answered)


async def _request(
    client: httpx.AsyncClient, traffic: Traffic, method: str, url: str, **kwargs: object
) -> httpx.Response | None:
    sent = time.monotonic()
    try:
        response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
    except Exception as exc:  # an app exception, re-raised by the ASGI transport
        traffic.failures.append(f"{method} {url}: {exc!r}")
        return None
    traffic.answered.append((sent, time.monotonic()))
    if response.status_code not in (200, 202):
        traffic.failures.append(f"{method} {url}: {response.status_code} {response.text[:300]}")
    return response


async def _serve(
    client: httpx.AsyncClient, tenant: tuple[uuid.UUID, str], traffic: Traffic, stop: asyncio.Event
) -> None:
    """Submit a task, read it back and list the project's tasks, until told to stop."""
    project_id, key = tenant
    headers = {"Authorization": f"Bearer {key}"}
    while not stop.is_set():
        submitted = await _request(
            client,
            traffic,
            "POST",
            f"/v1/projects/{project_id}/tasks",
            json={"type": "echo", "input": {"n": 1}},
            headers=headers,
        )
        if submitted is not None and submitted.status_code == 202:
            task_url = f"/v1/tasks/{submitted.json()['id']}"
            await _request(client, traffic, "GET", task_url, headers=headers)
        await _request(
            client, traffic, "GET", f"/v1/projects/{project_id}/tasks?limit=5", headers=headers
        )


@pytest.fixture
async def migrated_database(empty_database: str) -> str:
    run_alembic(empty_database, "upgrade", "head")
    return empty_database


@pytest.fixture
async def live_settings(settings: Settings, migrated_database: str) -> AsyncIterator[Settings]:
    """The session's settings on the migrated database, and a Redis database of their own (the
    jobs of tasks submitted there never reach the suite's queues)."""
    redis_url = urlunsplit(urlsplit(settings.redis.url)._replace(path="/11"))
    live = settings.model_copy(
        update={
            "database": settings.database.model_copy(update={"url": migrated_database}),
            "redis": settings.redis.model_copy(update={"url": redis_url}),
        }
    )
    yield live
    redis = create_redis(live.redis)
    await redis.flushdb()
    await redis.aclose()


@pytest.fixture
async def tenant(live_settings: Settings) -> tuple[uuid.UUID, str]:
    """A project in the migrated database and a write key of it."""
    engine = create_engine(live_settings.database)
    try:
        async with transaction(create_sessionmaker(engine)) as session:
            project = await make_project(session, owner=await make_user(session))
            _, key = await make_api_key(session, project)
            project_id = project.id
    finally:
        await engine.dispose()
    return project_id, key


class TestConcurrentUpgrades:
    async def test_two_upgrades_at_once_take_turns_and_one_does_the_work(
        self, empty_database: str
    ) -> None:
        holder = await asyncpg.connect(plain_dsn(empty_database))
        await holder.execute("select pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        runs = [
            asyncio.create_task(_migrate(TASKGATE_MIGRATE, empty_database)),
            asyncio.create_task(_migrate(ALEMBIC_UPGRADE, empty_database)),
        ]
        try:
            both_waited = False
            for _ in range(600):  # a minute for both processes to start and wait
                both_waited = await holder.fetchval(_LOCK_WAITERS) == 2
                if both_waited:
                    break
                await asyncio.sleep(0.1)
        finally:
            await holder.execute("select pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
            first, second = await asyncio.gather(*runs)
            await holder.close()

        assert both_waited
        assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
        worked = [run for run in (first, second) if "Running upgrade" in run.stderr]
        assert len(worked) == 1
        assert await _fetchval(empty_database, "select version_num from alembic_version") == (
            _head()
        )


class TestUpgradeUnderLoad:
    async def test_an_additive_revision_applies_while_requests_flow_and_none_fails(
        self,
        live_settings: Settings,
        tenant: tuple[uuid.UUID, str],
        tmp_path: Path,
    ) -> None:
        upgrade = _with_additive_revision(tmp_path)
        traffic, stop = Traffic(), asyncio.Event()

        async with own_api(live_settings) as client:
            loops = [asyncio.create_task(_serve(client, tenant, traffic, stop)) for _ in range(4)]
            try:
                await traffic.until(20)
                started = time.monotonic()
                run = await _migrate(upgrade, live_settings.database.url)
                ended = time.monotonic()
                await traffic.until(len(traffic.answered) + 20)
            finally:
                stop.set()
                await asyncio.gather(*loops)

        assert run.returncode == 0, run.stderr
        assert traffic.failures == []
        assert traffic.between(started, ended) > 0
        url = live_settings.database.url
        assert await _fetchval(url, "select lock_timeout from migration_probe") == "5s"

    async def test_a_revision_that_cannot_get_its_lock_in_time_gives_up_and_requests_go_on(
        self,
        live_settings: Settings,
        tenant: tuple[uuid.UUID, str],
        tmp_path: Path,
    ) -> None:
        url = live_settings.database.url
        upgrade = _with_additive_revision(tmp_path)
        traffic, stop = Traffic(), asyncio.Event()
        report = await asyncpg.connect(plain_dsn(url))  # a long read holding its table's lock
        reading = report.transaction()
        await reading.start()
        await report.fetchval("select count(*) from tasks")

        try:
            async with own_api(live_settings) as client:
                loops = [
                    asyncio.create_task(_serve(client, tenant, traffic, stop)) for _ in range(4)
                ]
                try:
                    await traffic.until(20)
                    run = await _migrate(
                        upgrade, url, TASKGATE_DATABASE__MIGRATION_LOCK_TIMEOUT_MS="1000"
                    )
                    await traffic.until(len(traffic.answered) + 20)
                finally:
                    stop.set()
                    await asyncio.gather(*loops)
        finally:
            await reading.rollback()
            await report.close()

        assert run.returncode != 0
        assert "canceling statement due to lock timeout" in run.stderr
        assert await _fetchval(url, "select version_num from alembic_version") == _head()
        assert await _fetchval(url, "select to_regclass('migration_probe')::text") is None
        assert traffic.failures == []
        assert traffic.slowest_s() < 1.0 + 2.0  # queued behind the ALTER at most its lock_timeout
