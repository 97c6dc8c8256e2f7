"""`taskgate projects create` and `taskgate keys create`: bootstrapping without HTTP; and
`taskgate users deactivate`, here because it takes what the user created in projects with it."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from app.auth.cli import fail_validation, run_in_transaction, users

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.core.config import Settings

projects = typer.Typer(help="Manage projects.", no_args_is_help=True)
keys = typer.Typer(help="Manage API keys.", no_args_is_help=True)


@projects.command("create")
def create_project(
    name: Annotated[str, typer.Argument(help="The project's name.")],
    owner: Annotated[str, typer.Option(help="Email of an existing user who becomes its owner.")],
) -> None:
    """Create a project owned by a user; prints its id."""
    from pydantic import ValidationError

    from app.auth import service as auth_service
    from app.projects import service as project_service
    from app.projects.exceptions import UserNotFound
    from app.projects.schemas import ProjectCreate

    try:
        data = ProjectCreate(name=name)
    except ValidationError as exc:
        raise fail_validation(exc) from None

    async def work(session: AsyncSession, settings: Settings) -> str:  # noqa: ARG001
        user = await auth_service.get_user_by_email(session, owner)
        if user is None:
            raise UserNotFound(f"No user is registered as {owner}.")
        project = await project_service.create_project(
            session, owner=user, name=data.name, actor=None
        )
        return str(project.id)

    project_id = run_in_transaction(work)
    typer.echo(f"created project {data.name!r} owned by {owner}", err=True)
    typer.echo(project_id)


@keys.command("create")
def create_key(
    project: Annotated[uuid.UUID, typer.Option(help="The project's id.")],
    name: Annotated[str, typer.Option(help="What the key is for, e.g. `ci`.")],
    scope: Annotated[
        list[str] | None,
        typer.Option(help="Repeatable: read, write; default: both (acts as a `member`)."),
    ] = None,
) -> None:
    """Create an API key for a project; prints the key, which is shown only this once."""
    from pydantic import ValidationError

    from app.projects import keys as project_keys
    from app.projects import service as project_service
    from app.projects.access import ProjectAccess
    from app.projects.exceptions import ProjectNotFound
    from app.projects.models import Role
    from app.projects.schemas import ApiKeyCreate

    try:
        data = ApiKeyCreate(name=name, scopes=scope) if scope else ApiKeyCreate(name=name)
    except ValidationError as exc:
        raise fail_validation(exc) from None

    async def work(session: AsyncSession, settings: Settings) -> str:
        if not await project_service.exists(session, project_id=project):
            raise ProjectNotFound()
        access = ProjectAccess(project_id=project, role=Role.owner, principal=None)
        _, secret = await project_keys.create_api_key(
            session, settings=settings.security, access=access, name=data.name, scopes=data.scopes
        )
        return secret

    secret = run_in_transaction(work)
    typer.echo(f"created API key {data.name!r} for project {project}; store it now:", err=True)
    typer.echo(secret)


@users.command("deactivate")
def deactivate_user(
    email: Annotated[str, typer.Argument(help="The account's email.")],
) -> None:
    """Deactivate a user; prints its id. Their sign-ins and tokens stop working, and the API keys
    and webhooks they created in any project are revoked and disabled (again, if repeated)."""
    from app.auth import service as auth_service
    from app.projects import departures
    from app.projects.exceptions import UserNotFound

    async def work(session: AsyncSession, settings: Settings) -> tuple[str, bool]:  # noqa: ARG001
        user = await auth_service.get_user_by_email(session, email)
        if user is None:
            raise UserNotFound(f"No user is registered as {email}.")
        deactivated = await departures.deactivate_user(session, user_id=user.id, actor=None)
        return str(user.id), deactivated

    user_id, deactivated = run_in_transaction(work)
    state = "deactivated" if deactivated else "was already inactive; swept again"
    typer.echo(f"{email} {state}: their API keys are revoked, their webhooks disabled", err=True)
    typer.echo(user_id)
