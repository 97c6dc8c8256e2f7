"""Database: declarative base, async engine, and `transaction()` — the only place that commits."""

from __future__ import annotations

import enum
import functools
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy.exc
from sqlalchemy import DateTime, Enum, MetaData, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, configure_mappers, mapped_column
from sqlalchemy.orm.instrumentation import ClassManager, manager_of_class
from sqlalchemy.pool import NullPool

from app.core.config import DatabaseSettings

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads this class attribute)
        datetime: DateTime(timezone=True),
        enum.Enum: Enum(enum.Enum, native_enum=False, length=32, validate_strings=True),
    }


ModelT = TypeVar("ModelT", bound=Base)


def detached(model: type[ModelT], values: Mapping[str, Any]) -> ModelT:
    """A transient `model` holding `values`, built without the ORM's per-attribute events (a
    twentieth of the constructor's cost): for objects a hot path builds from a row it wrote or
    read itself, reads and never adds to a session."""
    instance: ModelT = _manager(model).new_instance()
    instance.__dict__.update(values)
    return instance


@functools.cache
def _manager(model: type[Base]) -> ClassManager[Any]:
    # The constructor configures the mappers on first use; this path must do it itself.
    configure_mappers()
    return manager_of_class(model)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utc_now)


def connect_args(settings: DatabaseSettings) -> dict[str, Any]:
    args: dict[str, Any] = {
        "timeout": settings.connect_timeout_s,
        "statement_cache_size": settings.statement_cache_size,
        "server_settings": {
            "application_name": "taskgate",
            "statement_timeout": str(settings.statement_timeout_ms),
        },
    }
    if settings.sslmode == "disable":
        args["ssl"] = False  # asyncpg would otherwise try TLS first on every new connection
    elif settings.sslmode == "require":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        args["ssl"] = context
    elif settings.sslmode in ("verify-ca", "verify-full"):
        context = ssl.create_default_context(cafile=settings.ssl_ca_file)
        context.check_hostname = settings.sslmode == "verify-full"
        args["ssl"] = context
    return args


def _unique_statement_name() -> str:
    return f"__taskgate_{uuid.uuid4().hex}__"


def _driver_statement_cache(settings: DatabaseSettings) -> dict[str, Any]:
    """SQLAlchemy's asyncpg driver keeps prepared statements of its own (by default named
    `__asyncpg_stmt_<n>__`, a per-connection counter that collides on a server connection
    PgBouncer shares): without a cache, each one gets a unique name."""
    if settings.statement_cache_size:
        return {"prepared_statement_cache_size": settings.statement_cache_size}
    return {
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unique_statement_name,
    }


def create_engine(settings: DatabaseSettings, **overrides: Any) -> AsyncEngine:
    """An asyncpg engine with the pool, timeouts and TLS of `settings`."""
    options: dict[str, Any] = {
        "pool_size": settings.pool_size,
        "max_overflow": settings.max_overflow,
        "pool_timeout": settings.pool_timeout_s,
        "pool_pre_ping": settings.pool_pre_ping,
        "pool_recycle": settings.pool_recycle_s,
        "connect_args": {**connect_args(settings), **_driver_statement_cache(settings)},
    }
    options.update(overrides)
    if options.get("poolclass") is NullPool:
        for key in ("pool_size", "max_overflow", "pool_timeout"):
            options.pop(key)
    engine = create_async_engine(make_url(settings.url), **options)
    event.listen(engine.sync_engine, "checkout", _refuse_closed)
    return engine


def _refuse_closed(dbapi_connection: Any, *_: Any) -> None:
    """A pooled connection the server closed (a restart, a failover; the driver saw the socket
    end) is replaced at checkout, not handed to a request to fail as a 503. No round trip: a
    silently dropped connection still takes `pool_pre_ping` to notice."""
    if dbapi_connection.driver_connection.is_closed():
        raise sqlalchemy.exc.DisconnectionError("the server closed this pooled connection")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


AfterCommit = Callable[[], Any]
_AFTER_COMMIT_KEY = "taskgate_after_commit"
_SESSIONMAKER_KEY = "taskgate_sessionmaker"


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run `callback` once the surrounding `transaction()` has committed (never on rollback)."""
    session.info.setdefault(_AFTER_COMMIT_KEY, []).append(callback)


def sessionmaker_of(session: AsyncSession) -> async_sessionmaker[AsyncSession] | None:
    """The sessionmaker whose `transaction()` opened `session` (None for a bare session): after
    commit, follow-up work opens its own short transaction with it."""
    sessionmaker: async_sessionmaker[AsyncSession] | None = session.info.get(_SESSIONMAKER_KEY)
    return sessionmaker


@event.listens_for(Session, "after_soft_rollback")
def _forget_callbacks(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        session.info.pop(_AFTER_COMMIT_KEY, None)


async def run_after_commit(callbacks: list[AfterCommit]) -> None:
    """Run after-commit work in order; a failing callback is logged, the others still run."""
    for callback in callbacks:
        try:
            outcome = callback()
            if hasattr(outcome, "__await__"):
                await outcome
        except Exception:  # after-commit work logs and never undoes a commit
            log.exception("after-commit callback failed", extra={"callback": repr(callback)})


@asynccontextmanager
async def transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """One session and transaction: commit on success, roll back on error, then after-commit work."""
    async with sessionmaker() as session:
        session.info[_SESSIONMAKER_KEY] = sessionmaker
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        callbacks = session.info.pop(_AFTER_COMMIT_KEY, [])
    await run_after_commit(callbacks)
