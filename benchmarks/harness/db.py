"""Read what the processes wrote: PostgreSQL (tasks, events) and Redis (queue depths), synchronously."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
import redis
from sqlalchemy.engine import make_url


def plain_dsn(database_url: str, *, database: str | None = None) -> str:
    """`postgresql+asyncpg://…` (the app's form) as a libpq DSN, optionally for another database."""
    url = make_url(database_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


class Postgres:
    """One connection on a private event loop; each call is one query, run to completion."""

    def __init__(self, dsn: str) -> None:
        self._runner = asyncio.Runner()
        self._connection: Any = self._runner.run(asyncpg.connect(dsn, timeout=10))

    def fetch(self, query: str, *args: object) -> list[Any]:
        rows: list[Any] = self._runner.run(self._connection.fetch(query, *args, timeout=60))
        return rows

    def value(self, query: str, *args: object) -> Any:
        return self._runner.run(self._connection.fetchval(query, *args, timeout=60))

    def execute(self, query: str, *args: object) -> None:
        self._runner.run(self._connection.execute(query, *args, timeout=60))

    def close(self) -> None:
        try:
            self._runner.run(self._connection.close(timeout=5))
        finally:
            self._runner.close()


def create_database(admin_dsn: str, name: str) -> None:
    """CREATE DATABASE `name` (a plain identifier chosen by the harness)."""

    async def create() -> None:
        connection = await asyncpg.connect(admin_dsn, timeout=10)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())


class Broker:
    """A Celery broker database on the bench's own Redis: queue lengths and unacked messages."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, socket_timeout=5)

    def pending(self, queues: Sequence[str]) -> int:
        """Messages waiting in `queues` plus those delivered but not yet acknowledged."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
        pipe.hlen("unacked")
        return sum(int(n) for n in pipe.execute())

    def waiting(self, queues: Sequence[str]) -> int:
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(queue)
        return sum(int(n) for n in pipe.execute())

    def purge(self, queues: Sequence[str]) -> None:
        """Drop the waiting and unacked messages of this broker database (the peer's own)."""
        self.client.delete(*queues, "unacked", "unacked_index", "unacked_mutex")

    def close(self) -> None:
        self.client.close()
