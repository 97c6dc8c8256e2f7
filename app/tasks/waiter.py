"""Long-poll wake-ups: one PostgreSQL LISTEN connection per API process.

A task's terminal transition sends NOTIFY in its own transaction, so a waiter is woken exactly
when the result is committed. While the listener is disconnected, waiters re-read the task once a
second instead (degraded, never wrong).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import asyncpg
from sqlalchemy.engine import make_url

from app.core.config import DatabaseSettings
from app.core.db import connect_args
from app.tasks.repository import FINISHED_CHANNEL

log = logging.getLogger(__name__)

DEGRADED_POLL_S = 1.0


class TaskWaiter:
    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        self._waiters: dict[uuid.UUID, set[asyncio.Event]] = defaultdict(set)
        self._connection: asyncpg.Connection | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def listening(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def start(self) -> None:
        self._keeper = asyncio.create_task(self._keep_listening())

    async def stop(self) -> None:
        self._closing = True
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)

    async def _keep_listening(self) -> None:
        url = make_url(self.settings.listen_url or self.settings.url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        options = connect_args(self.settings)
        options.pop("server_settings", None)
        while not self._closing:
            try:
                connection = await asyncpg.connect(dsn, **options)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("task listener cannot connect", extra={"error": repr(exc)})
                await asyncio.sleep(1)
                continue
            try:
                closed = asyncio.Event()
                connection.add_termination_listener(lambda _connection, done=closed: done.set())
                await connection.add_listener(FINISHED_CHANNEL, self._notified)
                self._connection = connection
                # Anything finished while we were away: wake everyone to re-read once.
                self._wake_all()
                await closed.wait()
                log.warning("task listener disconnected; waiters poll until it reconnects")
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning("task listener failed", extra={"error": repr(exc)})
            finally:
                self._connection = None
                if not connection.is_closed():
                    connection.terminate()  # synchronous: safe while being cancelled
            await asyncio.sleep(1)

    def _notified(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            task_id = uuid.UUID(payload)
        except ValueError:
            return
        for event in self._waiters.get(task_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    @contextlib.asynccontextmanager
    async def subscription(self, task_id: uuid.UUID) -> AsyncIterator[asyncio.Event]:
        """An event set when the task may have finished; subscribe before reading the task."""
        event = asyncio.Event()
        self._waiters[task_id].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(task_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[task_id]

    async def wait(self, event: asyncio.Event, timeout_s: float) -> None:
        """Until woken or `timeout_s`; at most one poll interval while not listening."""
        if not self.listening:
            timeout_s = min(timeout_s, DEGRADED_POLL_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=timeout_s)
        event.clear()
