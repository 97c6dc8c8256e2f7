"""A project's limits, remembered per process for a moment: the hot paths (every authenticated
request's rate limit, a submit's caps) read them without a query each time.

An entry lives `ttl_s` (a second): a change made in another process applies within that time; one
made in this process at once (`forget`, after its commit). Concurrent misses of one project share
one query. A project that does not exist has the deployment's defaults (the request is refused
later, by the role check, as it would be anyway).
"""

from __future__ import annotations

import functools
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import ProjectDefaults
from app.core.memo import MAX_ENTRIES, Memo
from app.core.ratelimit import Rates, RatesOf
from app.core.sql import driver_connection
from app.projects import member_roles
from app.projects.settings import EffectiveProjectSettings, effective_settings, read_settings

TTL_S = 1.0


class ProjectLimits:
    def __init__(self, *, ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self._memo: Memo[uuid.UUID, EffectiveProjectSettings] = Memo(max_entries=max_entries)
        self.queries = 0  # for tests and profiles

    async def of(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        project_id: uuid.UUID,
        defaults: ProjectDefaults,
    ) -> EffectiveProjectSettings:
        """The project's effective limits (its own settings over `defaults`)."""
        return await self._memo.load_once(
            project_id,
            functools.partial(self._load, sessionmaker, project_id, defaults),
            ttl_s=self.ttl_s,
        )

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

    def forget(self, project_id: uuid.UUID) -> None:
        """Drop the project's entry (its settings changed, or it was deleted, here)."""
        self._memo.drop(project_id)

    def clear(self) -> None:
        self._memo.clear()


# This process's memory of project limits.
project_limits = ProjectLimits()


def rates_lookup(defaults: ProjectDefaults, *, remember_s: float) -> RatesOf:
    """The rates and backlog cap of a project (the deployment's defaults for None), from
    `project_limits`. A user who is not a member gets the defaults: the `RateLimit-*` headers of
    their 404 are those of a project that does not exist, never the project's own rates. Their
    membership is read through `member_roles`, remembered `remember_s` (the role check that
    follows on the routes that hold no connection finds it there)."""

    async def rates_of(
        sessionmaker: async_sessionmaker[AsyncSession],
        project_id: uuid.UUID | None,
        member: uuid.UUID | None,
    ) -> Rates:
        if project_id is None or (
            member is not None
            and await member_roles.role_of(sessionmaker, project_id, member, remember_s=remember_s)
            is None
        ):
            limits: ProjectDefaults | EffectiveProjectSettings = defaults
        else:
            limits = await project_limits.of(sessionmaker, project_id, defaults)
        return Rates(
            limits.submit_rate_per_minute, limits.read_rate_per_minute, limits.max_queued_tasks
        )

    return rates_of
