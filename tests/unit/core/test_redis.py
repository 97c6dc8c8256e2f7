from __future__ import annotations

from pathlib import Path

from app.core.config import RedisSettings
from app.core.redis import connection_options


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
