"""File statements. State changes are guarded UPDATEs, never read-then-write."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import KeysetCursor
from app.files.models import File, FileStatus


class FileRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, file: File) -> File:
        self.session.add(file)
        await self.session.flush()
        return file

    async def get(self, file_id: uuid.UUID) -> File | None:
        return await self.session.get(File, file_id, populate_existing=True)

    async def get_in_project(self, project_id: uuid.UUID, file_id: uuid.UUID) -> File | None:
        return await self.session.scalar(
            select(File)
            .where(File.id == file_id, File.project_id == project_id)
            .execution_options(populate_existing=True)
        )

    async def ids_in_project(
        self, project_id: uuid.UUID, file_ids: Collection[uuid.UUID]
    ) -> set[uuid.UUID]:
        rows = await self.session.scalars(
            select(File.id).where(File.project_id == project_id, File.id.in_(list(file_ids)))
        )
        return set(rows)

    async def list_for_project(
        self,
        project_id: uuid.UUID,
        *,
        status: FileStatus | None,
        after: KeysetCursor | None,
        limit: int,
    ) -> Sequence[File]:
        """Newest first, `limit` rows after the cursor `after`."""
        query = select(File).where(File.project_id == project_id)
        if status is not None:
            query = query.where(File.status == status)
        if after is not None:
            query = query.where(tuple_(File.created_at, File.id) < tuple_(after.at, after.id))
        query = query.order_by(File.created_at.desc(), File.id.desc()).limit(limit)
        return (await self.session.scalars(query)).all()

    async def _update_one(self, file_id: uuid.UUID, *where: Any, **values: Any) -> File | None:
        statement = (
            update(File)
            .where(File.id == file_id, *where)
            .values(**values)
            .returning(File)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def mark_ready(
        self, file_id: uuid.UUID, *, size: int, sha256: str | None, expires_at: datetime | None
    ) -> File | None:
        """pending → ready; None when it was not pending (already ready, or gone)."""
        return await self._update_one(
            file_id,
            File.status == FileStatus.pending,
            status=FileStatus.ready,
            size=size,
            sha256=sha256,
            expires_at=expires_at,
        )

    async def record_sha256(self, file_id: uuid.UUID, sha256: str) -> File | None:
        """Set the digest once (a ready file's bytes never change)."""
        return await self._update_one(
            file_id, File.status == FileStatus.ready, File.sha256.is_(None), sha256=sha256
        )

    async def delete(self, file_id: uuid.UUID) -> File | None:
        statement = (
            delete(File)
            .where(File.id == file_id)
            .returning(File)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.scalars(statement)).one_or_none()

    async def delete_expired(self, *, now: datetime, limit: int) -> Sequence[File]:
        """Delete up to `limit` rows past their `expires_at`, oldest first; rows another sweep
        holds are skipped."""
        expired = (
            select(File.id)
            .where(File.expires_at < now)
            .order_by(File.expires_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("expired")  # picked once: an IN subquery may be re-run past the rows it deleted
        )
        statement = (
            delete(File)
            .where(File.id == expired.c.id)
            .returning(File)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.scalars(statement)).all()
