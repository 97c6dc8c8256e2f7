"""No webhook delivery is lost when every worker is killed mid-delivery or Redis is flushed.

At-least-once: an attempt cut short is made again, with the same `webhook-id`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from app.webhooks.models import DeliveryState
from tests.integration.webhooks.receiver import HANG, Answer, running_receiver, webhook_ids
from tests.integration.webhooks.support import (
    admin_headers,
    create_endpoint,
    remove_endpoints,
    wait_delivered,
)
from tests.platform import Platform

pytestmark = pytest.mark.e2e


@pytest.fixture
async def hooks(platform: Platform) -> AsyncIterator[Platform]:
    yield platform
    await remove_endpoints(platform)


async def submit_tasks(platform: Platform, count: int) -> None:
    """Each submit records `task.created`: the event the endpoints here subscribe to."""
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
        for n in range(count):
            response = await client.post(
                f"/v1/projects/{platform.project_id}/tasks",
                json={"type": "echo", "input": {"n": n}},
                headers=platform.headers,
            )
            assert response.status_code == 202, response.text


class TestWorkersKilled:
    async def test_deliveries_cut_by_kill_9_arrive_later_with_the_same_webhook_id(
        self, hooks: Platform
    ) -> None:
        admin = await admin_headers(hooks)
        with running_receiver(HANG) as receiver:
            endpoint = await create_endpoint(hooks, admin, receiver.url, ["task.created"])
            hooks.start_worker(concurrency=2)
            await submit_tasks(hooks, 8)
            await receiver.wait_for(1, timeout_s=30)  # a worker is inside an attempt

            hooks.kill_workers()
            killed_at = time.monotonic()
            interrupted = set(webhook_ids(receiver.received()))
            receiver.script(Answer(status=200))
            hooks.start_worker(concurrency=2)
            rows = await wait_delivered(hooks, endpoint["id"], count=8, timeout_s=60)
            recovered_after = time.monotonic() - killed_at
            received = webhook_ids(receiver.received())

        assert len(rows) == 8
        assert all(row.state == DeliveryState.succeeded for row in rows)
        assert {str(row.id) for row in rows} == set(received)
        assert interrupted
        assert all(received.count(webhook_id) >= 2 for webhook_id in interrupted)
        print(  # noqa: T201 (reported figure)
            f"\nkill -9 of all workers with {len(interrupted)} deliveries in flight: all 8 "
            f"delivered {recovered_after:.1f}s after the kill, the cut ones again with their "
            f"webhook-id ({len(received)} requests for 8 deliveries)"
        )


class TestRedisFlushed:
    async def test_deliveries_published_before_a_flushall_all_arrive(
        self, hooks: Platform, redis: Redis
    ) -> None:
        admin = await admin_headers(hooks)
        with running_receiver() as receiver:
            endpoint = await create_endpoint(hooks, admin, receiver.url, ["task.created"])
            await submit_tasks(hooks, 20)  # no worker yet: the jobs wait in Redis
            for _ in range(100):
                if await redis.llen("webhooks") >= 20:
                    break
                await asyncio.sleep(0.05)

            await redis.flushall()  # the session's own Valkey, never the machine's shared one
            flushed_at = time.monotonic()
            hooks.start_worker(concurrency=2)
            rows = await wait_delivered(hooks, endpoint["id"], count=20, timeout_s=60)
            recovered_after = time.monotonic() - flushed_at
            received = webhook_ids(receiver.received())

        assert {str(row.id) for row in rows} == set(received)
        assert len(rows) == 20
        print(  # noqa: T201 (reported figure)
            f"\nFLUSHALL with 20 deliveries queued: all delivered {recovered_after:.1f}s later "
            f"(worker start included), {len(received)} requests"
        )
