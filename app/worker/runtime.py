"""One event loop and one database engine per worker process, rebuilt after a fork.

Celery jobs are sync; they call `run(coro)`, which runs `coro` on the process's loop. The loop
runs in a thread of its own, so the `threads` pool's jobs share it (their attempts overlap:
while one waits on PostgreSQL, another runs) as the `prefork` and `solo` pools' single job does.
Never `asyncio.run()` per job against a pooled engine, never nested loops. The first job of a
process also runs the setup its entry point registered (`on_process_start`;
`app.wiring.wire_workers`): the publisher that enqueues follow-up jobs, and the event
subscribers. The process's engine and loop are disposed of on `worker_process_shutdown`. A warm shutdown
(`worker_shutting_down`, in the main process: where the `threads` and `solo` pools run their
jobs) is noted for the attempts running (`shutdown_requested_at`).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from celery.signals import worker_process_shutdown, worker_shutting_down
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core import metrics
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.worker import enqueue

T = TypeVar("T")


@dataclass
class _Runtime:
    pid: int
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    publisher: enqueue.Publisher | None


ProcessSetup = Callable[[Settings], enqueue.Publisher]

_runtime: _Runtime | None = None
_lock = threading.Lock()
_setup: ProcessSetup | None = None
_shutdown_requested_at: float | None = None


def on_process_start(setup: ProcessSetup) -> None:
    """Run `setup` in each worker process before its first job; it returns the publisher."""
    global _setup
    _setup = setup


def _current() -> _Runtime:
    global _runtime
    with _lock:
        if _runtime is None or _runtime.pid != os.getpid():
            settings = get_settings()
            loop = _new_loop()
            thread = threading.Thread(target=loop.run_forever, name="taskgate-loop", daemon=True)
            thread.start()
            # A connection per job this process runs at once (and one for heartbeats).
            jobs = settings.worker.concurrency if settings.worker.pool == "threads" else 1
            database = settings.database.model_copy(
                update={"pool_size": jobs + 1, "max_overflow": max(2, jobs)}
            )
            engine = create_engine(database)
            metrics.watch_pool(engine, "worker")
            # Follow-up jobs (a finished task's webhooks) are published before the job returns.
            publisher = _setup(settings) if _setup is not None else None
            _runtime = _Runtime(
                os.getpid(), loop, thread, engine, create_sessionmaker(engine), publisher
            )
        return _runtime


def _new_loop() -> asyncio.AbstractEventLoop:
    # uvloop, as the API's uvicorn picks, where it has a wheel: cheaper callbacks and socket
    # reads, about a sixth of a worker's CPU per task (docs/benchmarks.md).
    try:
        import uvloop
    except ImportError:  # pragma: no cover - no uvloop on this platform (Windows, PyPy)
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on this process's loop (from any thread but the loop's)."""
    return asyncio.run_coroutine_threadsafe(coro, _current().loop).result()


def sessionmaker() -> async_sessionmaker[AsyncSession]:
    return _current().sessionmaker


def shutdown() -> None:
    """Dispose of this process's engine and loop (on worker process shutdown)."""
    global _runtime
    if _runtime is not None and _runtime.pid == os.getpid():
        runtime = _runtime
        run(runtime.engine.dispose())
        if runtime.publisher is not None:
            run(runtime.publisher.close())
            enqueue.configure(None)
        runtime.loop.call_soon_threadsafe(runtime.loop.stop)
        runtime.thread.join(timeout=5)
        runtime.loop.close()
    _runtime = None


@worker_process_shutdown.connect
def _dispose_runtime(**_: object) -> None:
    shutdown()


def shutdown_requested_at() -> float | None:
    """When (`time.monotonic()`) this worker was asked to stop; None while it runs on."""
    return _shutdown_requested_at


@worker_shutting_down.connect
def _note_shutdown(**_: object) -> None:
    # Called in a signal handler: it only records the moment, the attempts read it.
    global _shutdown_requested_at
    if _shutdown_requested_at is None:
        _shutdown_requested_at = time.monotonic()
