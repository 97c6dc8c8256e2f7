"""DevStack: PostgreSQL, Valkey and S3 from pip wheels, for `taskgate dev` and the tests."""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from app.devstack import process
from app.devstack.engines import ENGINE_TYPES
from app.devstack.engines.base import Engine
from app.devstack.engines.postgres import Postgres
from app.devstack.engines.seaweedfs import S3_REGION, SeaweedS3
from app.devstack.engines.valkey import Valkey
from app.devstack.errors import EngineError

log = logging.getLogger(__name__)

DATABASE_URL = "TASKGATE_DATABASE__URL"
REDIS_URL = "TASKGATE_REDIS__URL"
S3_ENDPOINT_URL = "TASKGATE_S3__ENDPOINT_URL"
S3_ACCESS_KEY_ID = "TASKGATE_S3__ACCESS_KEY_ID"
S3_SECRET_ACCESS_KEY = "TASKGATE_S3__SECRET_ACCESS_KEY"  # noqa: S105 - a variable name
S3_BUCKET = "TASKGATE_S3__BUCKET"
S3_REGION_NAME = "TASKGATE_S3__REGION"

_DATABASE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


@dataclass(frozen=True)
class StackUrls:
    """Where the engines of a stack answer, and the S3 credentials that go with them."""

    database_url: str
    redis_url: str
    s3_endpoint_url: str
    s3_access_key_id: str
    s3_secret_access_key: str
    s3_bucket: str
    s3_region: str

    def as_env(self) -> dict[str, str]:
        """The settings environment variables that point the application at these engines.

        Empty values are left out: an external S3 given without keys keeps boto3's own lookup.
        """
        env = {
            DATABASE_URL: self.database_url,
            REDIS_URL: self.redis_url,
            S3_ENDPOINT_URL: self.s3_endpoint_url,
            S3_ACCESS_KEY_ID: self.s3_access_key_id,
            S3_SECRET_ACCESS_KEY: self.s3_secret_access_key,
            S3_BUCKET: self.s3_bucket,
            S3_REGION_NAME: self.s3_region,
        }
        return {key: value for key, value in env.items() if value}


