"""Helpers for tests that run real processes: free ports, bounded waits, process cleanup; and a
client of an API of its own."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from app.core.config import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent


def settings_env(settings: Settings) -> dict[str, str]:
    """`TASKGATE_*` variables that make a child process use the same engines as `settings`."""
    env = {
        "TASKGATE_ENV": settings.env.value,
        "TASKGATE_LOG_JSON": "true",
        "TASKGATE_DATABASE__URL": settings.database.url,
        "TASKGATE_REDIS__URL": settings.redis.url,
        "TASKGATE_S3__BUCKET": settings.s3.bucket,
        "TASKGATE_S3__REGION": settings.s3.region,
        "TASKGATE_RATE_LIMITS__SIGN_IN_PER_IP_PER_MINUTE": str(
            settings.rate_limits.sign_in_per_ip_per_minute
        ),
        "TASKGATE_RATE_LIMITS__REGISTER_PER_IP_PER_MINUTE": str(
            settings.rate_limits.register_per_ip_per_minute
        ),
    }
    if settings.s3.endpoint_url:
        env["TASKGATE_S3__ENDPOINT_URL"] = settings.s3.endpoint_url
    if settings.s3.access_key_id and settings.s3.secret_access_key:
        env["TASKGATE_S3__ACCESS_KEY_ID"] = settings.s3.access_key_id.get_secret_value()
        env["TASKGATE_S3__SECRET_ACCESS_KEY"] = settings.s3.secret_access_key.get_secret_value()
    return env


@contextlib.asynccontextmanager
async def own_api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an API built for `settings` with its lifespan run: its own engine and Redis
    client, so its requests really commit and run at once (not in the test's transaction)."""
    from app.main import create_app  # the whole app: only for the tests that use it

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t.test") as client:
            yield client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(
    condition: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.1, what: str
) -> None:
    """Poll `condition` until it holds; fail after `timeout_s` naming `what` was awaited."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class ProcessGroup:
    """Children started in their own sessions, so stopping one stops everything it spawned."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log_path: Path,
        stderr_path: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv`; its stdout and stderr go to `log_path`, or stderr to `stderr_path`."""
        log = log_path.open("wb")
        errors = stderr_path.open("wb") if stderr_path is not None else None
        try:
            child = subprocess.Popen(  # noqa: S603 (argv built by the tests)
                list(argv),
                cwd=REPO_ROOT,
                env=dict(env),
                stdout=log,
                stderr=errors if errors is not None else subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
            if errors is not None:
                errors.close()
        self.children.append(child)
        return child

    def start_python(
        self, *args: str, env: Mapping[str, str], log_path: Path
    ) -> subprocess.Popen[bytes]:
        return self.start([sys.executable, *args], env=env, log_path=log_path)

    def stop(self, child: subprocess.Popen[bytes], *, timeout_s: float = 15.0) -> None:
        if child.poll() is None:
            _signal_group(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _signal_group(child.pid, signal.SIGKILL)
                child.wait(timeout=timeout_s)
        # Whatever the child left in its session (a forked pool process) goes too.
        _signal_group(child.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for child in reversed(self.children):
            self.stop(child)
        self.children.clear()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def plain_dsn(database_url: str, database: str | None = None) -> str:
    """A libpq DSN (no SQLAlchemy driver) for `database_url`, optionally another database."""
    url = make_url(database_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def run_alembic(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the stock `alembic` command from the repo root against `database_url`."""
    env = {**os.environ, "TASKGATE_DATABASE__URL": database_url}
    result = subprocess.run(  # noqa: S603 (fixed argv)
        [sys.executable, "-m", "alembic", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"alembic {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result
