from __future__ import annotations

from pathlib import Path

from redis.asyncio import SSLConnection, UnixDomainSocketConnection

from app.core.config import RedisSettings
from app.core.redis import connection_options, create_redis


class TestConnectionOptions:
    def test_tls_urls_verify_against_the_configured_ca_bundle(self) -> None:
        settings = RedisSettings(url="rediss://cache:6380/0", ssl_ca_file=Path("/etc/ca.pem"))

        options = connection_options(settings)

        assert options["ssl_ca_certs"] == "/etc/ca.pem"
        assert options["ssl_cert_reqs"] == "required"

    def test_plain_urls_carry_timeouts_and_no_tls_options(self) -> None:
        options = connection_options(RedisSettings(url="redis://cache:6379/0"))

        assert options["socket_timeout"] == 2.0
        assert "ssl_ca_certs" not in options


class TestCreateRedis:
    def test_a_tls_url_keeps_tls_connections_and_their_ca_bundle(self) -> None:
        settings = RedisSettings(url="rediss://cache:6380/0", ssl_ca_file=Path("/etc/ca.pem"))

        pool = create_redis(settings).connection_pool

        assert issubclass(pool.connection_class, SSLConnection)
        assert pool.connection_kwargs["ssl_ca_certs"] == "/etc/ca.pem"

    def test_a_unix_socket_url_keeps_redis_pys_own_connection(self) -> None:
        pool = create_redis(RedisSettings(url="unix:///run/redis.sock")).connection_pool

        assert pool.connection_class is UnixDomainSocketConnection
