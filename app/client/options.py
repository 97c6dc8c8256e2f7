"""The options every API command takes, and `connect()`: the client for them, with each
failure ended by its exit code (`errors.ExitCode`) and one `error: …` line on stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from app.client.config import resolve
from app.client.errors import ApiError, CommandError, ConfigError, ExitCode, Unreachable
from app.client.http import ApiClient
from app.client.output import Output

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="TASKGATE_URL",
        help="API base URL (else the profile's, else http://127.0.0.1:8000).",
        show_default=False,
    ),
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="TASKGATE_API_KEY",
        help="API key (`tg_…`) or access token (else the profile's).",
        show_default=False,
    ),
]
ProjectOption = Annotated[
    str | None,
    typer.Option(
        "--project",
        envvar="TASKGATE_PROJECT",
        help="Project id (else the profile's).",
        show_default=False,
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        envvar="TASKGATE_PROFILE",
        help="Profile of $XDG_CONFIG_HOME/taskgate/config.toml (default: `default`).",
        show_default=False,
    ),
]
OutputOption = Annotated[
    Output,
    typer.Option(
        "--output",
        "-o",
        envvar="TASKGATE_OUTPUT",
        case_sensitive=False,
        help="table (for people) or json (stable, for scripts).",
    ),
]
LimitOption = Annotated[int, typer.Option(min=1, max=200, help="Items per page.")]
CursorOption = Annotated[
    str | None,
    typer.Option(help="Start at this page: a previous answer's next_cursor.", show_default=False),
]
AllOption = Annotated[bool, typer.Option("--all", help="Follow next_cursor to the last page.")]


def fail(code: ExitCode, message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


@contextmanager
def connect(
    *,
    url: str | None,
    api_key: str | None,
    profile: str | None,
    project: str | None = None,
) -> Iterator[ApiClient]:
    """A client for the flags, variables and profile given; closed, and any failure inside the
    block reported, on leaving it."""
    try:
        connection = resolve(url=url, api_key=api_key, project=project, profile=profile)
        connection.require_api_key()
        client = ApiClient(connection)
    except ConfigError as exc:
        raise fail(ExitCode.usage, str(exc)) from None
    try:
        yield client
    except ConfigError as exc:
        raise fail(ExitCode.usage, str(exc)) from None
    except (ApiError, CommandError) as exc:
        raise fail(ExitCode.api_error, str(exc)) from None
    except Unreachable as exc:
        raise fail(ExitCode.network, str(exc)) from None
    finally:
        client.close()
