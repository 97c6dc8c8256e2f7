"""Webhooks end to end: API, worker and scheduler processes delivering to real receivers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.integration.webhooks.receiver import (
    HANG,
    Answer,
    Received,
    running_receiver,
    webhook_ids,
)
from tests.integration.webhooks.support import (
    admin_headers,
    create_endpoint,
    remove_endpoints,
    wait_delivered,
)
from tests.platform import FAST_SETTINGS, Platform

pytestmark = pytest.mark.e2e

TIMEOUT_S = float(FAST_SETTINGS["TASKGATE_WEBHOOKS__TIMEOUT_S"])


@pytest.fixture
async def hooks(platform: Platform) -> AsyncIterator[Platform]:
    """The platform; its endpoints are removed afterwards, so no retry outlives the receivers."""
    yield platform
    await remove_endpoints(platform)


async def submit(client: httpx.AsyncClient, platform: Platform, request_id: str) -> str:
    response = await client.post(
        f"/v1/projects/{platform.project_id}/tasks",
        json={"type": "echo", "input": {"request": request_id}},
        headers={**platform.headers, "X-Request-ID": request_id},
    )
    assert response.status_code == 202, response.text
    task_id: str = response.json()["id"]
    return task_id


def delay_s(request: Received) -> float:
    """From the event (payload timestamp) to the receiver getting it."""
    timestamp = json.loads(request.body)["timestamp"]
    return request.wall - datetime.fromisoformat(timestamp).timestamp()


class TestDelivery:
    async def test_a_finished_task_arrives_signed_and_verifies_with_either_secret_while_rotating(
        self, hooks: Platform
    ) -> None:
        admin = await admin_headers(hooks)
        with running_receiver() as receiver:
            endpoint = await create_endpoint(hooks, admin, receiver.url, ["task.succeeded"])
            async with httpx.AsyncClient(base_url=hooks.base_url, timeout=30) as client:
                rotated = await client.post(
                    f"/v1/webhooks/{endpoint['id']}/rotate-secret", headers=admin
                )
                hooks.start_worker(concurrency=1)
                task_id = await submit(client, hooks, "e2e-webhook-1")
                [request] = await receiver.wait_for(1, timeout_s=30)
                await wait_delivered(hooks, endpoint["id"], count=1, timeout_s=10)
                task = (await client.get(f"/v1/tasks/{task_id}", headers=hooks.headers)).json()
                log = await client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=admin)

        payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)
        assert Webhook(rotated.json()["secret"]).verify(request.body, request.headers) == payload
        assert payload["type"] == "task.succeeded"
        assert payload["data"] == task
        assert request.headers["x-request-id"] == "e2e-webhook-1"
        assert request.headers["user-agent"].startswith("taskgate/")
        [entry] = log.json()["items"]
        assert (entry["id"], entry["status"], entry["attempt"], entry["response_status"]) == (
            request.webhook_id,
            "succeeded",
            1,
            200,
        )
        finished = datetime.fromisoformat(task["finished_at"]).timestamp()
        print(  # noqa: T201 (reported figure)
            f"\nwebhook for a finished task received {request.wall - finished:.3f}s after it "
            f"finished ({entry['latency_ms']} ms attempt)"
        )

    async def test_a_500_then_200_repeats_the_webhook_id_and_a_410_disables_its_endpoint(
        self, hooks: Platform
    ) -> None:
        admin = await admin_headers(hooks)
        with (
            running_receiver(Answer(status=500), Answer(status=200)) as flaky,
            running_receiver(Answer(status=410)) as gone,
        ):
            retried = await create_endpoint(hooks, admin, flaky.url, ["task.succeeded"])
            disabled = await create_endpoint(hooks, admin, gone.url, ["task.succeeded"])
            hooks.start_worker(concurrency=2)
            async with httpx.AsyncClient(base_url=hooks.base_url, timeout=30) as client:
                await submit(client, hooks, "e2e-webhook-2")
                requests = await flaky.wait_for(2, timeout_s=30)
                await gone.wait_for(1, timeout_s=30)
                await wait_delivered(hooks, retried["id"], count=1, timeout_s=10)
                for _ in range(50):
                    endpoint = (
                        await client.get(f"/v1/webhooks/{disabled['id']}", headers=admin)
                    ).json()
                    if not endpoint["enabled"]:
                        break
                    await asyncio.sleep(0.2)
                events = await client.get(
                    f"/v1/projects/{hooks.project_id}/events?kind=webhook.endpoint_disabled",
                    headers=admin,
                )

        assert len(set(webhook_ids(requests))) == 1
        assert requests[0].body == requests[1].body
        for request in requests:
            Webhook(retried["secret"]).verify(request.body, request.headers)
        assert endpoint["enabled"] is False
        assert "410" in endpoint["disabled_reason"]
        [event] = events.json()["items"]
        assert event["subject_id"] == disabled["id"]
        print(  # noqa: T201 (reported figure)
            f"\n500 then 200: the retry came {requests[1].at - requests[0].at:.2f}s after the "
            f"first attempt (schedule starts at 0.5 s)"
        )


class TestIsolation:
    async def test_a_hanging_receiver_does_not_delay_another_endpoint_beyond_the_timeout(
        self, hooks: Platform
    ) -> None:
        admin = await admin_headers(hooks)
        with running_receiver(HANG) as hanging, running_receiver() as fast:
            await create_endpoint(hooks, admin, hanging.url, ["task.succeeded"])
            await create_endpoint(hooks, admin, fast.url, ["task.succeeded"])
            hooks.start_worker(concurrency=2)
            async with httpx.AsyncClient(base_url=hooks.base_url, timeout=30) as client:
                for n in range(6):
                    await submit(client, hooks, f"e2e-isolation-{n}")
                received = await fast.wait_for(6, timeout_s=60)
            hung = len(hanging.received())

        delays = sorted(delay_s(request) for request in received)
        assert hung >= 1
        assert delays[-1] < TIMEOUT_S + 1.5
        print(  # noqa: T201 (reported figure)
            f"\nwith a receiver hanging ({hung} requests held, {TIMEOUT_S:.0f} s timeout): the other "
            f"endpoint's 6 deliveries arrived {delays[0]:.2f}-{delays[-1]:.2f}s after their events "
            f"(median {delays[len(delays) // 2]:.2f}s)"
        )
