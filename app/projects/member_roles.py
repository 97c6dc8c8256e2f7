"""Members' roles, remembered per process for a moment: a user's burst of submits and polls on
the routes that hold no connection (`RequireRoleDetached`) reads their membership once, not once
per request.

An entry lives `security.principal_cache_s` (a second by default): a role changed or a member
removed in another process applies within that time; in this process at once (after the commit
that changed it). A non-member is never remembered: that answer is read every time.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.db import transaction
from app.core.memo import Memo
from app.projects.models import Role
from app.projects.repository import MemberRepository

# (user id, project id) -> the user's role in the project.
remembered: Memo[tuple[uuid.UUID, uuid.UUID], Role] = Memo()


class _NotMember(Exception):
    """The user has no role in the project (raised inside a shared role read)."""


async def role_of(
    sessionmaker: async_sessionmaker[AsyncSession],
    project_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    remember_s: float,
) -> Role | None:
    """The user's role in the project, read in a short transaction of its own and remembered
    `remember_s`; None (never remembered) when they are not a member."""

    async def read() -> Role:
        async with transaction(sessionmaker) as session:
            found = await MemberRepository(session).role_of(project_id, user_id)
        if found is None:
            raise _NotMember()
        return found

    try:
        return await remembered.load_once((user_id, project_id), read, ttl_s=remember_s)
    except _NotMember:
        return None


def forget_member(project_id: uuid.UUID, user_id: uuid.UUID) -> None:
    remembered.drop((user_id, project_id))


def forget_project(project_id: uuid.UUID) -> None:
    remembered.forget(lambda key, _: key[1] == project_id)


def forget_user(user_id: uuid.UUID) -> None:
    remembered.forget(lambda key, _: key[0] == user_id)
