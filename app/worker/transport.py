"""The Redis transport the Celery app consumes with: kombu's, with one client per channel.

kombu's Redis channel builds a new `redis.Redis` client (its option parsing, its table of response
callbacks) for every call that keeps its books of unacknowledged messages: at least two per job,
the message kept when it is taken, then removed when it is acknowledged. That was about 6% of a
worker's CPU on a backlog of short tasks (`python -m benchmarks.profile drain`). A client over a
connection pool is safe to share between threads (each command takes a connection from the
pool), so this channel keeps one for as long as its pool lives.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consumer's own BRPOP client: kombu builds it once per channel
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        client = self._shared_client
        # kombu drops its pools on a lost connection: a client of the old pool is not kept.
        if client is None or client.connection_pool is not self.pool:
            client = super()._create_client()  # type: ignore[misc]
            self._shared_client = client
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel


# `broker_transport`: kombu resolves a "module:Class" name.
TRANSPORT = f"{__name__}:Transport"
