from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import PLACEHOLDER_SECRET, Settings


class TestSettings:
    def test_nested_groups_are_read_from_double_underscore_variables(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TASKGATE_DATABASE__URL", "postgresql+asyncpg://db.internal/tg")
        monkeypatch.setenv("TASKGATE_REDIS__URL", "rediss://cache.internal:6380/0")
        monkeypatch.setenv("TASKGATE_S3__ENDPOINT_URL", "https://s3.internal")

        settings = Settings()

        assert settings.database.url == "postgresql+asyncpg://db.internal/tg"
        assert settings.redis.url == "rediss://cache.internal:6380/0"
        assert settings.s3.endpoint_url == "https://s3.internal"

    def test_the_placeholder_jwt_secret_is_refused_in_production(self) -> None:
        with pytest.raises(ValidationError, match="JWT_SECRET must be set"):
            Settings(env="production")

    def test_a_short_jwt_secret_is_refused_in_production(self) -> None:
        with pytest.raises(ValidationError, match="at least 32 bytes"):
            Settings(env="production", security={"jwt_secret": "short"})

    def test_production_accepts_a_long_random_secret(self) -> None:
        settings = Settings(
            env="production",
            security={"jwt_secret": "x" * 48, "api_key_pepper": "y" * 48},
            webhooks={"secret_key": "z" * 48},
        )

        assert settings.security.jwt_secret.get_secret_value() != PLACEHOLDER_SECRET

    def test_production_refuses_the_placeholder_webhook_sealing_key(self) -> None:
        with pytest.raises(ValidationError, match="WEBHOOKS__SECRET_KEY must be set"):
            Settings(
                env="production", security={"jwt_secret": "x" * 48, "api_key_pepper": "y" * 48}
            )

    def test_a_short_webhook_sealing_key_is_refused(self) -> None:
        with pytest.raises(ValidationError, match="SECRET_KEY must be at least 32 bytes"):
            Settings(webhooks={"secret_key": "short"})

    def test_verifying_postgres_tls_needs_a_ca_bundle(self) -> None:
        with pytest.raises(ValidationError, match="needs ssl_ca_file"):
            Settings(database={"sslmode": "verify-full"})

    def test_access_tokens_cannot_live_longer_than_fifteen_minutes(self) -> None:
        with pytest.raises(ValidationError):
            Settings(security={"access_token_ttl_s": 3600})

    def test_the_broker_visibility_timeout_must_outlast_the_longest_task(self) -> None:
        with pytest.raises(ValidationError, match="visibility_timeout_s must exceed"):
            Settings(worker={"visibility_timeout_s": 3600}, tasks={"max_timeout_s": 7200})

    def test_a_heartbeat_must_come_within_the_lease(self) -> None:
        with pytest.raises(ValidationError, match="heartbeat_s must be shorter"):
            Settings(tasks={"lease_s": 5, "heartbeat_s": 5})


class TestProjectDefaults:
    def test_are_read_from_the_projects_group(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TASKGATE_PROJECTS__MAX_QUEUED_TASKS", "25")
        monkeypatch.setenv("TASKGATE_PROJECTS__READ_RATE_PER_MINUTE", "90")

        settings = Settings()

        assert settings.projects.max_queued_tasks == 25
        assert settings.projects.read_rate_per_minute == 90

    @pytest.mark.parametrize("value", ["0", "1000001"])
    def test_a_default_out_of_the_projects_bounds_is_refused(
        self, monkeypatch: pytest.MonkeyPatch, value: str
    ) -> None:
        monkeypatch.setenv("TASKGATE_PROJECTS__MAX_QUEUED_TASKS", value)

        with pytest.raises(ValidationError, match="max_queued_tasks"):
            Settings()
