"""`taskgate webhooks reseal`: the signing secrets sealed under the current key."""

from __future__ import annotations

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.cli import run_in_transaction
from app.core.config import Settings
from app.webhooks.resealing import reseal_all
from app.webhooks.sealing import UnsealableSecret

webhooks = typer.Typer(help="Manage webhook endpoints.", no_args_is_help=True)


@webhooks.command("reseal")
def reseal() -> None:
    """Seal every endpoint's secrets under TASKGATE_WEBHOOKS__SECRET_KEY (after a key rotation, or
    an upgrade from unsealed secrets); prints how many endpoints changed."""

    async def work(session: AsyncSession, settings: Settings) -> int:
        return await reseal_all(session, settings.webhooks)

    try:
        changed = run_in_transaction(work)
    except UnsealableSecret as exc:
        typer.echo(f"error: {exc}; nothing was changed", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{changed} endpoint(s) resealed")
