"""DevStack against the real engines: PostgreSQL, Valkey and SeaweedFS from their wheels."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis
from botocore.exceptions import ClientError

from app.devstack import DevStack, EngineError, StackUrls
from app.devstack.engines.postgres import postgres_bin_dir
from app.devstack.process import is_alive
from tests.integration.devstack.conftest import client_for, processes_in

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

# "A few seconds": a stop never waits out a 10 s grace, whatever state an engine is in.
STOP_WITHIN_S = 5.0
ONLY_S3 = {"TASKGATE_DATABASE__URL": "x", "TASKGATE_REDIS__URL": "x"}


def plain_dsn(urls: StackUrls) -> str:
    return urls.database_url.replace("+asyncpg", "", 1)


def psql(urls: StackUrls, sql: str) -> str:
    """Run SQL through the wheel's psql (sync, so fixtures need no event loop)."""
    url = urlsplit(urls.database_url)
    result = subprocess.run(  # noqa: S603 (fixed argv)
        [
            *(str(postgres_bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(url.port)),
            *("-U", "postgres", "-d", url.path.lstrip("/"), "-v", "ON_ERROR_STOP=1", "-tAc", sql),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


class TestStart:
    async def test_postgres_answers_queries_on_the_application_database(
        self, devstack: DevStack
    ) -> None:
        connection = await asyncpg.connect(plain_dsn(devstack.urls))
        try:
            answer = await connection.fetchval("SELECT 1")
            database = await connection.fetchval("SELECT current_database()")
        finally:
            await connection.close()

        assert answer == 1
        assert database == "taskgate"

    def test_valkey_answers_ping(self, devstack: DevStack) -> None:
        with redis.Redis.from_url(devstack.urls.redis_url) as client:
            assert client.ping() is True

    def test_s3_stores_and_reads_back_an_object(self, devstack: DevStack, s3: S3Client) -> None:
        s3.put_object(Bucket=devstack.urls.s3_bucket, Key="hello.txt", Body=b"hello")

        body = s3.get_object(Bucket=devstack.urls.s3_bucket, Key="hello.txt")["Body"]
        try:
            assert body.read() == b"hello"
        finally:
            body.close()

    def test_s3_refuses_a_wrong_secret(self, devstack: DevStack) -> None:
        client = client_for(devstack.urls, secret="not-the-secret")
        try:
            with pytest.raises(ClientError) as raised:
                client.put_object(Bucket=devstack.urls.s3_bucket, Key="x", Body=b"x")
        finally:
            client.close()

        assert raised.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    def test_engines_listen_on_localhost_only(self, devstack: DevStack) -> None:
        urls = devstack.urls

        assert "@127.0.0.1:" in urls.database_url
        assert urls.redis_url.startswith("redis://127.0.0.1:")
        assert urls.s3_endpoint_url.startswith("http://127.0.0.1:")

    def test_records_each_engine_pid_in_pids_json(self, devstack: DevStack) -> None:
        recorded = json.loads((devstack.data_dir / "pids.json").read_text())

        assert recorded == devstack.pids
        assert set(recorded) == {"postgres", "valkey", "s3"}
        assert all(is_alive(pid) for pid in recorded.values())

    def test_write_env_writes_the_settings_readable_by_the_owner_only(
        self, devstack: DevStack, tmp_path: Path
    ) -> None:
        path = tmp_path / "env"

        devstack.write_env(path)

        lines = dict(line.split("=", 1) for line in path.read_text().splitlines())
        assert lines == devstack.urls.as_env()
        assert lines["TASKGATE_S3__BUCKET"] == "taskgate"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


@dataclass(frozen=True)
class Restart:
    first_pids: dict[str, int]
    urls: StackUrls
    data_dir: Path


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restart]:
    """A durable stack that stored a row, a key and an object, was stopped and started again."""
    data_dir = tmp_path_factory.mktemp("restart")
    stack = DevStack(data_dir, durable=True, environ={})
    first = stack.start()
    psql(first, "CREATE TABLE kept (value text); INSERT INTO kept VALUES ('row')")
    with redis.Redis.from_url(first.redis_url) as client:
        client.set("kept", "key")
    s3 = client_for(first)
    try:
        s3.put_object(Bucket=first.s3_bucket, Key="kept.txt", Body=b"object")
    finally:
        s3.close()
    first_pids = dict(stack.pids)
    stack.stop()
    stack.stop()  # a second stop is a no-op

    stack.start()
    yield Restart(first_pids=first_pids, urls=stack.urls, data_dir=data_dir)
    stack.stop()


class TestStop:
    def test_leaves_no_engine_process_behind(self, restarted: Restart) -> None:
        assert set(restarted.first_pids) == {"postgres", "valkey", "s3"}
        assert not any(is_alive(pid) for pid in restarted.first_pids.values())

    def test_leaves_no_process_in_the_data_dir(self, tmp_path: Path) -> None:
        stack = DevStack(tmp_path, durable=False, environ={"TASKGATE_S3__ENDPOINT_URL": "x"})
        stack.start()
        assert processes_in(tmp_path)

        stack.stop()

        assert processes_in(tmp_path) == []
        assert stack.pids == {}
        assert not (tmp_path / "pids.json").exists()

    def test_ends_within_seconds_right_after_the_engines_are_ready(self, tmp_path: Path) -> None:
        stack = DevStack(tmp_path, durable=True, environ={})
        stack.start()
        pids = dict(stack.pids)
        started_at = time.monotonic()

        stack.stop()

        assert time.monotonic() - started_at < STOP_WITHIN_S
        assert not any(is_alive(pid) for pid in pids.values())

    def test_kills_an_s3_server_that_does_not_act_on_its_stop_signal(self, tmp_path: Path) -> None:
        stack = DevStack(tmp_path, durable=False, environ=ONLY_S3)
        stack.start()
        pid = stack.pids["s3"]
        # Frozen, it acts on no signal but SIGKILL, like a weed still starting its components.
        os.kill(pid, signal.SIGSTOP)
        started_at = time.monotonic()

        stack.stop()

        assert time.monotonic() - started_at < STOP_WITHIN_S
        assert not is_alive(pid)
        assert processes_in(tmp_path) == []

    def test_a_killed_s3_server_keeps_the_objects_it_acknowledged(self, tmp_path: Path) -> None:
        keys = [f"acknowledged-{index}.txt" for index in range(20)]
        stack = DevStack(tmp_path, durable=True, environ=ONLY_S3)
        urls = stack.start()
        s3 = client_for(urls)
        try:
            for key in keys:
                s3.put_object(Bucket=urls.s3_bucket, Key=key, Body=key.encode())
        finally:
            s3.close()
        os.kill(stack.pids["s3"], signal.SIGKILL)  # what a stop escalates to, at once
        stack.stop()

        with DevStack(tmp_path, durable=True, environ=ONLY_S3) as restarted:
            s3 = client_for(restarted.urls)
            try:
                stored = [read_object(s3, restarted.urls.s3_bucket, key) for key in keys]
            finally:
                s3.close()

        assert stored == [key.encode() for key in keys]


def read_object(s3: S3Client, bucket: str, key: str) -> bytes:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    try:
        return body.read()
    finally:
        body.close()


class TestRestart:
    async def test_keeps_a_table_row(self, restarted: Restart) -> None:
        connection = await asyncpg.connect(plain_dsn(restarted.urls))
        try:
            assert await connection.fetchval("SELECT value FROM kept") == "row"
        finally:
            await connection.close()

    def test_keeps_a_redis_key(self, restarted: Restart) -> None:
        with redis.Redis.from_url(restarted.urls.redis_url) as client:
            assert client.get("kept") == b"key"

    def test_keeps_an_s3_object_and_its_credentials(self, restarted: Restart) -> None:
        s3 = client_for(restarted.urls)
        try:
            body = s3.get_object(Bucket=restarted.urls.s3_bucket, Key="kept.txt")["Body"]
            try:
                assert body.read() == b"object"
            finally:
                body.close()
        finally:
            s3.close()

    def test_starts_new_processes(self, restarted: Restart) -> None:
        pids = json.loads((restarted.data_dir / "pids.json").read_text())

        assert set(pids) == set(restarted.first_pids)
        assert all(pids[name] != restarted.first_pids[name] for name in pids)


class TestExternalEngines:
    def test_an_engine_given_by_url_is_not_started_and_its_settings_pass_through(
        self, devstack: DevStack, tmp_path: Path
    ) -> None:
        external = devstack.urls
        environ = {
            key: value
            for key, value in external.as_env().items()
            if key.startswith(("TASKGATE_REDIS__", "TASKGATE_S3__"))
        }

        with DevStack(tmp_path, database_name="other", environ=environ) as stack:
            urls = stack.urls
            pids = dict(stack.pids)

        assert set(pids) == {"postgres"}
        assert urls.database_url.endswith("/other")
        assert urls.redis_url == external.redis_url
        assert urls.s3_endpoint_url == external.s3_endpoint_url
        assert urls.s3_access_key_id == external.s3_access_key_id
        assert urls.s3_secret_access_key == external.s3_secret_access_key
        assert (urls.s3_bucket, urls.s3_region) == (external.s3_bucket, external.s3_region)
        assert not (tmp_path / "valkey").exists()
        assert not (tmp_path / "s3").exists()

    def test_nothing_is_started_when_every_engine_is_given(self, tmp_path: Path) -> None:
        environ = {
            "TASKGATE_DATABASE__URL": "postgresql+asyncpg://u@db.example:5432/app",
            "TASKGATE_REDIS__URL": "redis://cache.example:6379/1",
            "TASKGATE_S3__ENDPOINT_URL": "https://s3.example",
        }

        with DevStack(tmp_path, environ=environ) as stack:
            urls, pids = stack.urls, dict(stack.pids)

        assert pids == {}
        assert urls.database_url == environ["TASKGATE_DATABASE__URL"]
        assert urls.redis_url == environ["TASKGATE_REDIS__URL"]
        assert (urls.s3_bucket, urls.s3_region) == ("taskgate", "us-east-1")


class TestFailures:
    def test_an_engine_that_cannot_start_raises_with_its_log_and_stops_the_others(
        self, tmp_path: Path
    ) -> None:
        pgdata = tmp_path / "postgres" / "data"
        pgdata.mkdir(parents=True)
        (pgdata / "PG_VERSION").write_text("7\n")  # a cluster this server cannot read
        stack = DevStack(tmp_path, durable=False, environ={"TASKGATE_S3__ENDPOINT_URL": "x"})

        with pytest.raises(EngineError) as raised:
            stack.start()

        assert raised.value.engine == "postgres"
        assert "postgresql.conf" in raised.value.log_tail  # the server's own complaint
        assert processes_in(tmp_path) == []
        assert stack.pids == {}

    def test_engines_still_starting_when_another_fails_are_stopped_within_seconds(
        self, tmp_path: Path
    ) -> None:
        pgdata = tmp_path / "postgres" / "data"
        pgdata.mkdir(parents=True)
        (pgdata / "PG_VERSION").write_text("7\n")
        stack = DevStack(tmp_path, durable=False, environ={})
        started_at = time.monotonic()

        with pytest.raises(EngineError):
            stack.start()

        assert time.monotonic() - started_at < STOP_WITHIN_S
        assert processes_in(tmp_path) == []


class TestLeftovers:
    def test_engines_of_a_crashed_run_are_stopped_before_starting(self, tmp_path: Path) -> None:
        environ = {"TASKGATE_S3__ENDPOINT_URL": "x"}
        crashed = DevStack(tmp_path, durable=False, environ=environ)
        crashed.start()
        old_pids = dict(crashed.pids)
        try:
            started_at = time.monotonic()
            with DevStack(tmp_path, durable=False, environ=environ) as stack:
                new_pids = dict(stack.pids)
                elapsed = time.monotonic() - started_at
        finally:
            crashed.stop()  # reaps the children it spawned; they are already gone

        assert set(old_pids) == {"postgres", "valkey"}
        assert not any(is_alive(pid) for pid in old_pids.values())
        assert set(new_pids) == set(old_pids)
        assert not set(new_pids.values()) & set(old_pids.values())
        assert elapsed < 15
