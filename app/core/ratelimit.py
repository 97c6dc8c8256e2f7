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
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.batching import GroupCommit
from app.core.breaker import Breaker
from app.core.config import RateLimitSettings
from app.core.errors import ServiceUnavailable, TooManyRequests

log = logging.getLogger(__name__)

KEY_PREFIX = "taskgate:rl:"
# The hash of unfinished tasks: a field per project, and `*` for all of them. Submits add to it
# as they are admitted; the scheduler sets it back from PostgreSQL on every pass
# (`tasks/backlog.py`).
BACKLOG_KEY = "taskgate:backlog"
ALL_PROJECTS = "*"
REDIS_ERRORS = (RedisError, OSError, TimeoutError)

# One run checks many requests. KEYS: the keys they name, each once. ARGV[1]: the requests, as
# tokens separated by spaces: per request its number of limits, then five per limit: its kind,
# the position of its key in KEYS, two values and its cost. A rate (kind 0): its emission interval
# (µs per request) and its period (µs, the burst); its key holds the arrival time. A cap (kind 1):
# the most it may count, and its field in the hash its key names.
# The answer is one string of tokens too, per request: admitted (1/0), the µs to wait before a
# retry could pass, the position of the first limit that refused (0: none), then per limit a
# rate's µs ahead of now once this request is counted (as it stands, if refused) or a cap's count.
# (Arguments and answers as two strings: the client packs and parses two values, not hundreds.)
_SCRIPT = """
local now_pair = redis.call('TIME')
local now = tonumber(now_pair[1]) * 1000000 + tonumber(now_pair[2])
local t = {}
for token in string.gmatch(ARGV[1], '%S+') do t[#t + 1] = token end
local out = {}
local at = 1
while at <= #t do
  local count = tonumber(t[at])
  at = at + 1
  local admitted, wait, refused_by = 1, 0, 0
  local kinds, keys, olds, news, fields = {}, {}, {}, {}, {}
  for b = 1, count do
    local kind, key, cost = tonumber(t[at]), KEYS[tonumber(t[at + 1])], tonumber(t[at + 4])
    local refused = false
    kinds[b], keys[b] = kind, key
    if kind == 0 then
      local interval, period = tonumber(t[at + 2]), tonumber(t[at + 3])
      local tat = tonumber(redis.call('GET', key) or now)
      if tat < now then tat = now end
      olds[b], news[b] = tat - now, tat + interval * cost - now
      if news[b] > period then
        refused = true
        if news[b] - period > wait then wait = news[b] - period end
      end
    else
      local cap, field = tonumber(t[at + 2]), t[at + 3]
      local held = tonumber(redis.call('HGET', key, field) or 0)
      fields[b] = field
      olds[b], news[b] = held, held + cost
      if news[b] > cap then refused = true end
    end
    if refused then
      admitted = 0
      if refused_by == 0 then refused_by = b end
    end
    at = at + 5
  end
  out[#out + 1] = admitted
  out[#out + 1] = string.format('%.0f', math.ceil(wait))
  out[#out + 1] = refused_by
  for b = 1, count do
    local value = olds[b]
    if admitted == 1 then
      value = news[b]
      if kinds[b] == 0 then
        redis.call('SET', keys[b], string.format('%.0f', value + now),
          'PX', math.ceil(value / 1000) + 1)
      else
        redis.call('HINCRBY', keys[b], fields[b], value - olds[b])
      end
    end
    out[#out + 1] = string.format('%.0f', math.ceil(value))
  end
end
return table.concat(out, ' ')
"""

_US = 1_000_000


class Rates(NamedTuple):
    """A project's rates and its cap on unfinished tasks (its effective settings)."""

    submit_per_minute: int
    read_per_minute: int
    max_queued_tasks: int


# The rates of a project (None: the deployment's defaults) for a caller: the third argument is a
# user whose membership decides (a non-member gets the defaults, as for a project that does not
# exist), or None when no check is needed. The projects domain provides it.
RatesOf = Callable[
    [async_sessionmaker[AsyncSession], uuid.UUID | None, uuid.UUID | None], Awaitable[Rates]
]


@dataclass(frozen=True)
class Bucket:
    """`limit` requests per `period_s` under `key` (a scope and who: `submit:<project>:<key>`)."""

    key: str
    limit: int
    period_s: float = 60.0
    cost: int = 1


@dataclass(frozen=True)
class Cap:
    """A count that admitted requests add `cost` to and that may not pass `cap`: field `field` of
    the hash `key` (the backlog of unfinished tasks; whoever finishes them sets it back)."""

    key: str
    field: str
    cap: int
    cost: int = 1


Limit = Bucket | Cap


@dataclass(frozen=True)
class Verdict:
    """What a check decided, and what the `RateLimit-*` headers say of the tightest rate."""

    admitted: bool
    limit: int
    remaining: int
    reset_s: int  # seconds until the tightest rate's bucket is full again
    retry_after_s: int  # seconds before a refused request could pass; 0 when admitted
    checked: bool = True  # False: Redis was out of reach and the request was let through
    refused_by: Limit | None = None  # the first bucket or cap without room
    held: int = 0  # what that cap counts

    def headers(self) -> list[tuple[bytes, bytes]]:
        if not self.checked or self.limit == 0:
            return []
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_s).encode()),
        ]


