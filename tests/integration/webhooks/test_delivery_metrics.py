"""`taskgate_webhook_deliveries_total`: each attempt counted once, by what it left its delivery in."""

from __future__ import annotations

from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import WebhookSettings
from app.webhooks.delivery import deliver
from app.webhooks.models import WebhookDelivery
from tests.integration.webhooks.receiver import Answer, Receiver

OUTCOMES = ("succeeded", "retrying", "failed", "claim_lost")


def _counts() -> dict[str, float]:
    return {
        outcome: REGISTRY.get_sample_value(
            "taskgate_webhook_deliveries_total", {"outcome": outcome}
        )
        or 0.0
        for outcome in OUTCOMES
    }


class TestDeliveryOutcomes:
    async def test_a_retried_then_failed_delivery_counts_two_retries_and_one_failure(
        self,
        db: async_sessionmaker[AsyncSession],
        receiver: Receiver,
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
    ) -> None:
        receiver.script(Answer(status=500))
        before = _counts()

        for _ in range(3):
            await deliver(db, one_delivery.id, settings=webhook_settings)

        after = _counts()
        assert {outcome: after[outcome] - before[outcome] for outcome in OUTCOMES} == {
            "succeeded": 0,
            "retrying": 2,
            "failed": 1,
            "claim_lost": 0,
        }

    async def test_a_success_counts_as_succeeded(
        self,
        db: async_sessionmaker[AsyncSession],
        receiver: Receiver,
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
    ) -> None:
        receiver.script(Answer(status=204))
        before = _counts()

        await deliver(db, one_delivery.id, settings=webhook_settings)

        assert _counts()["succeeded"] - before["succeeded"] == 1
