"""Rate limits in Redis: GCRA buckets checked by one Lua script, many requests per round trip.

A bucket allows `limit` requests per `period_s`, all at once from full, then one every
`period_s / limit` (the generic cell rate algorithm: one number per bucket, its theoretical
arrival time, kept in Redis with the server's clock, so every API process agrees). A request may
draw from several buckets (a sign-in: its client address and its email): it is admitted only if
every one of them has room, and only then is any of them charged, in the same script run, so
concurrent requests can never be over-admitted (decision 0014).

Concurrent checks of one process share a script run (`GroupCommit`): under load one round trip
serves many requests; a lone request waits for nothing. When Redis fails or is slow, the
breaker skips it for `breaker_s`: requests are then admitted (`fail_open`) or refused with a 503.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.batching import GroupCommit
from app.core.config import RateLimitSettings
from app.core.errors import ServiceUnavailable, TooManyRequests

log = logging.getLogger(__name__)

KEY_PREFIX = "taskgate:rl:"
REDIS_ERRORS = (RedisError, OSError, TimeoutError)

# KEYS: every bucket of every request, in order. ARGV: per request, its number of buckets, then
# per bucket its emission interval (µs per request), its period (µs, the burst) and its cost.
# Answers per request: admitted (1/0), the µs to wait before a retry could pass (0 if admitted),
# then per bucket the µs its arrival time is ahead of now once this request is counted (or, if
# refused, as it stands).
_GCRA = """
local now_pair = redis.call('TIME')
local now = tonumber(now_pair[1]) * 1000000 + tonumber(now_pair[2])
local out = {}
local key_at, arg_at = 1, 1
while arg_at <= #ARGV do
  local count = tonumber(ARGV[arg_at])
  arg_at = arg_at + 1
  local admitted, wait = 1, 0
  local tats, news = {}, {}
  for b = 1, count do
    local interval = tonumber(ARGV[arg_at])
    local period = tonumber(ARGV[arg_at + 1])
    local cost = tonumber(ARGV[arg_at + 2])
    local tat = tonumber(redis.call('GET', KEYS[key_at + b - 1]) or now)
    if tat < now then tat = now end
    local new = tat + interval * cost
    tats[b], news[b] = tat, new
    if new - now > period then
      admitted = 0
      if new - now - period > wait then wait = new - now - period end
    end
    arg_at = arg_at + 3
  end
  out[#out + 1] = admitted
  out[#out + 1] = math.ceil(wait)
  for b = 1, count do
    local ahead
    if admitted == 1 then
      ahead = news[b] - now
      redis.call('SET', KEYS[key_at + b - 1], string.format('%.0f', news[b]),
        'PX', math.ceil(ahead / 1000) + 1)
    else
      ahead = tats[b] - now
    end
    out[#out + 1] = math.ceil(ahead)
  end
  key_at = key_at + count
end
return out
"""

_US = 1_000_000


class Rates(NamedTuple):
    """A project's rates (`submit_rate_per_minute`, `read_rate_per_minute`)."""

    submit_per_minute: int
    read_per_minute: int


# The rates of a project (None: the deployment's defaults); the projects domain provides it.
RatesOf = Callable[[async_sessionmaker[AsyncSession], uuid.UUID | None], Awaitable[Rates]]


@dataclass(frozen=True)
class Bucket:
    """`limit` requests per `period_s` under `key` (a scope and who: `submit:<project>:<key>`)."""

    key: str
    limit: int
    period_s: float = 60.0
    cost: int = 1


@dataclass(frozen=True)
class Verdict:
    """What a check decided, and what the `RateLimit-*` headers say of the tightest bucket."""

    admitted: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the tightest bucket is full again
    retry_after_s: int  # seconds before a refused request could pass; 0 when admitted
    checked: bool = True  # False: Redis was out of reach and the request was let through

    def headers(self) -> list[tuple[bytes, bytes]]:
        if not self.checked:
            return []
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_s).encode()),
        ]