UNCHECKED = Verdict(admitted=True, limit=0, remaining=0, reset_s=0, retry_after_s=0, checked=False)


class RateLimited(TooManyRequests):
    type, title = "rate-limited", "Rate limit exceeded"

    def __init__(self, verdict: Verdict, what: str) -> None:
        super().__init__(
            f"Too many {what}: at most {verdict.limit} a minute. "
            f"Retry after {verdict.retry_after_s} s.",
            headers={"Retry-After": str(verdict.retry_after_s)},
        )


class BacklogFull(TooManyRequests):
    type, title = "backlog-full", "Project backlog full"

    def __init__(self, verdict: Verdict, retry_after_s: int) -> None:
        super().__init__(
            f"The project has {verdict.held} unfinished tasks, its `max_queued_tasks`; "
            "retry once some have finished.",
            headers={"Retry-After": str(retry_after_s)},
        )


class SystemBacklogFull(ServiceUnavailable):
    type, title = "system-backlog-full", "Too many unfinished tasks"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            "The platform holds as many unfinished tasks as it accepts; retry shortly.",
            headers={"Retry-After": str(retry_after_s)},
        )


class RateLimiterUnavailable(ServiceUnavailable):
    type, title = "rate-limiter-unavailable", "Rate limiter unavailable"


def _verdict(
    limits: Sequence[Limit], admitted: bool, wait_us: int, refused_at: int, values: Sequence[int]
) -> Verdict:
    rates = [
        (bucket, ahead)
        for bucket, ahead in zip(limits, values, strict=True)
        if isinstance(bucket, Bucket)
    ]
    limit = remaining = reset_s = 0
    if rates:
        remaining, bucket, ahead = min(
            (
                (
                    max(
                        0,
                        math.floor(
                            (bucket.period_s * _US - ahead) * bucket.limit / (bucket.period_s * _US)
                        ),
                    ),
                    bucket,
                    ahead,
                )
                for bucket, ahead in rates
            ),
            key=lambda found: found[0],
        )
        limit, reset_s = bucket.limit, math.ceil(ahead / _US)
    refused_by = limits[refused_at - 1] if refused_at else None
    return Verdict(
        admitted=admitted,
        limit=limit,
        remaining=remaining,
        reset_s=reset_s,
        retry_after_s=0 if admitted else max(1, math.ceil(wait_us / _US)),
        refused_by=refused_by,
        held=values[refused_at - 1] if isinstance(refused_by, Cap) else 0,
    )


class RateLimiter:
    """One per API process, on its Redis client."""

    def __init__(self, redis: Redis, settings: RateLimitSettings) -> None:
        self.redis = redis
        self.settings = settings
        self._script = redis.register_script(_SCRIPT)
        self._group: GroupCommit[Sequence[Limit], Verdict] = GroupCommit(
            self._run, max_items=settings.batch
        )
        self.breaker = Breaker(settings.breaker_s)

    @property
    def is_open(self) -> bool:
        """True while the breaker is open: Redis failed less than `breaker_s` ago."""
        return self.breaker.is_open

    async def check(self, limits: Sequence[Limit]) -> Verdict:
        """Admit or refuse one request drawing on `limits` (all of them have room, or none is
        charged); with Redis out of reach, let it through (`fail_open`) or raise
        `RateLimiterUnavailable`."""
        if self.is_open:
            return self._unchecked()
        verdict = await self._group(limits)
        return verdict if verdict.checked else self._unchecked()

    def _unchecked(self) -> Verdict:
        if not self.settings.fail_open:
            retry = max(1, math.ceil(self.breaker.open_for_s))
            raise RateLimiterUnavailable(
                "Rate limits cannot be checked right now; retry shortly.",
                headers={"Retry-After": str(retry)},
            )
        return UNCHECKED

    async def _run(self, requests: Sequence[Sequence[Limit]]) -> list[Verdict]:
        keys: dict[str, int] = {}
        tokens: list[str] = []
        for limits in requests:
            tokens.append(str(len(limits)))
            for limit in limits:
                if isinstance(limit, Bucket):
                    key = KEY_PREFIX + limit.key
                    period_us = round(limit.period_s * _US)
                    pair = (str(max(1, period_us // limit.limit)), str(period_us))
                    kind = "0"
                else:
                    key, pair, kind = limit.key, (str(limit.cap), limit.field), "1"
                position = keys.setdefault(key, len(keys) + 1)
                tokens += (kind, str(position), *pair, str(limit.cost))
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                answer = await self._script(keys=list(keys), args=[" ".join(tokens)])
        except REDIS_ERRORS as exc:
            self.breaker.trip()
            log.warning("rate limits unchecked: Redis failed", extra={"error": repr(exc)})
            return [UNCHECKED] * len(requests)
        numbers = [int(token) for token in answer.split()]
        verdicts: list[Verdict] = []
        at = 0
        for limits in requests:
            admitted, wait_us, refused_at = numbers[at : at + 3]
            values = numbers[at + 3 : at + 3 + len(limits)]
            at += 3 + len(limits)
            verdicts.append(_verdict(limits, bool(admitted), wait_us, refused_at, values))
        return verdicts
