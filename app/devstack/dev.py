"""`taskgate dev`: embedded engines, migrations, then the API, a worker and the scheduler."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from app.core.multiprocess import wipe
from app.devstack.errors import EngineError
from app.devstack.stack import DevStack, StackUrls
from app.devstack.supervisor import ChildSpec, Supervisor

log = logging.getLogger(__name__)

_MIGRATE_TIMEOUT_S = 300.0
_POLL_INTERVAL_S = 0.5

LOOPBACK_WEBHOOKS = "TASKGATE_WEBHOOKS__ALLOW_LOOPBACK"
METRICS_DIR = "TASKGATE_METRICS__DIR"

_SignalHandler = Callable[[int, FrameType | None], object] | int | None


def run_dev(
    *, data_dir: Path, host: str, port: int, api_workers: int, worker_processes: int
) -> int:
    """Run the whole platform locally until Ctrl-C; return the process exit code."""
    data_dir = data_dir.absolute()
    stop_requested = threading.Event()
    previous = _install_signal_handlers(stop_requested)
    stack = DevStack(data_dir, durable=True)
    supervisor: Supervisor | None = None
    try:
        try:
            urls = stack.start()
        except EngineError as exc:
            log.error("the engines did not start", extra={"engine": exc.engine})
            print(f"taskgate dev: {exc}", file=sys.stderr, flush=True)  # noqa: T201 - for the user
            return 1
        env_file = data_dir / "env"
        stack.write_env(env_file)
        os.environ.update(urls.as_env())
        child_env = dict(os.environ)
        # Webhooks to receivers on this machine (http://127.0.0.1:…); private networks stay refused.
        child_env.setdefault(LOOPBACK_WEBHOOKS, "true")
        # One metrics directory for the API's and workers' processes, empty at each start.
        child_env.setdefault(METRICS_DIR, str(data_dir / "metrics"))
        wipe(Path(child_env[METRICS_DIR]))
        if stop_requested.is_set():
            return 0
        returncode = _migrate(child_env)
        if stop_requested.is_set():
            return 0  # Ctrl-C reached the migration too: not a failure to report
        if returncode != 0:
            log.error("migrations failed", extra={"returncode": returncode})
            return returncode if returncode > 0 else 1
        supervisor = Supervisor(
            _child_specs(
                child_env,
                host=host,
                port=port,
                api_workers=api_workers,
                worker_processes=worker_processes,
            ),
            log=log,
        )
        supervisor.start()
        _announce(
            urls,
            host=host,
            port=port,
            env_file=env_file,
            data_dir=data_dir,
            loopback_webhooks=child_env[LOOPBACK_WEBHOOKS].lower() in ("1", "true", "yes", "on"),
        )
        while not stop_requested.wait(_POLL_INTERVAL_S):
            supervisor.poll()
        log.info("stopping the dev platform")
        return 0
    finally:
        if supervisor is not None:
            supervisor.stop()
        stack.stop()
        _restore_signal_handlers(previous)


def _install_signal_handlers(stop_requested: threading.Event) -> dict[int, _SignalHandler]:
    def request_stop(signum: int, frame: FrameType | None) -> None:
        del signum, frame  # only sets a flag: the main loop does the stopping (and the logging)
        stop_requested.set()

    previous: dict[int, _SignalHandler] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, request_stop)
    return previous


def _restore_signal_handlers(previous: dict[int, _SignalHandler]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _migrate(env: dict[str, str]) -> int:
    # A child process, like production: settings come from the environment we just wrote.
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "app.cli", "migrate"],
            env=env,
            timeout=_MIGRATE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        log.error("migrations timed out", extra={"timeout_s": _MIGRATE_TIMEOUT_S})
        return 1
    return completed.returncode


def _child_specs(
    env: dict[str, str],
    *,
    host: str,
    port: int,
    api_workers: int,
    worker_processes: int,
) -> list[ChildSpec]:
    cli = [sys.executable, "-m", "app.cli"]
    # One worker process per core, each running `worker.concurrency` jobs at once (threads pool).
    workers = [
        ChildSpec(f"worker-{index}", [*cli, "worker", "--hostname", f"dev-worker-{index}@%h"], env)
        for index in range(1, worker_processes + 1)
    ]
    return [
        ChildSpec(
            "api",
            [*cli, "api", "--host", host, "--port", str(port), "--workers", str(api_workers)],
            env,
        ),
        *workers,
        ChildSpec("scheduler", [*cli, "scheduler"], env),
    ]


def _announce(
    urls: StackUrls,
    *,
    host: str,
    port: int,
    env_file: Path,
    data_dir: Path,
    loopback_webhooks: bool,
) -> None:
    api = f"http://{host}:{port}"
    lines = [
        "",
        "taskgate dev is running (Ctrl-C to stop)",
        f"  API          {api}",
        f"  API docs     {api}/docs",
        f"  PostgreSQL   {urls.database_url}",
        f"  Redis        {urls.redis_url}",
        f"  S3           {urls.s3_endpoint_url} (bucket {urls.s3_bucket})",
        f"  env file     {env_file}   (set -a; . {env_file}; set +a)",
        f"  data dir     {data_dir}",
        f"  metrics      {api}/metrics   (every process of this platform)",
        "  webhooks     "
        + (
            f"loopback receivers allowed ({LOOPBACK_WEBHOOKS}=true; dev only)"
            if loopback_webhooks
            else "public receivers only"
        ),
        "",
    ]
    # The one user-facing output of `taskgate dev`: a banner for the human at the terminal.
    print("\n".join(lines), flush=True)  # noqa: T201
