"""Read-through caches in Redis: a row's JSON under its own key, kept a few seconds, behind a
breaker (Redis failing is a miss until it has passed, never an error), hits and misses counted
by cache. What a row means and who may read it is the caller's (`tasks/cache.py`,
`projects/cache.py`): a cache holds rows, never answers, so every read still checks access.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from redis.asyncio import Redis

from app.core.breaker import Breaker
from app.core.metrics import CACHE_REQUESTS
from app.core.ratelimit import REDIS_ERRORS

log = logging.getLogger(__name__)

KEY_PREFIX = "taskgate:cache:"


def key_of(kind: str, row_id: uuid.UUID) -> str:
    return f"{KEY_PREFIX}{kind}:{row_id}"


class ReadCache:
    """The rows of one `kind` (its key space and its metric label) on a Redis client."""

    def __init__(self, redis: Redis, *, kind: str, ttl_s: int, breaker_s: float) -> None:
        self.redis = redis
        self.kind = kind
        self.ttl_s = ttl_s
        self.breaker = Breaker(breaker_s)

    async def get(self, row_id: uuid.UUID) -> bytes | str | None:
        """The cached row, or None (not cached, or Redis away)."""
        if self.breaker.is_open:
            return None
        try:
            raw: bytes | str | None = await self.redis.get(key_of(self.kind, row_id))
        except REDIS_ERRORS as exc:
            self._failed(exc)
            return None
        CACHE_REQUESTS.labels(cache=self.kind, result="miss" if raw is None else "hit").inc()
        return raw

    async def put(self, row_id: uuid.UUID, encoded: bytes) -> None:
        if self.breaker.is_open:
            return
        try:
            await self.redis.set(key_of(self.kind, row_id), encoded, ex=self.ttl_s)
        except REDIS_ERRORS as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self.breaker.trip()
        log.warning(
            "read cache skipped: Redis failed", extra={"cache": self.kind, "error": repr(exc)}
        )


async def forget(redis: Redis, kind: str, row_ids: Iterable[uuid.UUID]) -> None:
    """Drop the cached copies of these rows (they changed); after their change has committed."""
    keys = [key_of(kind, row_id) for row_id in row_ids]
    if keys:
        await redis.delete(*keys)
