"""`taskgate users create`: accounts for operators bootstrapping without HTTP."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.pool import NullPool

from app.auth import service as auth_service
from app.auth.schemas import UserRegister
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker, transaction
from app.core.errors import AppError

T = TypeVar("T")

users = typer.Typer(help="Manage user accounts.", no_args_is_help=True)


async def _in_transaction(work: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    settings = get_settings()
    engine = create_engine(settings.database, poolclass=NullPool)
    try:
        async with transaction(create_sessionmaker(engine)) as session:
            return await work(session, settings)
    finally:
        await engine.dispose()


def run_in_transaction(work: Callable[[AsyncSession, Settings], Awaitable[T]]) -> T:
    """Run `work` in one committed transaction; a domain error ends the command with exit 1."""
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
