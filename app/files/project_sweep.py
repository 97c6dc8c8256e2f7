"""The sweep of deleted projects' objects: a scheduler step that empties `projects/<id>/` in S3.

Deleting a project deletes its rows at once (cascade) and leaves a `deleted_projects` row in
the same transaction (`app.projects.deletions`). Each pass claims some of those rows (`SKIP
LOCKED`), lists their prefixes and deletes what it finds, at most `files.retention_batch`
objects in all. Objects are deleted before the pass commits, so a pass interrupted halfway
leaves the row and the next one lists what is left: nothing is tracked per object, and
listing the prefix also finds objects no row knew of (staging copies, outputs of attempts).
A prefix found empty is checked again on later passes until `grace_s` after the deletion (an
attempt still running then may write an output or a result), then the row goes.
Each pass that empties a prefix records `project.objects_deleted` with how many it deleted.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import transaction, utc_now
from app.events import service as event_service
from app.files.retention import RetentionStep
from app.files.storage import Storage, project_prefix
from app.projects import deletions

# A LIST answers at most this many keys.
_LIST_LIMIT = 1000


class ProjectObjectSweep(RetentionStep):
    """Objects of deleted projects."""

    def __init__(self, storage: Storage, *, grace_s: float) -> None:
        super().__init__(storage)
        self.grace = timedelta(seconds=grace_s)

    async def sweep(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime | None = None
    ) -> dict[str, int]:
        """One batch."""
        now = now or utc_now()
        budget = self.storage.files.retention_batch
        deleted = emptied = 0
        async with transaction(sessionmaker) as session:
            for pending in await deletions.claim(session, limit=budget):
                if budget == 0:
                    break
                prefix = project_prefix(pending.project_id)
                keys, more = await asyncio.to_thread(
                    self.storage.list_keys, prefix, limit=min(budget, _LIST_LIMIT)
                )
                if keys:
                    await asyncio.to_thread(self.storage.delete_many, keys)
                budget -= len(keys)
                deleted += len(keys)
                unreported = pending.objects_deleted + len(keys)
                if not more and unreported:
                    emptied += 1
                    event_service.record(
                        session,
                        "project.objects_deleted",
                        project_id=None,
                        subject_id=pending.project_id,
                        actor=None,
                        data={"objects": unreported},
                    )
                    unreported = 0
                if not more and pending.deleted_at + self.grace <= now:
                    await deletions.forget(session, project_id=pending.project_id)
                else:
                    await deletions.record_check(
                        session, project_id=pending.project_id, now=now, objects_deleted=unreported
                    )
        return {"project_objects_deleted": deleted, "project_prefixes_emptied": emptied}
