"""Members' roles, remembered per process for a moment: a user's burst of submits and polls on
the routes that hold no connection (`RequireRoleDetached`) reads their membership once, not once
per request.

An entry lives `security.principal_cache_s` (a second by default): a role changed or a member
removed in another process applies within that time; in this process at once (after the commit
that changed it). A non-member is never remembered: that answer is read every time.
"""

from __future__ import annotations

import uuid

from app.core.memo import Memo
from app.projects.models import Role

# (user id, project id) -> the user's role in the project.
remembered: Memo[tuple[uuid.UUID, uuid.UUID], Role] = Memo()


def forget_member(project_id: uuid.UUID, user_id: uuid.UUID) -> None:
    remembered.drop((user_id, project_id))


def forget_project(project_id: uuid.UUID) -> None:
    remembered.forget(lambda key, _: key[1] == project_id)


def forget_user(user_id: uuid.UUID) -> None:
    remembered.forget(lambda key, _: key[0] == user_id)
