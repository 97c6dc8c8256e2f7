"""Bodies of the webhook routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from app.core.db import utc_now
from app.core.types import without_nul
from app.webhooks.kinds import EventKind
from app.webhooks.models import DeliveryState, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks.targets import MAX_URL_LENGTH


def _unique(values: list[EventKind]) -> list[EventKind]:
    return sorted(set(values))


EventKinds = Annotated[
    list[EventKind],
    Field(
        min_length=1,
        max_length=len(EventKind),
        description="Event kinds to receive; `*` is every kind.",
        examples=[["task.succeeded", "task.failed"]],
    ),
    AfterValidator(_unique),
]
WebhookUrlText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_URL_LENGTH),
    AfterValidator(without_nul),
    Field(
        description="http(s) URL of a public address: private, loopback, link-local and other "
        "internal targets are refused unless the deployment allows them.",
        examples=["https://example.com/hooks/taskgate"],
    ),
]
Description = Annotated[str, StringConstraints(max_length=500), AfterValidator(without_nul)]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrlText
    events: EventKinds
    description: Description | None = None


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: WebhookUrlText | None = None
    events: EventKinds | None = None
    description: Description | None = Field(None, description="`null` clears it.")
    enabled: bool | None = Field(
        None,
        description="`false` stops deliveries (waiting ones fail); `true` resumes and forgets "
        "past failures.",
    )


class WebhookRead(BaseModel):
    id: uuid.UUID
    project_id: uuid.UUID
    url: str
    events: list[EventKind]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(description="Why it was disabled, when it is.")
    failing_since: datetime | None = Field(
        description="First failure since the last success; failing for long disables it."
    )
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the secret before the last rotation also signs deliveries."
    )
    created_by: uuid.UUID | None = Field(
        description="The user who created it: it is disabled when they leave the project or are "
        "deactivated. None for endpoints made before creators were recorded."
    )
    created_at: datetime

    @classmethod
    def of(cls, endpoint: WebhookEndpoint) -> WebhookRead:
        expires, now = endpoint.previous_secret_expires_at, utc_now()
        return cls(
            id=endpoint.id,
            project_id=endpoint.project_id,
            url=endpoint.url,
            events=[EventKind(kind) for kind in endpoint.event_kinds],
            description=endpoint.description,
            enabled=endpoint.enabled,
            disabled_reason=endpoint.disabled_reason,
            failing_since=endpoint.failing_since,
            previous_secret_expires_at=expires if expires is not None and expires > now else None,
            created_by=endpoint.created_by,
            created_at=endpoint.created_at,
        )


class WebhookWithSecret(WebhookRead):
    secret: str = Field(
        description="The signing secret (`whsec_…`). Shown only in this response: store it now."
    )


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID = Field(description="Also the `webhook-id` header of every attempt.")
    endpoint_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: DeliveryState = Field(validation_alias=AliasChoices("state", "status"))
    attempt: int = Field(description="Attempts made so far.")
    response_status: int | None
    response_excerpt: str | None = Field(description="The start of the last answer's body.")
    latency_ms: int | None
    last_error: str | None = Field(description="Why the last attempt got no usable answer.")
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    request_id: str | None = Field(description="`X-Request-ID` of the request that caused it.")
    created_at: datetime

    @classmethod
    def of(cls, delivery: WebhookDelivery) -> DeliveryRead:
        return cls.model_validate(delivery)


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    started_at: datetime
    latency_ms: int
    response_status: int | None
    response_excerpt: str | None
    error: str | None
    next_attempt_at: datetime | None


class DeliveryDetail(DeliveryRead):
    payload: dict[str, Any] = Field(description="The body sent, `{type, timestamp, data}`.")
    attempts: list[AttemptRead]

    @classmethod
    def with_attempts(
        cls, delivery: WebhookDelivery, attempts: list[WebhookAttempt]
    ) -> DeliveryDetail:
        read = DeliveryRead.model_validate(delivery)
        return cls(
            **read.model_dump(),
            payload=delivery.payload,
            attempts=[AttemptRead.model_validate(attempt) for attempt in attempts],
        )
