"""Deleted projects whose objects may still be in S3: each deletion leaves a row (written in its
transaction) that the files domain's sweep (`app.files.project_sweep`) works through and removes.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.projects.models import DeletedProject
from app.projects.repository import DeletedProjectRepository


async def claim(session: AsyncSession, *, limit: int) -> Sequence[DeletedProject]:
    """Up to `limit` deleted projects to sweep, locked until the session commits; those never
    checked first, then the least recently checked."""
    return await DeletedProjectRepository(session).claim(limit=limit)


async def record_check(
    session: AsyncSession, *, project_id: uuid.UUID, now: datetime, objects_deleted: int
) -> None:
    """A sweep listed the project's prefix at `now`; `objects_deleted` not reported yet."""
    await DeletedProjectRepository(session).checked(
        project_id, now=now, objects_deleted=objects_deleted
    )


async def forget(session: AsyncSession, *, project_id: uuid.UUID) -> None:
    """Nothing of the project is left to sweep."""
    await DeletedProjectRepository(session).forget(project_id)
