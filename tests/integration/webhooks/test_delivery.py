"""Attempts against real receivers on 127.0.0.1: signatures, retries, 410, timeouts, claims."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Sequence
from datetime import timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from app import __version__
from app.core.config import WebhookSettings
from app.core.db import transaction, utc_now
from app.projects.models import Project
from app.webhooks import attempts
from app.webhooks.delivery import deliver
from app.webhooks.models import DeliveryState, WebhookDelivery, WebhookEndpoint
from app.webhooks.signing import new_secret
from app.worker import enqueue
from app.worker.enqueue import Publisher
from tests.integration.webhooks.conftest import (
    attempts_of,
    deliveries_of,
    emit,
    events_of,
    make_endpoint,
    reload,
    reload_endpoint,
)
from tests.integration.webhooks.receiver import (
    HANG,
    Answer,
    Receiver,
    running_receiver,
    webhook_ids,
)


async def set_claim_expired(
    db: async_sessionmaker[AsyncSession], delivery: WebhookDelivery, *, attempt: int
) -> None:
    """As a worker that claimed attempt `attempt` and died leaves it, once the lease passed."""
    async with transaction(db) as session:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(attempt=attempt, claimed_until=utc_now() - timedelta(seconds=1))
        )


class TestSignedDelivery:
    async def test_verifies_with_an_independent_standard_webhooks_implementation(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        receiver: Receiver,
        webhook_settings: WebhookSettings,
    ) -> None:
        endpoint = await make_endpoint(db, project, receiver.url)
        subject = {"id": "task-1", "status": "succeeded", "result": {"big": 2**70}}
        event = await emit(db, project, subject=subject, request_id="req-7")
        [delivery] = await deliveries_of(db, event.id)

        outcome = await deliver(db, delivery.id, settings=webhook_settings)

        assert outcome == "succeeded"
        [request] = receiver.received()
        verified = Webhook(endpoint.secret).verify(request.body, request.headers)
        assert verified == {
            "type": "task.succeeded",
            "timestamp": event.at.isoformat().replace("+00:00", "Z"),
            "data": subject,
        }
        assert request.webhook_id == str(delivery.id)
        assert request.headers["user-agent"] == f"taskgate/{__version__}"
        assert request.headers["x-request-id"] == "req-7"
        assert request.headers["content-type"] == "application/json"
        assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 5

    async def test_records_the_answer_and_the_attempt(
        self,
        db: async_sessionmaker[AsyncSession],
        receiver: Receiver,
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
    ) -> None:
        receiver.script(Answer(status=204, body=b""))

        await deliver(db, one_delivery.id, settings=webhook_settings)

        delivery = await reload(db, one_delivery.id)
        assert delivery.state == DeliveryState.succeeded
        assert (delivery.attempt, delivery.response_status, delivery.next_attempt_at) == (
            1,
            204,
            None,
        )
        assert delivery.claimed_until is None
        [attempt] = await attempts_of(db, delivery.id)
        assert (attempt.attempt, attempt.response_status, attempt.error) == (1, 204, None)
        assert 0 <= attempt.latency_ms < 2000

    async def test_during_a_rotation_the_delivery_verifies_with_either_secret(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        receiver: Receiver,
        webhook_settings: WebhookSettings,
    ) -> None:
        old, new = new_secret(), new_secret()
        await make_endpoint(
            db,
            project,
            receiver.url,
            secret=new,
            previous_secret=old,
            previous_secret_expires_at=utc_now() + timedelta(hours=1),
        )
        [delivery] = await deliveries_of(db, (await emit(db, project)).id)

        await deliver(db, delivery.id, settings=webhook_settings)

        [request] = receiver.received()
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        Webhook(old).verify(request.body, request.headers)
        Webhook(new).verify(request.body, request.headers)

    async def test_after_the_grace_period_only_the_new_secret_signs(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        receiver: Receiver,
        webhook_settings: WebhookSettings,
    ) -> None:
        old = new_secret()
        await make_endpoint(
            db,
            project,
            receiver.url,
            previous_secret=old,
            previous_secret_expires_at=utc_now() - timedelta(seconds=1),
        )
        [delivery] = await deliveries_of(db, (await emit(db, project)).id)

        await deliver(db, delivery.id, settings=webhook_settings)

        [request] = receiver.received()
        assert len(request.headers["webhook-signature"].split(" ")) == 1
        assert old not in json.dumps(request.headers)


class TestRetries:
    async def test_a_500_then_a_200_sends_the_same_webhook_id_and_body_twice(
        self,
        db: async_sessionmaker[AsyncSession],
        receiver: Receiver,
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
    ) -> None:
        receiver.script(Answer(status=500, body=b"boom"), Answer(status=200))

        first = await deliver(db, one_delivery.id, settings=webhook_settings)
        after_first = await reload(db, one_delivery.id)
        second = await deliver(db, one_delivery.id, settings=webhook_settings)

        assert (first, second) == ("pending", "succeeded")
        assert after_first.response_excerpt == "boom"
        assert after_first.next_attempt_at is not None
        requests = receiver.received()
        assert webhook_ids(requests) == [str(one_delivery.id)] * 2
        assert requests[0].body == requests[1].body
        attempts = await attempts_of(db, one_delivery.id)
        assert [(a.attempt, a.response_status) for a in attempts] == [(1, 500), (2, 200)]

    async def test_when_retries_run_out_the_delivery_fails_with_an_event(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        receiver: Receiver,
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
    ) -> None:
        receiver.script(Answer(status=500))

        outcomes = [await deliver(db, one_delivery.id, settings=webhook_settings) for _ in range(4)]

        assert outcomes == ["pending", "pending", "failed", "not_available"]
        delivery = await reload(db, one_delivery.id)
        assert (delivery.state, delivery.attempt, delivery.next_attempt_at) == (
            DeliveryState.failed,
            3,
            None,
        )
        [failed] = [e for e in await events_of(db, project) if e.kind == "webhook.delivery_failed"]
        assert failed.subject_id == one_delivery.endpoint_id
        assert failed.data["delivery_id"] == str(one_delivery.id)
        assert failed.data["attempts"] == 3
        assert (await reload_endpoint(db, one_delivery.endpoint_id)).failing_since is not None

    @pytest.mark.parametrize("status", [429, 503])
    async def test_retry_after_sets_the_next_attempt(
        self,
        db: async_sessionmaker[AsyncSession],
        receiver: Receiver,
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
        status: int,
    ) -> None:
        receiver.script(Answer(status=status, headers=(("Retry-After", "120"),)))
        settings = webhook_settings.model_copy(update={"retry_schedule_s": [0.0, 3600.0]})

        await deliver(db, one_delivery.id, settings=settings)
        again = await deliver(db, one_delivery.id, settings=settings)

        delivery = await reload(db, one_delivery.id)
        assert delivery.next_attempt_at is not None
        wait_s = (delivery.next_attempt_at - utc_now()).total_seconds()
        assert 110 < wait_s <= 120
        assert again == "not_available"  # not due yet
        assert len(receiver.received()) == 1

    async def test_a_redirect_is_not_followed(
        self,
        db: async_sessionmaker[AsyncSession],
        receiver: Receiver,
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
    ) -> None:
        with running_receiver() as elsewhere:
            receiver.script(Answer(status=307, headers=(("Location", elsewhere.url),)))

            outcome = await deliver(db, one_delivery.id, settings=webhook_settings)

            assert elsewhere.received() == []
        assert outcome == "pending"
        assert (await reload(db, one_delivery.id)).response_status == 307


class TestGone:
    async def test_410_disables_the_endpoint_and_fails_its_waiting_deliveries(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        receiver: Receiver,
        webhook_settings: WebhookSettings,
    ) -> None:
        endpoint = await make_endpoint(db, project, receiver.url)
        [first] = await deliveries_of(db, (await emit(db, project)).id)
        [waiting] = await deliveries_of(db, (await emit(db, project)).id)
        receiver.script(Answer(status=410))

        outcome = await deliver(db, first.id, settings=webhook_settings)

        assert outcome == "failed"
        disabled = await reload_endpoint(db, endpoint.id)
        assert not disabled.enabled
        assert disabled.disabled_reason is not None
        assert "410" in disabled.disabled_reason
        assert (await reload(db, waiting.id)).state == DeliveryState.failed
        kinds = [event.kind for event in await events_of(db, project)]
        assert kinds == ["webhook.delivery_failed", "webhook.endpoint_disabled"]
        assert await deliveries_of(db, (await emit(db, project)).id) == []
        assert await deliver(db, waiting.id, settings=webhook_settings) == "endpoint_disabled"
        assert len(receiver.received()) == 1


class TestFailingEndpoints:
    async def test_an_endpoint_failing_for_longer_than_allowed_is_disabled_with_an_event(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        receiver: Receiver,
        webhook_settings: WebhookSettings,
    ) -> None:
        endpoint = await make_endpoint(
            db, project, receiver.url, failing_since=utc_now() - timedelta(days=6)
        )
        [delivery] = await deliveries_of(db, (await emit(db, project)).id)
        receiver.script(Answer(status=502))

        await deliver(db, delivery.id, settings=webhook_settings)

        disabled = await reload_endpoint(db, endpoint.id)
        assert not disabled.enabled
        assert (await reload(db, delivery.id)).state == DeliveryState.failed
        [event] = [e for e in await events_of(db, project) if e.kind == "webhook.endpoint_disabled"]
        assert event.data["failed_deliveries"] == 1
        assert "failing" in event.data["reason"]

    async def test_a_success_clears_the_failing_mark(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        receiver: Receiver,
        webhook_settings: WebhookSettings,
    ) -> None:
        endpoint = await make_endpoint(
            db, project, receiver.url, failing_since=utc_now() - timedelta(hours=1)
        )
        [delivery] = await deliveries_of(db, (await emit(db, project)).id)

        await deliver(db, delivery.id, settings=webhook_settings)

        assert (await reload_endpoint(db, endpoint.id)).failing_since is None


class TestTimeoutsAndLimits:
    async def test_a_hanging_receiver_costs_one_timeout_and_a_retry(
        self,
        db: async_sessionmaker[AsyncSession],
        receiver: Receiver,
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
    ) -> None:
        receiver.script(HANG)
        settings = webhook_settings.model_copy(update={"timeout_s": 1.0})

        started = time.monotonic()
        outcome = await deliver(db, one_delivery.id, settings=settings)
        elapsed = time.monotonic() - started

        assert outcome == "pending"
        assert 1.0 <= elapsed < 1.8
        delivery = await reload(db, one_delivery.id)
        assert delivery.last_error == "timeout"
        assert delivery.response_status is None

    async def test_only_the_start_of_a_huge_answer_is_read(
        self,
        db: async_sessionmaker[AsyncSession],
        receiver: Receiver,
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
    ) -> None:
        receiver.script(Answer(status=200, body=b"x" * 8_000_000))
        settings = webhook_settings.model_copy(update={"response_max_bytes": 4096})

        outcome = await deliver(db, one_delivery.id, settings=settings)

        assert outcome == "succeeded"
        delivery = await reload(db, one_delivery.id)
        assert delivery.response_excerpt == "x" * 1000


class TestTargets:
    async def test_a_name_is_reached_at_its_checked_address_with_its_host_header(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        receiver: Receiver,
        webhook_settings: WebhookSettings,
    ) -> None:
        async def resolver(host: str, port: int) -> Sequence[str]:
            assert (host, port) == ("hooks.example.test", receiver.port)
            return ["127.0.0.1"]

        await make_endpoint(db, project, f"http://hooks.example.test:{receiver.port}/hooks")
        [delivery] = await deliveries_of(db, (await emit(db, project)).id)

        outcome = await deliver(db, delivery.id, settings=webhook_settings, resolver=resolver)

        assert outcome == "succeeded"
        [request] = receiver.received()
        assert request.headers["host"] == f"hooks.example.test:{receiver.port}"

    async def test_a_name_resolving_to_a_private_address_is_never_contacted(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        webhook_settings: WebhookSettings,
    ) -> None:
        async def resolver(host: str, port: int) -> Sequence[str]:
            del host, port
            return ["10.0.0.1"]

        await make_endpoint(db, project, "http://internal.example.test/hooks")
        [delivery] = await deliveries_of(db, (await emit(db, project)).id)

        outcome = await deliver(db, delivery.id, settings=webhook_settings, resolver=resolver)

        assert outcome == "pending"
        last_error = (await reload(db, delivery.id)).last_error
        assert last_error is not None
        assert last_error.startswith(
            "refused_target: internal.example.test resolves to an address webhooks may not reach"
        )
        assert "10.0.0.1" not in last_error

    async def test_loopback_is_refused_unless_the_setting_allows_it(
        self,
        db: async_sessionmaker[AsyncSession],
        receiver: Receiver,
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
    ) -> None:
        strict = webhook_settings.model_copy(update={"allow_loopback": False})

        await deliver(db, one_delivery.id, settings=strict)

        assert receiver.received() == []
        last_error = (await reload(db, one_delivery.id)).last_error
        assert last_error == "refused_target: 127.0.0.1 is a loopback address"

    async def test_a_name_that_does_not_resolve_is_retried(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        webhook_settings: WebhookSettings,
    ) -> None:
        async def resolver(host: str, port: int) -> Sequence[str]:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}:{port} unknown")

        await make_endpoint(db, project, "https://gone.example.test/hooks")
        [delivery] = await deliveries_of(db, (await emit(db, project)).id)

        outcome = await deliver(db, delivery.id, settings=webhook_settings, resolver=resolver)

        assert outcome == "pending"
        last_error = (await reload(db, delivery.id)).last_error
        assert last_error is not None
        assert last_error.startswith("dns: gone.example.test does not resolve")


class TestClaims:
    async def _claim(
        self,
        db: async_sessionmaker[AsyncSession],
        delivery: WebhookDelivery,
        settings: WebhookSettings,
    ) -> attempts.Claim | attempts.Skip:
        async with transaction(db) as session:
            return await attempts.claim(session, delivery.id, settings=settings)

    async def test_a_claimed_delivery_cannot_be_claimed_again(
        self,
        db: async_sessionmaker[AsyncSession],
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
        receiver: Receiver,
    ) -> None:
        first = await self._claim(db, one_delivery, webhook_settings)
        duplicate = await deliver(db, one_delivery.id, settings=webhook_settings)

        assert isinstance(first, attempts.Claim)
        assert duplicate == "not_available"
        assert receiver.received() == []

    async def test_an_endpoint_has_at_most_its_concurrency_in_flight(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        webhook_settings: WebhookSettings,
    ) -> None:
        await make_endpoint(db, project, "https://hooks.example.com/")
        deliveries = [(await deliveries_of(db, (await emit(db, project)).id))[0] for _ in range(3)]
        settings = webhook_settings.model_copy(update={"endpoint_concurrency": 2})

        claims = [await self._claim(db, delivery, settings) for delivery in deliveries]

        assert [isinstance(claim, attempts.Claim) for claim in claims[:2]] == [True, True]
        assert claims[2] == "busy"
        assert (await reload(db, deliveries[2].id)).dispatched_at is None  # for the scheduler

    async def test_an_attempt_hands_its_slot_to_a_waiting_delivery_at_once(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        webhook_settings: WebhookSettings,
        receiver: Receiver,
        publisher: Publisher,
        redis: Redis,
    ) -> None:
        await make_endpoint(db, project, receiver.url)
        first, waiting = [(await deliveries_of(db, (await emit(db, project)).id))[0] for _ in "ab"]
        settings = webhook_settings.model_copy(update={"endpoint_concurrency": 1})
        assert (await reload(db, waiting.id)).dispatched_at is None  # left for the scheduler

        with enqueue.using(publisher):
            assert await deliver(db, first.id, settings=settings) == "succeeded"

        assert (await reload(db, waiting.id)).dispatched_at is not None
        queued = [
            json.loads(base64.b64decode(json.loads(raw)["body"]))[0][0]
            for raw in await redis.lrange("webhooks", 0, -1)
        ]
        assert str(waiting.id) in queued

    async def test_a_failing_endpoint_gets_one_attempt_at_a_time(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        webhook_settings: WebhookSettings,
    ) -> None:
        await make_endpoint(db, project, "https://hooks.example.com/", failing_since=utc_now())
        deliveries = [(await deliveries_of(db, (await emit(db, project)).id))[0] for _ in range(2)]

        claims = [await self._claim(db, delivery, webhook_settings) for delivery in deliveries]

        assert isinstance(claims[0], attempts.Claim)
        assert claims[1] == "busy"

    async def test_the_claim_of_a_dead_worker_expires_and_the_same_webhook_id_is_sent(
        self,
        db: async_sessionmaker[AsyncSession],
        receiver: Receiver,
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
    ) -> None:
        lost = await self._claim(db, one_delivery, webhook_settings)  # …and the worker dies
        await set_claim_expired(db, one_delivery, attempt=1)

        outcome = await deliver(db, one_delivery.id, settings=webhook_settings)

        assert isinstance(lost, attempts.Claim)
        assert outcome == "succeeded"
        assert webhook_ids(receiver.received()) == [str(one_delivery.id)]
        assert (await reload(db, one_delivery.id)).attempt == 2

    async def test_when_every_attempt_was_cut_short_the_delivery_fails_instead_of_looping(
        self,
        db: async_sessionmaker[AsyncSession],
        project: Project,
        receiver: Receiver,
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
    ) -> None:
        # Three attempts allowed (two retries), all claimed by workers that died.
        await set_claim_expired(db, one_delivery, attempt=3)

        outcome = await deliver(db, one_delivery.id, settings=webhook_settings)

        assert outcome == "attempts_used_up"
        assert receiver.received() == []
        delivery = await reload(db, one_delivery.id)
        assert (delivery.state, delivery.last_error) == (
            DeliveryState.failed,
            "interrupted: the last attempts were cut short",
        )
        [failed] = await events_of(db, project)
        assert (failed.kind, failed.data["attempts"]) == ("webhook.delivery_failed", 3)

    async def test_a_disabled_endpoint_fails_the_delivery_instead_of_sending_it(
        self,
        db: async_sessionmaker[AsyncSession],
        receiver: Receiver,
        one_delivery: WebhookDelivery,
        webhook_settings: WebhookSettings,
    ) -> None:
        async with transaction(db) as session:
            await session.execute(
                update(WebhookEndpoint)
                .where(WebhookEndpoint.id == one_delivery.endpoint_id)
                .values(enabled=False)
            )

        outcome = await deliver(db, one_delivery.id, settings=webhook_settings)

        assert outcome == "endpoint_disabled"
        assert receiver.received() == []
        assert (await reload(db, one_delivery.id)).state == DeliveryState.failed
