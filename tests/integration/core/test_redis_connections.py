"""The process's Redis client when the network drops its pooled connections."""

from __future__ import annotations

import asyncio
import uuid

import uvloop

from app.core.config import Settings
from app.core.redis import create_redis
from tests.proxy import Proxy


class TestDroppedConnections:
    def test_a_pooled_connection_the_network_reset_is_replaced_before_use(
        self, settings: Settings
    ) -> None:
        key = f"test:dropped:{uuid.uuid4().hex}"

        async def use_after_a_reset(proxy: Proxy) -> object:
            client = create_redis(
                settings.redis.model_copy(update={"url": proxy.url(settings.redis.url)})
            )
            try:
                await client.set(key, "1", ex=60)
                assert proxy.cut() == 1  # the pooled connection, reset
                await asyncio.sleep(0.2)  # the reset has reached the client's transport
                return await client.get(key)
            finally:
                await client.aclose()

        # On uvloop, as the API, the workers and the scheduler run: it refuses to write on a
        # reset transport with a RuntimeError where asyncio's own loop drops the write.
        with Proxy.to(settings.redis.url) as proxy:
            value = uvloop.run(use_after_a_reset(proxy))

        assert value == b"1"
