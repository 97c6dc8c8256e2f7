"""A read-through cache in Redis of project rows, for `GET /v1/projects/{id}`.

The row (name, owner, settings, creation time) is kept `cache.project_ttl_s` under the project's id and
forgotten after the commit of every change made through the API (`update_project`,
`delete_project`), in whichever process made it. The caller's role is never cached here: every
read checks it (`RequireRoleDetached`), so one project's row can never reach another's caller.
A read that raced a change may put the row it read just before that change; it lives at most the
TTL, which is why the TTL is seconds. Redis failing is a miss (`core/readcache.py`).
"""

from __future__ import annotations

import uuid
from datetime import datetime

import orjson
from redis.asyncio import Redis

from app.core import readcache
from app.core.config import CacheSettings
from app.core.db import detached
from app.core.readcache import ReadCache
from app.projects.models import Project

KIND = "project"


def _encode(project: Project) -> bytes:
    return orjson.dumps(
        {
            "id": project.id,
            "name": project.name,
            "owner_id": project.owner_id,
            "settings": project.settings,
            "created_at": project.created_at,
        },
        default=str,  # asyncpg's UUID
    )


def _decode(raw: bytes | str) -> Project:
    values = orjson.loads(raw)
    for column in ("id", "owner_id"):
        values[column] = uuid.UUID(values[column])
    values["created_at"] = datetime.fromisoformat(values["created_at"])
    return detached(Project, values)


class ProjectCache:
    """One per API process (`app.state.project_cache`), on its Redis client."""

    def __init__(self, redis: Redis, settings: CacheSettings) -> None:
        self.redis = redis
        self.rows = ReadCache(
            redis, kind=KIND, ttl_s=settings.project_ttl_s, breaker_s=settings.breaker_s
        )

    async def get(self, project_id: uuid.UUID) -> Project | None:
        raw = await self.rows.get(project_id)
        return None if raw is None else _decode(raw)

    async def put(self, project: Project) -> None:
        await self.rows.put(project.id, _encode(project))

    async def forget(self, project_id: uuid.UUID) -> None:
        """Drop the project's row (it changed); after the change has committed."""
        await readcache.forget(self.redis, KIND, [project_id])
