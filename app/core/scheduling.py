"""What the scheduler hands each domain's step, and the shape of a step that runs periodically.

Each domain that needs background upkeep exports one step (`scheduler_step`, or a `Periodic`
for work due only every so often); `app/worker/scheduler.py` runs them in order on every pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepContext:
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    settings: Settings
    # The broker lost its data since the last pass: what was published before may be gone.
    broker_lost: bool = False


class Step(Protocol):
    """One domain's share of a scheduler pass; returns what it did, for logs and tests."""

    async def __call__(self, context: StepContext) -> Mapping[str, int]: ...


Sweep = Callable[[StepContext], Awaitable[Mapping[str, int]]]


class Periodic:
    """A step that runs `sweep` every `interval_s`, and again on the next pass while a batch
    came back full. A sweep failing with one of `skip_on` waits for the next interval."""

    def __init__(
        self,
        sweep: Sweep,
        *,
        interval_s: float,
        batch: int,
        skip_on: tuple[type[Exception], ...] = (),
    ) -> None:
        self._sweep = sweep
        self.interval_s = interval_s
        self.batch = batch
        self.skip_on = skip_on
        self._next_run = 0.0  # the first pass runs it

    async def __call__(self, context: StepContext) -> Mapping[str, int]:
        started = time.monotonic()
        if started < self._next_run:
            return {}
        # Set before sweeping: a failing dependency is retried next interval, not every pass.
        self._next_run = started + self.interval_s
        try:
            done = await self._sweep(context)
        except self.skip_on as exc:  # its batch rolled back: the next interval does it again
            log.warning("scheduler step skipped", extra={"error": str(exc)})
            return {}
        if done and max(done.values()) >= self.batch:
            self._next_run = started  # more is due: continue on the next pass
        return done
