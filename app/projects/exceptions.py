"""Project, membership and API key errors."""

from __future__ import annotations

from app.core.errors import Conflict, Forbidden, NotFound, when_parent_vanishes


class ProjectNotFound(NotFound):
    """Also what a caller outside the project gets, so a project's existence is never confirmed."""

    type, title = "project-not-found", "Project not found"


# A row written for a project deleted meanwhile (its API key remembered for up to a second).
for _table in ("tasks", "events", "files", "webhook_endpoints"):
    when_parent_vanishes(f"fk_{_table}_project_id_projects", ProjectNotFound)


class InsufficientRole(Forbidden):
    type, title = "insufficient-role", "Your role in this project does not allow this"


class MemberNotFound(NotFound):
    type, title = "member-not-found", "No such member in this project"


class UserNotFound(NotFound):
    type, title = "user-not-found", "No user with this email"


class AlreadyMember(Conflict):
    type, title = "already-member", "This user is already a member of the project"


class LastOwner(Conflict):
    type, title = "last-owner", "A project needs at least one owner"


class ApiKeyNotFound(NotFound):
    type, title = "api-key-not-found", "API key not found"
