"""Queries of the audit log."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import KeysetCursor
from app.events.models import Event


class EventRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list_for_project(
        self,
        project_id: uuid.UUID,
        *,
        kind: str | None,
        subject_id: uuid.UUID | None,
        since: datetime | None,
        after: KeysetCursor | None,
        limit: int,
        hidden_prefixes: Sequence[str] = (),
    ) -> Sequence[Event]:
        """Newest first, `limit` rows after the cursor `after`; no kind that starts with one of
        `hidden_prefixes`."""
        query = select(Event).where(Event.project_id == project_id)
        for prefix in hidden_prefixes:
            query = query.where(Event.kind.not_like(f"{prefix}%"))
        if kind is not None:
            query = query.where(Event.kind == kind)
        if subject_id is not None:
            query = query.where(Event.subject_id == subject_id)
        if since is not None:
            query = query.where(Event.at >= since)
        if after is not None:
            query = query.where(tuple_(Event.at, Event.id) < tuple_(after.at, after.id))
        query = query.order_by(Event.at.desc(), Event.id.desc()).limit(limit)
        return (await self.session.scalars(query)).all()