class DevStack:
    """Start the engines not given by URL in `environ`, and stop exactly those again.

    Data lives under `data_dir` (`postgres/`, `valkey/`, `s3/`, `logs/`) and survives restarts.
    Engines left running by a crashed earlier run on the same `data_dir` are stopped first.
    """

    ready_timeout_s: ClassVar[float] = 30.0

    def __init__(
        self,
        data_dir: Path,
        *,
        database_name: str = "taskgate",
        bucket: str = "taskgate",
        durable: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if not _DATABASE_NAME.fullmatch(database_name):
            raise ValueError(f"database name must be a plain identifier: {database_name!r}")
        if not _BUCKET_NAME.fullmatch(bucket):
            raise ValueError(f"not a valid S3 bucket name: {bucket!r}")
        self.data_dir = Path(data_dir).absolute()
        self.database_name = database_name
        self.bucket = bucket
        self.durable = durable
        self.pids: dict[str, int] = {}
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._engines: list[Engine] = []
        self._urls: StackUrls | None = None
        self._lock = threading.Lock()  # start/stop
        self._pids_lock = threading.Lock()  # pids and pids.json, written from starter threads

    @property
    def pids_path(self) -> Path:
        """`<data_dir>/pids.json`: the PIDs of the running engines, to clean up after a crash."""
        return self.data_dir / "pids.json"

    @property
    def urls(self) -> StackUrls:
        """The URLs of the started stack."""
        if self._urls is None:
            raise RuntimeError("the stack is not started")
        return self._urls

    def start(self) -> StackUrls:
        """Start the missing engines concurrently and wait until each one answers for real."""
        with self._lock:
            if self._urls is not None:
                return self._urls
            started_at = time.monotonic()
            (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
            self._stop_leftovers()
            cancelled = threading.Event()
            engines = self._engines_to_start(cancelled)
            self._engines = list(engines.values())
            try:
                urls = self._start_all(engines, cancelled)
            except BaseException:
                self._stop_engines()
                raise
            self._urls = self._compose_urls(urls, engines)
            log.info(
                "dev stack ready",
                extra={
                    "data_dir": str(self.data_dir),
                    "engines": sorted(engines),
                    "pids": dict(self.pids),
                    "seconds": round(time.monotonic() - started_at, 3),
                },
            )
            return self._urls

    def stop(self) -> None:
        """Stop the engines this stack started (all at once); safe to call again."""
        with self._lock:
            self._stop_engines()

    def write_env(self, path: Path) -> None:
        """Write the stack's settings as `KEY=value` lines (mode 0600: it holds a secret)."""
        content = "".join(f"{key}={value}\n" for key, value in self.urls.as_env().items())
        scratch = path.with_name(f".{path.name}.tmp")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(content)
        scratch.replace(path)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _engines_to_start(self, cancelled: threading.Event) -> dict[str, Engine]:
        data_dir, durable, on_spawn = self.data_dir, self.durable, self._record_pid
        engines: dict[str, Engine] = {}
        if not self._environ.get(DATABASE_URL):
            engines[Postgres.name] = Postgres(
                data_dir,
                durable=durable,
                on_spawn=on_spawn,
                cancelled=cancelled,
                database_name=self.database_name,
            )
        if not self._environ.get(REDIS_URL):
            engines[Valkey.name] = Valkey(
                data_dir, durable=durable, on_spawn=on_spawn, cancelled=cancelled
            )
        if not self._environ.get(S3_ENDPOINT_URL):
            engines[SeaweedS3.name] = SeaweedS3(
                data_dir,
                durable=durable,
                on_spawn=on_spawn,
                cancelled=cancelled,
                bucket=self.bucket,
            )
        return engines

    def _start_all(self, engines: dict[str, Engine], cancelled: threading.Event) -> dict[str, str]:
        if not engines:
            return {}
        deadline = time.monotonic() + self.ready_timeout_s
        pool = ThreadPoolExecutor(max_workers=len(engines), thread_name_prefix="devstack")
        try:
            futures: dict[Future[str], str] = {
                pool.submit(engine.start, deadline): name for name, engine in engines.items()
            }
            urls: dict[str, str] = {}
            failures: list[Exception] = []
            for future in as_completed(futures):
                try:
                    urls[futures[future]] = future.result()
                except Exception as exc:  # collected: the first one to fail is raised below
                    failures.append(exc)
                    cancelled.set()  # the others stop waiting at once
        except BaseException:
            cancelled.set()
            raise
        finally:
            pool.shutdown(wait=True)
        if failures:
            first = failures[0]
            if isinstance(first, EngineError):
                raise first
            raise EngineError("devstack", f"could not start the engines: {first!r}") from first
        return urls

    def _compose_urls(self, urls: dict[str, str], engines: dict[str, Engine]) -> StackUrls:
        env = self._environ
        s3 = engines.get(SeaweedS3.name)
        if isinstance(s3, SeaweedS3):
            access_key_id = s3.credentials.access_key_id
            secret_access_key = s3.credentials.secret_access_key
            bucket, region = self.bucket, S3_REGION
        else:
            access_key_id = env.get(S3_ACCESS_KEY_ID, "")
            secret_access_key = env.get(S3_SECRET_ACCESS_KEY, "")
            bucket = env.get(S3_BUCKET, self.bucket)
            region = env.get(S3_REGION_NAME, S3_REGION)
        return StackUrls(
            database_url=urls.get(Postgres.name) or env[DATABASE_URL],
            redis_url=urls.get(Valkey.name) or env[REDIS_URL],
            s3_endpoint_url=urls.get(SeaweedS3.name) or env[S3_ENDPOINT_URL],
            s3_access_key_id=access_key_id,
            s3_secret_access_key=secret_access_key,
            s3_bucket=bucket,
            s3_region=region,
        )

    def _stop_engines(self) -> None:
        engines = [engine for engine in self._engines if engine.process is not None]
        for engine in engines:
            engine.signal_stop()
        for engine in engines:
            engine.wait_stopped()
        self._engines = []
        self._urls = None
        with self._pids_lock:
            self.pids = {}
            self.pids_path.unlink(missing_ok=True)

    def _record_pid(self, name: str, pid: int) -> None:
        with self._pids_lock:
            self.pids[name] = pid
            scratch = self.pids_path.with_name(".pids.json.tmp")
            scratch.write_text(json.dumps(self.pids))
            scratch.replace(self.pids_path)

    def _stop_leftovers(self) -> None:
        """Stop engines a crashed earlier run on this data_dir left running."""
        try:
            recorded = json.loads(self.pids_path.read_text())
        except FileNotFoundError:
            return
        except ValueError:
            log.warning("ignoring an unreadable pids.json", extra={"path": str(self.pids_path)})
            recorded = {}
        leftovers = [
            (ENGINE_TYPES[name], pid)
            for name, pid in recorded.items()
            if name in ENGINE_TYPES and isinstance(pid, int)
        ]
        leftovers = [
            (engine_type, pid)
            for engine_type, pid in leftovers
            if process.is_alive(pid) and engine_type.owns(pid, self.data_dir)
        ]
        for engine_type, pid in leftovers:
            log.warning(
                "stopping an engine left running by an earlier run",
                extra={"engine": engine_type.name, "pid": pid},
            )
            process.signal_pid(pid, engine_type.stop_signal)
        for engine_type, pid in leftovers:
            process.wait_pid_gone(pid, timeout_s=engine_type.stop_timeout_s)
        self.pids_path.unlink(missing_ok=True)
