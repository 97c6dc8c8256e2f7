"""Redis: one async client per process, TLS (`rediss://`) with a CA bundle when configured."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.asyncio import Connection, Redis, SSLConnection

from app.core.config import RedisSettings


def connection_options(settings: RedisSettings) -> dict[str, Any]:
    """Keyword arguments for redis-py that carry timeouts and TLS verification."""
    options: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.socket_timeout_s,
        "max_connections": settings.max_connections,
        "health_check_interval": 30,
    }
    if settings.url.startswith("rediss://") and settings.ssl_ca_file is not None:
        options["ssl_ca_certs"] = str(settings.ssl_ca_file)
        options["ssl_cert_reqs"] = "required"
    return options


async def _forget_if_reset(connection: Connection) -> None:
    """Disconnect `connection` if the server or the network closed it while it sat in the pool:
    sending then reconnects. (On uvloop, as every process runs, a write on a closed transport is
    a RuntimeError that redis-py passes on as is, neither a Redis error nor retried.)"""
    writer = connection._writer
    if writer is not None and writer.transport.is_closing():
        await connection.disconnect(nowait=True)


class _ForgetsReset(Connection):
    """A connection that checks its transport before each send (`_forget_if_reset`)."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        await _forget_if_reset(self)
        await super().send_packed_command(command, check_health)


class _Connection(_ForgetsReset):
    pass


class _SSLConnection(_ForgetsReset, SSLConnection):
    pass


_CONNECTION_CLASSES: dict[str, type[Connection]] = {
    "redis": _Connection,
    "rediss": _SSLConnection,
}


def create_redis(settings: RedisSettings) -> Redis:
    options = connection_options(settings)
    scheme = settings.url.partition("://")[0]
    if scheme in _CONNECTION_CLASSES:  # a unix:// socket keeps redis-py's own
        options["connection_class"] = _CONNECTION_CLASSES[scheme]
    return Redis.from_url(settings.url, **options)
