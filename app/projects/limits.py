"""A project's limits, remembered per process for a moment: the hot paths (every authenticated
request's rate limit, a submit's caps) read them without a query each time.

An entry lives `ttl_s` (a second): a change made in another process applies within that time; one
made in this process at once (`forget`, after its commit). Concurrent misses of one project share
one query. A project that does not exist has the deployment's defaults (the request is refused
later, by the role check, as it would be anyway).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import ProjectDefaults
from app.core.ratelimit import Rates, RatesOf
from app.core.sql import driver_connection
from app.projects.settings import EffectiveProjectSettings, effective_settings, read_settings

MAX_ENTRIES = 10_000
TTL_S = 1.0


class ProjectLimits:
    def __init__(self, *, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[uuid.UUID, tuple[float, EffectiveProjectSettings]] = (
            OrderedDict()
        )
        self._loading: dict[uuid.UUID, asyncio.Future[EffectiveProjectSettings]] = {}
        self.queries = 0  # for tests and profiles

    async def of(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        project_id: uuid.UUID,
        defaults: ProjectDefaults,
    ) -> EffectiveProjectSettings:
        """The project's effective limits (its own settings over `defaults`)."""
        found = self._entries.get(project_id)
        if found is not None and time.monotonic() < found[0]:
            return found[1]
        if (loading := self._loading.get(project_id)) is not None:
            return await asyncio.shield(loading)
        future: asyncio.Future[EffectiveProjectSettings] = (
            asyncio.get_running_loop().create_future()
        )
        self._loading[project_id] = future
        try:
            limits = await self._load(sessionmaker, project_id, defaults)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters, if any, see it; none is not an error
            raise
        else:
            future.set_result(limits)
            self._put(project_id, limits)
            return limits
        finally:
            del self._loading[project_id]

    async def _load(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        project_id: uuid.UUID,
        defaults: ProjectDefaults,
    ) -> EffectiveProjectSettings:
        self.queries += 1
        async with driver_connection(sessionmaker) as driver:
            stored = await driver.fetchval(
                "SELECT settings FROM projects WHERE id = $1", project_id
            )
        # jsonb arrives decoded (SQLAlchemy's codec on the pool's connections); None: no project.
        own = read_settings(stored if isinstance(stored, dict) else {})
        return effective_settings(own, defaults)

    def _put(self, project_id: uuid.UUID, limits: EffectiveProjectSettings) -> None:
        if self.ttl_s <= 0:
            return
        self._entries[project_id] = (time.monotonic() + self.ttl_s, limits)
        self._entries.move_to_end(project_id)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def forget(self, project_id: uuid.UUID) -> None:
        """Drop the project's entry (its settings changed, or it was deleted, here)."""
        self._entries.pop(project_id, None)

    def clear(self) -> None:
        self._entries.clear()


# This process's memory of project limits.
project_limits = ProjectLimits()


def rates_lookup(defaults: ProjectDefaults) -> RatesOf:
    """The rates and backlog cap of a project (the deployment's defaults for None), from
    `project_limits`."""

    async def rates_of(
        sessionmaker: async_sessionmaker[AsyncSession], project_id: uuid.UUID | None
    ) -> Rates:
        limits = (
            defaults
            if project_id is None
            else await project_limits.of(sessionmaker, project_id, defaults)
        )
        return Rates(
            limits.submit_rate_per_minute, limits.read_rate_per_minute, limits.max_queued_tasks
        )

    return rates_of
