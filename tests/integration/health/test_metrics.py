"""`/metrics` in process: the queue depths read at scrape time, and a broker that does not answer."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis

from app.core.config import Settings
from app.core.redis import create_redis
from tests.metrics import FAMILIES, family_types, samples


@pytest.fixture
def silent_broker() -> Iterator[int]:
    """A port that accepts connections and never answers (a hung broker)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture
async def own_broker_db(settings: Settings) -> AsyncIterator[Redis]:
    """A database of the session's Redis that no other test's jobs are in."""
    url = settings.redis.url.rsplit("/", 1)[0] + "/13"
    client = create_redis(settings.redis.model_copy(update={"url": url}))
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


class TestScrape:
    async def test_has_every_family_and_each_queue_s_depth(
        self, app: FastAPI, client: httpx.AsyncClient, own_broker_db: Redis
    ) -> None:
        await own_broker_db.rpush("low", "a", "b", "c")
        await own_broker_db.rpush("high", "a")
        app.state.redis, shared = own_broker_db, app.state.redis

        try:
            response = await client.get("/metrics")
        finally:
            app.state.redis = shared

        assert response.status_code == 200
        types = family_types(response.text)
        assert {name: types.get(name) for name in FAMILIES} == FAMILIES
        depths = {
            labels["queue"]: value
            for labels, value in samples(response.text, "taskgate_queue_depth")
        }
        assert depths == {"high": 1, "webhooks": 0, "default": 0, "low": 3}

    async def test_a_broker_that_does_not_answer_leaves_out_only_the_depths(
        self, app: FastAPI, client: httpx.AsyncClient, settings: Settings, silent_broker: int
    ) -> None:
        hung = create_redis(
            settings.redis.model_copy(update={"url": f"redis://127.0.0.1:{silent_broker}/0"})
        )
        app.state.redis, shared = hung, app.state.redis

        try:
            response = await client.get("/metrics")
        finally:
            app.state.redis = shared
            await hung.aclose()

        assert response.status_code == 200
        assert family_types(response.text)["taskgate_queue_depth"] == "gauge"
        assert samples(response.text, "taskgate_queue_depth") == []
        assert family_types(response.text)["taskgate_http_requests_total"] == "counter"
