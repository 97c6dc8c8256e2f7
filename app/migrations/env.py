"""Alembic environment: async, reading the database URL from the taskgate settings.

A run takes a transaction-scoped advisory lock before it reads the current revision, so two
runs at once (two deploys, a Job and an operator) take turns: the second finds the revisions
applied and does nothing. Its statements wait at most `migration_lock_timeout_ms` for a lock:
an ALTER queued behind a long transaction would hold up every request on that table."""

from __future__ import annotations

import asyncio
import logging.config

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from app.core.config import DatabaseSettings, get_settings
from app.core.db import create_engine
from app.migrations import MIGRATION_LOCK_KEY
from app.models import Base

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata

# Transaction-scoped throughout (`set_config(…, true)`, the `xact` lock), so a run behaves the
# same through PgBouncer in transaction mode. The wait for the advisory lock is bounded by the
# statement timeout only: the other run may take a while.
_WAIT_FOR_OTHER_RUNS = text(
    "select set_config('statement_timeout', :statement_timeout, true),"
    " set_config('lock_timeout', '0', true)"
)
_TAKE_THE_LOCK = text("select pg_advisory_xact_lock(:key)")
_BOUND_LOCK_WAITS = text("select set_config('lock_timeout', :lock_timeout, true)")


def _database_settings() -> DatabaseSettings:
    settings = get_settings().database
    url = config.attributes.get("database_url")
    return settings.model_copy(update={"url": url}) if url else settings


def run_migrations_offline() -> None:
    context.configure(
        url=_database_settings().url,
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _serialize(connection: Connection, settings: DatabaseSettings) -> None:
    """Wait for any other run to commit, then bound this run's lock waits."""
    connection.execute(
        _WAIT_FOR_OTHER_RUNS,
        {"statement_timeout": f"{settings.migration_statement_timeout_ms}ms"},
    )
    connection.execute(_TAKE_THE_LOCK, {"key": MIGRATION_LOCK_KEY})
    connection.execute(
        _BOUND_LOCK_WAITS, {"lock_timeout": f"{settings.migration_lock_timeout_ms}ms"}
    )


def _run(connection: Connection, settings: DatabaseSettings) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        _serialize(connection, settings)  # before Alembic reads the current revision
        context.run_migrations()


async def run_migrations_online() -> None:
    settings = _database_settings()
    engine = create_engine(settings, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run, settings)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
