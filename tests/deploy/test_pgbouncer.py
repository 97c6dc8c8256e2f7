"""taskgate behind a real PgBouncer (Debian's package) in transaction mode, in front of the suite's
PostgreSQL: the settings docs/operations.md gives for it are the ones that work.

PgBouncer gets two server connections per database, so client connections share them as they
do in production under load: a statement prepared on one is found, or collides, on the other.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from celery import Celery
from sqlalchemy.engine import make_url

from app.core.config import DatabaseSettings
from app.core.db import create_engine
from app.devstack import StackUrls
from tests.debian import debian_tool
from tests.platform import FAST_SETTINGS, Platform
from tests.support import REPO_ROOT, ProcessGroup, free_port, plain_dsn

pytestmark = pytest.mark.e2e

# What docs/operations.md says to set behind PgBouncer in transaction mode.
BEHIND_PGBOUNCER = {"TASKGATE_DATABASE__STATEMENT_CACHE_SIZE": "0"}


@dataclass
class Bouncer:
    port: int
    database: str
    direct_url: str  # the database on PostgreSQL itself

    @property
    def url(self) -> str:
        """The same database through PgBouncer (two server connections)."""
        return self._through(self.database)

    @property
    def single_url(self) -> str:
        """The same database through PgBouncer with one server connection for every client."""
        return self._through(f"{self.database}_single")

    def _through(self, alias: str) -> str:
        url = make_url(self.direct_url).set(host="127.0.0.1", port=self.port, database=alias)
        return url.render_as_string(hide_password=False)


def _unprivileged() -> list[str]:
    """PgBouncer refuses to run as root: as root, run it as uid 65534 in a user namespace."""
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    assert unshare is not None, "running pgbouncer as root needs unshare (util-linux)"
    return [unshare, "--user", "--map-user=65534", "--map-group=65534"]


@pytest.fixture(scope="module")
async def bouncer(
    stack: StackUrls, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Bouncer]:
    """A fresh database (not migrated) and PgBouncer in transaction mode in front of it."""
    pgbouncer = debian_tool("pgbouncer", "pgbouncer")
    name = f"taskgate_bouncer_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(plain_dsn(stack.database_url, "postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    server = make_url(stack.database_url)
    directory = tmp_path_factory.mktemp("pgbouncer")
    port = free_port()
    (directory / "users.txt").write_text(f'"{server.username}" ""\n')
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"{name} = host=127.0.0.1 port={server.port} dbname={name}\n"
        f"{name}_single = host=127.0.0.1 port={server.port} dbname={name} pool_size=1\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {directory / 'users.txt'}\n"
        "pool_mode = transaction\n"
        "default_pool_size = 2\n"
        "max_client_conn = 500\n"
        # asyncpg sends statement_timeout at startup, which PgBouncer 1.18 refuses otherwise
        # (docs/operations.md: set it on the role instead).
        "ignore_startup_parameters = statement_timeout\n"
        f"logfile = {directory / 'pgbouncer.log'}\n"
        f"pidfile = {directory / 'pgbouncer.pid'}\n"
    )
    group = ProcessGroup()
    group.start(
        [*_unprivileged(), pgbouncer, str(directory / "pgbouncer.ini")],
        env=os.environ,
        log_path=directory / "stdout.log",
    )
    direct = server.set(database=name).render_as_string(hide_password=False)
    running = Bouncer(port=port, database=name, direct_url=direct)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                probe = await asyncpg.connect(plain_dsn(running.url), statement_cache_size=0)
            except (OSError, asyncpg.PostgresError):
                assert time.monotonic() < deadline, (directory / "pgbouncer.log").read_text()
                await asyncio.sleep(0.1)
                continue
            await probe.close()
            break
        yield running
    finally:
        group.stop_all()
        admin = await asyncpg.connect(plain_dsn(stack.database_url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@pytest.fixture(scope="module")
def migrated(bouncer: Bouncer) -> Bouncer:
    """`taskgate migrate` through PgBouncer, as the migration Job runs in production."""
    env = {
        **os.environ,
        "TASKGATE_ENV": "test",
        "TASKGATE_DATABASE__URL": bouncer.url,
        **BEHIND_PGBOUNCER,
    }
    migrated = subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    return bouncer


# One process's work on the ORM path (a pooled engine from the settings, one statement).
ONE_PROCESS = """
import asyncio
from sqlalchemy import text
from app.core.config import get_settings
from app.core.db import create_engine

