"""The dependencies that resolve the caller's role in the project of the path (docs/decisions/0007)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from app.auth.admission import admission_of
from app.auth.dependencies import BEARER_SCHEMES, CurrentPrincipal, get_detached_principal
from app.core.dependencies import SessionDep
from app.core.openapi import secured_by
from app.projects import access as project_access
from app.projects.access import ProjectAccess
from app.projects.exceptions import InsufficientRole, ProjectNotFound
from app.projects.models import Role


class RequireRole:
    """`Depends(RequireRole(Role.admin))`: the caller's access to `{project_id}`, at least `role`.

    404 when the caller is not in the project (or it does not exist), 403 when the role is too low.
    """

    def __init__(self, role: Role) -> None:
        self.role = role

    async def __call__(
        self, project_id: uuid.UUID, session: SessionDep, principal: CurrentPrincipal
    ) -> ProjectAccess:
        return await project_access.authorize(
            session, project_id=project_id, principal=principal, role=self.role
        )


class RequireRoleDetached:
    """`RequireRole` for routes that hold no connection while they run (a slow upload): the
    caller (`DetachedPrincipal`) and the role are resolved in short transactions of their own."""

    def __init__(self, role: Role) -> None:
        self.role = role
        secured_by(self, *BEARER_SCHEMES)

    async def __call__(self, request: Request, project_id: uuid.UUID) -> ProjectAccess:
        # The caller without a dependency of its own: one fewer for FastAPI to resolve per submit.
        principal = await get_detached_principal(request)
        state = request.app.state
        try:
            return await project_access.authorize_detached(
                state.sessionmaker,
                project_id=project_id,
                principal=principal,
                role=self.role,
                remember_s=state.settings.security.principal_cache_s,
            )
        except (ProjectNotFound, InsufficientRole):
            # A submission is charged once admitted; refused here, it is charged as a read.
            if (admission := admission_of(request)) is not None:
                await admission.refuse_submit(request, principal)
            raise


ViewerAccess = Annotated[ProjectAccess, Depends(RequireRole(Role.viewer))]
MemberAccess = Annotated[ProjectAccess, Depends(RequireRole(Role.member))]
AdminAccess = Annotated[ProjectAccess, Depends(RequireRole(Role.admin))]
OwnerAccess = Annotated[ProjectAccess, Depends(RequireRole(Role.owner))]
DetachedViewerAccess = Annotated[ProjectAccess, Depends(RequireRoleDetached(Role.viewer))]
DetachedMemberAccess = Annotated[ProjectAccess, Depends(RequireRoleDetached(Role.member))]