class RateLimited(TooManyRequests):
    type, title = "rate-limited", "Rate limit exceeded"

    def __init__(self, verdict: Verdict, what: str) -> None:
        super().__init__(
            f"Too many {what}: at most {verdict.limit} a minute. "
            f"Retry after {verdict.retry_after_s} s.",
            headers={"Retry-After": str(verdict.retry_after_s)},
        )


class RateLimiterUnavailable(ServiceUnavailable):
    type, title = "rate-limiter-unavailable", "Rate limiter unavailable"


def _verdict(
    buckets: Sequence[Bucket], admitted: bool, wait_us: int, aheads: Sequence[int]
) -> Verdict:
    remaining, tightest = min(
        (
            (
                max(
                    0,
                    math.floor(
                        (bucket.period_s * _US - ahead) * bucket.limit / (bucket.period_s * _US)
                    ),
                ),
                index,
            )
            for index, (bucket, ahead) in enumerate(zip(buckets, aheads, strict=True))
        ),
    )
    bucket, ahead = buckets[tightest], aheads[tightest]
    return Verdict(
        admitted=admitted,
        limit=bucket.limit,
        remaining=remaining,
        reset_s=math.ceil(ahead / _US),
        retry_after_s=max(1, math.ceil(wait_us / _US)) if not admitted else 0,
    )


class RateLimiter:
    """One per API process, on its Redis client."""

    def __init__(self, redis: Redis, settings: RateLimitSettings) -> None:
        self.redis = redis
        self.settings = settings
        self._script = redis.register_script(_GCRA)
        self._group: GroupCommit[Sequence[Bucket], Verdict] = GroupCommit(
            self._run, max_items=settings.batch
        )
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        """True while the breaker is open: Redis failed less than `breaker_s` ago."""
        return time.monotonic() < self._open_until

    async def check(self, buckets: Sequence[Bucket]) -> Verdict:
        """Admit or refuse one request drawing on `buckets`; with Redis out of reach, let it
        through (`fail_open`) or raise `RateLimiterUnavailable`."""
        if self.is_open:
            return self._unchecked()
        verdict = await self._group(buckets)
        return verdict if verdict.checked else self._unchecked()

    def _unchecked(self) -> Verdict:
        if not self.settings.fail_open:
            retry = max(1, math.ceil(self._open_until - time.monotonic()))
            raise RateLimiterUnavailable(
                "Rate limits cannot be checked right now; retry shortly.",
                headers={"Retry-After": str(retry)},
            )
        return Verdict(
            admitted=True, limit=0, remaining=0, reset_s=0, retry_after_s=0, checked=False
        )

    async def _run(self, requests: Sequence[Sequence[Bucket]]) -> list[Verdict]:
        keys: list[str] = []
        args: list[int] = []
        for buckets in requests:
            args.append(len(buckets))
            for bucket in buckets:
                keys.append(KEY_PREFIX + bucket.key)
                period_us = round(bucket.period_s * _US)
                args += [max(1, period_us // bucket.limit), period_us, bucket.cost]
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                answer = await self._script(keys=keys, args=args)
        except REDIS_ERRORS as exc:
            self._open_until = time.monotonic() + self.settings.breaker_s
            log.warning("rate limits unchecked: Redis failed", extra={"error": repr(exc)})
            unchecked = Verdict(
                admitted=True, limit=0, remaining=0, reset_s=0, retry_after_s=0, checked=False
            )
            return [unchecked] * len(requests)
        verdicts: list[Verdict] = []
        at = 0
        for buckets in requests:
            admitted, wait_us = int(answer[at]), int(answer[at + 1])
            aheads = [int(value) for value in answer[at + 2 : at + 2 + len(buckets)]]
            at += 2 + len(buckets)
            verdicts.append(_verdict(buckets, bool(admitted), wait_us, aheads))
        return verdicts
