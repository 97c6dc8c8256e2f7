"""Webhook errors."""

from __future__ import annotations

from typing import Any

from app.core.errors import AppError, Conflict, NotFound


class WebhookNotFound(NotFound):
    """Also what a caller outside the endpoint's project gets."""

    type, title = "webhook-not-found", "Webhook endpoint not found"


class DeliveryNotFound(NotFound):
    type, title = "webhook-delivery-not-found", "Webhook delivery not found"


class InvalidWebhookUrl(AppError):
    status, type, title = 422, "invalid-webhook-url", "This URL cannot receive webhooks"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.errors: list[dict[str, Any]] | None = [
            {"loc": ["body", "url"], "msg": detail, "type": "invalid_webhook_url"}
        ]


class WebhookLimitReached(Conflict):
    type, title = "webhook-limit-reached", "The project has as many webhook endpoints as allowed"


class WebhookDisabled(Conflict):
    type, title = "webhook-disabled", "The webhook endpoint is disabled"


class DeliveryInFlight(Conflict):
    type, title = "webhook-delivery-in-flight", "The delivery is being attempted right now"


class SecretRotatedConcurrently(Conflict):
    type, title = "webhook-secret-rotated-concurrently", "The secret was rotated meanwhile"
