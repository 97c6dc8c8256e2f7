"""Hot-path SQL: hand-written statements sent straight to asyncpg, outside the ORM.

The ORM's unit of work and statement compilation cost far more CPU than PostgreSQL takes to run
a short statement. On the few hot paths (submit, a worker attempt), one hand-written statement
does what several ORM flushes did, on a connection from the same pool (`driver_connection`);
`Params` numbers the placeholders as the pieces of a statement are put together.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from app.core.db import AfterCommit, run_after_commit

CONNECTION_LOST = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,  # its protocol broken by the server's goodbye
    ConnectionError,
)


def json_text(value: Any) -> str:
    """`value` as JSON text, as a jsonb parameter takes it."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # an integer beyond 64 bits: the engine's own JSON serializer
        return json.dumps(value, separators=(",", ":"))


class Params:
    """Placeholders for one statement: `p(value)` keeps `value` and returns its placeholder, `$n`
    for asyncpg or `:pn` for SQLAlchemy's `text()` (`named=True`)."""

    def __init__(self, *, named: bool = False) -> None:
        self.named = named
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f":p{len(self.values)}" if self.named else f"${len(self.values)}"

    def json(self, value: Any) -> str:
        """A jsonb parameter (sent as its JSON text)."""
        return f"CAST({self(json_text(value))} AS jsonb)"

    def unnest(self, columns: Mapping[str, tuple[str, Sequence[Any]]]) -> str:
        """`unnest(…) AS item(…)`: a row per element of the parallel arrays `columns` (name ->
        SQL type of one element, values), with one statement text whatever their length."""
        arrays = ", ".join(
            f"CAST({self(list(values))} AS {kind}[])" for kind, values in columns.values()
        )
        return f"unnest({arrays}) AS item({', '.join(columns)})"

    def as_dict(self) -> dict[str, Any]:
        return {f"p{index}": value for index, value in enumerate(self.values, start=1)}


@asynccontextmanager
async def driver_connection(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[asyncpg.Connection]:
    """A pooled asyncpg connection with no transaction open: each statement commits by itself
    (one statement is atomic), so a hot path that needs one statement pays one round trip."""
    bind = sessionmaker.kw["bind"]
    if isinstance(bind, AsyncConnection):
        # A sessionmaker bound to one connection (a test's, in a transaction rolled back at its
        # end): the statement runs there, in a savepoint, as a session of it would.
        raw = await bind.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
        async with driver.transaction():
            yield driver
        return
    # A pooled connection the server or the network closed is replaced at checkout
    # (`db.create_engine`), so the statement below is sent on a live one.
    async with bind.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        try:
            yield driver
        except CONNECTION_LOST as exc:
            closed = isinstance(exc, asyncpg.exceptions.InterfaceError)
            if closed and not driver.is_closed():
                raise  # a misuse of a live connection, not a lost one
            # The server went away (a restart, a failover): no connection of this pool is worth
            # keeping, as SQLAlchemy does when a session finds one dead. The error stays a 503.
            await connection.invalidate()
            await bind.dispose()
            if closed:
                # Taken from the pool already closed by the server's going: to the caller and
                # the error handler as lost as one that broke during its statement.
                raise asyncpg.exceptions.ConnectionDoesNotExistError(str(exc)) from exc
            raise


async def driver_of(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under `session`, in its transaction (begun if need be): hand-written
    statements there commit or roll back with the session's `transaction()`."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    adapter: Any = raw.dbapi_connection
    # SQLAlchemy's asyncpg adapter sends BEGIN lazily, with its first statement: without this, a
    # statement sent straight to asyncpg would commit by itself, outside the transaction.
    # The adapter has no public way to begin.
    if adapter._transaction is None:
        await adapter._start_transaction()
    driver: asyncpg.Connection = raw.driver_connection
    return driver


@asynccontextmanager
async def driver_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[tuple[asyncpg.Connection, list[AfterCommit]]]:
    """A transaction on a pooled asyncpg connection, without an ORM session: yields the
    connection and a list to append after-commit work to (run once it has committed, in order,
    as `transaction()` runs its `after_commit` callbacks)."""
    later: list[AfterCommit] = []
    async with driver_connection(sessionmaker) as driver, driver.transaction():
        yield driver, later
    await run_after_commit(later)
