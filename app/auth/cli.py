"""`taskgate users create`: accounts for operators bootstrapping without HTTP.

The server's modules (settings, SQLAlchemy, the services) are imported when a command of this
kind runs, not when the CLI starts: the API client's commands never need them."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

if TYPE_CHECKING:
    from pydantic import ValidationError
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.core.config import Settings

T = TypeVar("T")

users = typer.Typer(help="Manage user accounts.", no_args_is_help=True)

# What must be wired before an operator's command writes (the event subscribers, whose rows the
# events it records get): set by the entry point, which may import every domain.
before_transaction: list[Callable[[], None]] = []


async def _in_transaction(work: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    from sqlalchemy.pool import NullPool

    from app.core.config import get_settings
    from app.core.db import create_engine, create_sessionmaker, transaction

    settings = get_settings()
    engine = create_engine(settings.database, poolclass=NullPool)
    try:
        async with transaction(create_sessionmaker(engine)) as session:
            return await work(session, settings)
    finally:
        await engine.dispose()


def run_in_transaction(work: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction; a domain error ends the command with exit 1."""
    from app.core.errors import AppError

    for prepare in before_transaction:
        prepare()
    try:
        return asyncio.run(_in_transaction(work))
    except AppError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(1) from None


def fail_validation(exc: ValidationError) -> typer.Exit:
    for error in exc.errors():
        typer.echo(f"error: {'.'.join(map(str, error['loc']))}: {error['msg']}", err=True)
    return typer.Exit(2)


@users.command("create")
def create_user(
    email: Annotated[str, typer.Argument(help="The account's email (stored lower-cased).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin, not a prompt.")
    ] = False,
) -> None:
    """Create a user; prints its id. The password is prompted for (or read from stdin)."""
    from pydantic import ValidationError

    from app.auth import service as auth_service
    from app.auth.schemas import UserRegister

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        data = UserRegister(email=email, password=password)
    except ValidationError as exc:
        raise fail_validation(exc) from None

    async def work(session: AsyncSession, settings: Settings) -> str:
        user = await auth_service.create_user(
            session,
            settings=settings.security,
            email=data.email,
            password=data.password,
            by_operator=True,
        )
        return str(user.id)

    user_id = run_in_transaction(work)
    typer.echo(f"created user {data.email}", err=True)
    typer.echo(user_id)
