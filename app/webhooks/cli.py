"""`taskgate webhooks list|deliveries` through the HTTP API, and `taskgate webhooks reseal`, an
operator's command on the database: the signing secrets sealed under the current key."""

from __future__ import annotations

import enum
import uuid
from typing import TYPE_CHECKING, Annotated

import typer

from app.auth.cli import run_in_transaction
from app.client.options import (
    AllOption,
    ApiKeyOption,
    CursorOption,
    LimitOption,
    OutputOption,
    ProfileOption,
    ProjectOption,
    UrlOption,
    connect,
)
from app.client.output import Output, field, show_page

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.core.config import Settings

webhooks = typer.Typer(help="Webhook endpoints and their deliveries.", no_args_is_help=True)

ENDPOINT_COLUMNS = (
    field("id"),
    field("url"),
    field("events"),
    field("enabled"),
    field("failing since", "failing_since"),
    field("description"),
    field("created", "created_at"),
)
DELIVERY_COLUMNS = (
    field("id"),
    field("event", "event_type"),
    field("status"),
    field("attempt"),
    field("answer", "response_status"),
    field("last error", "last_error"),
    field("next attempt", "next_attempt_at"),
    field("created", "created_at"),
)


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    succeeded = "succeeded"
    failed = "failed"


@webhooks.command("list")
def list_webhooks(
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    all_: AllOption = False,
    output: OutputOption = Output.table,
    project: ProjectOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    profile: ProfileOption = None,
) -> None:
    """List the project's webhook endpoints (needs `admin`)."""
    with connect(url=url, api_key=api_key, profile=profile, project=project) as api:
        page = api.page(
            f"/v1/projects/{api.connection.require_project()}/webhooks",
            limit=limit,
            cursor=cursor,
            follow=all_,
        )
    show_page(page, output, ENDPOINT_COLUMNS)


@webhooks.command("deliveries")
def list_deliveries(
    endpoint_id: Annotated[
        uuid.UUID, typer.Argument(metavar="ENDPOINT_ID", help="The endpoint's id.")
    ],
    status: Annotated[
        DeliveryStatus | None, typer.Option(help="Only deliveries in this state.")
    ] = None,
    event_type: Annotated[
        str | None, typer.Option(help="Only deliveries of this event, e.g. task.failed.")
    ] = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    all_: AllOption = False,
    output: OutputOption = Output.table,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    profile: ProfileOption = None,
) -> None:
    """List an endpoint's deliveries, newest first: state, attempts, last answer (needs
    `admin`)."""
    with connect(url=url, api_key=api_key, profile=profile) as api:
        page = api.page(
            f"/v1/webhooks/{endpoint_id}/deliveries",
            limit=limit,
            cursor=cursor,
            follow=all_,
            status=status,
            event_type=event_type,
        )
    show_page(page, output, DELIVERY_COLUMNS)


@webhooks.command("reseal")
def reseal() -> None:
    """Seal every endpoint's secrets under TASKGATE_WEBHOOKS__SECRET_KEY (after a key rotation, or
    an upgrade from unsealed secrets); prints how many endpoints changed. Works on the database
    directly (the server's settings), not through the API."""
    from app.webhooks.resealing import reseal_all
    from app.webhooks.sealing import UnsealableSecret

    async def work(session: AsyncSession, settings: Settings) -> int:
        return await reseal_all(session, settings.webhooks)

    try:
        changed = run_in_transaction(work)
    except UnsealableSecret as exc:
        typer.echo(f"error: {exc}; nothing was changed", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{changed} endpoint(s) resealed")
