"""The project's audit log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from app.auth.exceptions import InvalidCredentials
from app.core.dependencies import SessionDep
from app.core.errors import error_responses
from app.core.pagination import CursorQuery, InvalidCursor, LimitQuery, Page
from app.core.types import Rfc3339Time
from app.events import service as event_service
from app.events.schemas import EventRead
from app.projects.dependencies import ViewerAccess
from app.projects.exceptions import InsufficientRole, ProjectNotFound
from app.projects.models import ROLE_RANK, Role

router = APIRouter(tags=["events"])


@router.get(
    "/projects/{project_id}/events",
    responses=error_responses(InvalidCredentials, InsufficientRole, ProjectNotFound, InvalidCursor),
)
async def list_events(
    access: ViewerAccess,
    session: SessionDep,
    kind: Annotated[
        str | None,
        Query(
            pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
            description="Only this kind, e.g. `task.created`.",
        ),
    ] = None,
    subject_id: Annotated[
        uuid.UUID | None, Query(description="Only events about this object.")
    ] = None,
    since: Annotated[
        Rfc3339Time | None, Query(description="Only events at or after this time (RFC 3339).")
    ] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> Page[EventRead]:
    """The project's audit log, newest first: who (`actor`) did what (`kind`) to which object
    (`subject_id`), with the request id. Any member can read it; `webhook.*` events (receivers'
    URLs and answers) only admins and owners."""
    events, next_cursor = await event_service.list_events(
        session,
        admin=ROLE_RANK[access.role] >= ROLE_RANK[Role.admin],
        project_id=access.project_id,
        kind=kind,
        subject_id=subject_id,
        since=since,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[EventRead.of(event) for event in events], next_cursor=next_cursor)