async def main():
    engine = create_engine(get_settings().database)
    async with engine.connect() as connection:
        await connection.execute(text("SELECT count(*) FROM tasks WHERE status = :s"), {"s": "queued"})
    await engine.dispose()

asyncio.run(main())
"""


def _two_processes(url: str, **env: str) -> list[subprocess.CompletedProcess[str]]:
    """The same work from two processes in turn, through PgBouncer's one server connection: the
    second finds what the first prepared there, as API and worker processes do in production."""
    return [
        subprocess.run(  # noqa: S603 - this interpreter
            [sys.executable, "-c", ONE_PROCESS],
            cwd=REPO_ROOT,
            env={**os.environ, "TASKGATE_ENV": "test", "TASKGATE_DATABASE__URL": url, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for _ in range(2)
    ]


class TestStatementCaches:
    def test_the_default_caches_break_behind_transaction_pooling(self, migrated: Bouncer) -> None:
        first, second = _two_processes(migrated.single_url)

        assert first.returncode == 0, first.stderr
        assert second.returncode != 0
        assert "DuplicatePreparedStatementError" in second.stderr

    def test_without_them_every_process_works(self, migrated: Bouncer) -> None:
        runs = _two_processes(migrated.single_url, **BEHIND_PGBOUNCER)

        assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]


@pytest.fixture
async def bounced_platform(
    migrated: Bouncer,
    processes: ProcessGroup,
    process_env: dict[str, str],
    celery_control: Celery,
    tmp_path: Path,
) -> AsyncIterator[Platform]:
    """API, scheduler and a worker whose every database connection goes through PgBouncer but
    the API's LISTEN, which reaches PostgreSQL directly."""
    engine = create_engine(DatabaseSettings(url=migrated.direct_url))
    platform = Platform(
        processes=processes,
        env={
            **process_env,
            **FAST_SETTINGS,
            "TASKGATE_METRICS__DIR": str(tmp_path / "metrics"),
            "TASKGATE_DATABASE__URL": migrated.url,
            "TASKGATE_DATABASE__LISTEN_URL": migrated.direct_url,
            **BEHIND_PGBOUNCER,
        },
        logs=tmp_path,
        celery=celery_control,
        engine=engine,
    )
    yield platform
    processes.stop_all()
    await engine.dispose()


class TestPlatformBehindPgBouncer:
    async def test_submits_runs_and_wakes_long_polls_through_it(
        self, bounced_platform: Platform
    ) -> None:
        platform = bounced_platform
        await platform.create_project()
        platform.start_api()
        platform.start_scheduler()
        platform.start_worker(concurrency=4)

        task_ids = await platform.submit_many(100, {"type": "echo", "input": {}})
        counts = await platform.wait_terminal(task_ids, timeout_s=60)
        async with httpx.AsyncClient(
            base_url=platform.base_url, headers=platform.headers, timeout=60
        ) as client:
            submitted = await client.post(
                f"/v1/projects/{platform.project_id}/tasks",
                json={"type": "sleep", "input": {"seconds": 1}},
            )
            started = time.monotonic()
            waited = await client.get(f"/v1/tasks/{submitted.json()['id']}?wait=30")
            elapsed = time.monotonic() - started

        assert counts == {"succeeded": 100}
        assert waited.json()["status"] == "succeeded"
        # Woken by NOTIFY on the direct LISTEN connection: a LISTEN through PgBouncer's
        # transaction pool never hears it, and the request would hold the whole 30 s.
        assert elapsed < 10, elapsed
        for log in platform.logs.glob("*.log"):
            assert "prepared statement" not in log.read_text(), log.name
