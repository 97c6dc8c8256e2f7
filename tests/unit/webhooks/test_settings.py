from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.core.config import Settings


class TestWebhookSettings:
    def test_private_and_loopback_targets_are_refused_by_default(self) -> None:
        settings = Settings()

        assert (settings.webhooks.allow_private_targets, settings.webhooks.allow_loopback) == (
            False,
            False,
        )
        assert settings.webhooks.timeout_s == 10

    def test_are_read_from_the_environment_the_schedule_as_json(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TASKGATE_WEBHOOKS__ALLOW_LOOPBACK", "true")
        monkeypatch.setenv("TASKGATE_WEBHOOKS__RETRY_SCHEDULE_S", "[1, 60.5]")

        settings = Settings()

        assert settings.webhooks.allow_loopback is True
        assert settings.webhooks.retry_schedule_s == [1.0, 60.5]

    @pytest.mark.parametrize("schedule", [[-1], [8 * 86_400], [1] * 21])
    def test_an_odd_retry_schedule_is_refused(self, schedule: list[float]) -> None:
        with pytest.raises(ValidationError):
            Settings(webhooks={"retry_schedule_s": schedule})
