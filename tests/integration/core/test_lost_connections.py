"""Pooled connections that PostgreSQL closed (a restart, a terminated backend): replaced when
taken from the pool, and a 503, never a 500, when one closes under a request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.core.errors import is_database_unavailable
from app.core.sql import driver_connection


@pytest.fixture
async def one_connection(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine whose pool holds one connection, so the next checkout is the one it had."""
    engine = create_engine(settings.database.model_copy(update={"pool_size": 1, "max_overflow": 0}))
    yield engine
    await engine.dispose()


async def _terminate(engine: AsyncEngine, pid: int) -> None:
    """What a PostgreSQL shutdown does to each of its clients' connections."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})


async def _until_closed(driver: asyncpg.Connection) -> None:
    for _ in range(100):
        if driver.is_closed():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the driver did not see its connection end within 2 s")


async def test_a_pooled_connection_the_server_closed_is_replaced_at_checkout(
    one_connection: AsyncEngine, engine: AsyncEngine
) -> None:
    async with one_connection.connect() as connection:
        pid = await connection.scalar(text("SELECT pg_backend_pid()"))
        raw = await connection.get_raw_connection()
        driver: asyncpg.Connection = raw.driver_connection
    await _terminate(engine, pid)
    await _until_closed(driver)

    async with one_connection.connect() as connection:
        replaced = await connection.scalar(text("SELECT pg_backend_pid()"))

    assert replaced != pid


async def test_a_connection_closed_under_a_hot_path_statement_is_lost_not_misused(
    one_connection: AsyncEngine, engine: AsyncEngine
) -> None:
    sessionmaker = create_sessionmaker(one_connection)

    async def query_after_the_server_left() -> None:
        async with driver_connection(sessionmaker) as driver:
            await _terminate(engine, await driver.fetchval("SELECT pg_backend_pid()"))
            await _until_closed(driver)
            await driver.fetchval("SELECT 1")  # asyncpg: InterfaceError('connection is closed')

    with pytest.raises(asyncpg.exceptions.ConnectionDoesNotExistError) as raised:
        await query_after_the_server_left()

    assert is_database_unavailable(raised.value)  # a 503 database-unavailable
    async with driver_connection(sessionmaker) as driver:  # the pool was disposed of
        assert await driver.fetchval("SELECT 1") == 1
