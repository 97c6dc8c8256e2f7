"""Attempting deliveries: the worker's job, around one claimed attempt."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import __version__
from app.core import metrics
from app.core.config import WebhookSettings
from app.core.context import project_id_var, request_id_var
from app.core.db import transaction, utc_now
from app.webhooks import attempts, outbox, sender, targets
from app.webhooks.attempts import Claim, Skip
from app.webhooks.models import DeliveryState
from app.webhooks.repository import DeliveryRepository
from app.webhooks.sender import Outcome
from app.webhooks.signing import signature_header
from app.webhooks.targets import Resolver, system_resolver
from app.worker import enqueue

log = logging.getLogger(__name__)

USER_AGENT = f"taskgate/{__version__}"
# `taskgate_webhook_deliveries_total` by what the attempt left its delivery in.
OUTCOMES = {
    DeliveryState.succeeded: "succeeded",
    DeliveryState.pending: "retrying",
    DeliveryState.failed: "failed",
}


def body_of(payload: dict[str, object]) -> bytes:
    """The exact bytes sent and signed. The payload is stored as jsonb, which gives back the
    same value every time, so every attempt sends the same body (stdlib json: any integer)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def headers_for(held: Claim, body: bytes, *, timestamp: int) -> dict[str, str]:
    message_id = str(held.delivery_id)
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(
            held.secrets, message_id=message_id, timestamp=timestamp, body=body
        ),
    }
    if held.request_id:
        headers["x-request-id"] = held.request_id
    return headers


async def attempt(
    held: Claim, *, settings: WebhookSettings, resolver: Resolver = system_resolver
) -> Outcome:
    """Send one attempt; nothing in it (resolution included) outlasts `settings.timeout_s`."""
    policy = targets.TargetPolicy.of(settings)
    body = body_of(held.payload)
    headers = headers_for(held, body, timestamp=int(time.time()))
    started = time.monotonic()

    def failed(error: str) -> Outcome:
        latency_ms = round((time.monotonic() - started) * 1000)
        return Outcome(status=None, excerpt=None, latency_ms=latency_ms, error=error[:300])

    try:
        async with asyncio.timeout(settings.timeout_s):
            target = await targets.resolve(targets.parse(held.url, policy), policy, resolver)
            return await sender.post(
                target,
                body=body,
                headers=headers,
                timeout_s=settings.timeout_s,
                max_bytes=settings.response_max_bytes,
            )
    except TimeoutError:
        return failed("timeout")
    except targets.RefusedTarget as exc:
        return failed(f"refused_target: {exc}")
    except targets.UnresolvableTarget as exc:
        return failed(f"dns: {exc}")


async def _hand_on_slot(session: AsyncSession, endpoint_id: uuid.UUID) -> None:
    """This attempt's slot is free: publish the endpoint's next waiting delivery now, not on the
    scheduler's next pass (a burst to one endpoint drains at its concurrency, not per pass)."""
    if not enqueue.available():
        return
    waiting = await DeliveryRepository(session).take_waiting(endpoint_id, now=utc_now())
    if waiting is not None:
        outbox.enqueue_deliveries(session, [waiting])


async def deliver(
    sessionmaker: async_sessionmaker[AsyncSession],
    delivery_id: uuid.UUID,
    *,
    settings: WebhookSettings,
    resolver: Resolver = system_resolver,
) -> str:
    """Make one attempt of a delivery; return what happened. Safe to receive twice: only one
    worker can claim an attempt, and a claim outlives a crash by `lease_grace_s` only."""
    async with transaction(sessionmaker) as session:
        held = await attempts.claim(session, delivery_id, settings=settings)
    if isinstance(held, Skip):
        log.info("webhook delivery skipped", extra={"delivery_id": str(delivery_id), "why": held})
        return held
    request_token = request_id_var.set(held.request_id)
    project_token = project_id_var.set(str(held.project_id))
    try:
        started_at = utc_now()
        try:
            outcome = await attempt(held, settings=settings, resolver=resolver)  # no transaction
        except Exception as exc:  # a bug costs one attempt; it must not loop on an expiring claim
            log.exception("webhook attempt crashed", extra={"delivery_id": str(held.delivery_id)})
            outcome = Outcome(
                status=None, excerpt=None, latency_ms=0, error=f"internal: {type(exc).__name__}"
            )
        async with transaction(sessionmaker) as session:
            state = await attempts.record_attempt(
                session, held, outcome, started_at=started_at, settings=settings
            )
            await _hand_on_slot(session, held.endpoint_id)
        log.info(
            "webhook attempt",
            extra={
                "delivery_id": str(held.delivery_id),
                "endpoint_id": str(held.endpoint_id),
                "attempt": held.attempt,
                "response_status": outcome.status,
                "latency_ms": outcome.latency_ms,
                "error": outcome.error,
                "state": state.value if state is not None else "claim_lost",
            },
        )
        metrics.WEBHOOK_DELIVERIES.labels(
            OUTCOMES[state] if state is not None else "claim_lost"
        ).inc()
        return state.value if state is not None else "claim_lost"
    finally:
        request_id_var.reset(request_token)
        project_id_var.reset(project_token)
