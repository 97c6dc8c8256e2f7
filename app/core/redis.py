"""Redis: one async client per process, TLS (`rediss://`) with a CA bundle when configured."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

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


def create_redis(settings: RedisSettings) -> Redis:
    return Redis.from_url(settings.url, **connection_options(settings))
