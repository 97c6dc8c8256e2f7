"""The retry schedule, `Retry-After`, and what an answer's excerpt keeps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.core.config import WebhookSettings
from app.webhooks.attempts import next_attempt_delay
from app.webhooks.sender import EXCERPT_CHARS, Outcome, excerpt, retry_after

SETTINGS = WebhookSettings()


def failed(status: int | None, retry_after_s: float | None = None) -> Outcome:
    return Outcome(status=status, excerpt=None, latency_ms=1, retry_after_s=retry_after_s)


class TestSchedule:
    def test_follows_5s_5min_30min_2h_5h_10h_10h_then_gives_up(self) -> None:
        delays = [next_attempt_delay(n, failed(500), SETTINGS) for n in range(1, 9)]

        assert delays == [5, 300, 1800, 7200, 18000, 36000, 36000, None]

    @pytest.mark.parametrize("status", [429, 503])
    def test_retry_after_replaces_the_scheduled_delay(self, status: int) -> None:
        assert next_attempt_delay(3, failed(status, retry_after_s=42), SETTINGS) == 42

    def test_retry_after_is_capped_at_the_longest_delay(self) -> None:
        assert next_attempt_delay(1, failed(429, retry_after_s=10**9), SETTINGS) == 36000

    def test_retry_after_of_other_statuses_is_ignored(self) -> None:
        assert next_attempt_delay(1, failed(500, retry_after_s=42), SETTINGS) == 5

    def test_retry_after_does_not_add_attempts(self) -> None:
        assert next_attempt_delay(8, failed(429, retry_after_s=1), SETTINGS) is None


class TestRetryAfterHeader:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [
            ("120", 120.0),
            (" 7 ", 7.0),
            ("Mon, 23 Nov 2026 16:01:00 GMT", 60.0),
            ("Mon, 23 Nov 2026 15:00:00 GMT", 0.0),
            ("soon", None),
            ("-5", None),
            (None, None),
        ],
    )
    def test_reads_seconds_or_an_http_date(self, value: str | None, seconds: float | None) -> None:
        now = datetime(2026, 11, 23, 16, 0, 0, tzinfo=UTC)

        assert retry_after(value, now=now) == seconds


class TestExcerpt:
    def test_keeps_printable_text_without_nul_up_to_the_limit(self) -> None:
        text = excerpt(b"\x00\xffok" + b"x" * 5000)

        assert text.startswith("\ufffdok")
        assert "\x00" not in text
        assert len(text) == EXCERPT_CHARS
