"""`taskgate tasks submit|get|list|cancel|wait|events`: tasks through the HTTP API."""

from __future__ import annotations

import enum
import json
import time
import uuid
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from app.client.errors import ExitCode
from app.client.http import ApiClient
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
from app.client.output import Column, Output, field, show_object, show_page, stderr_console

tasks = typer.Typer(
    help="Submit, follow and list tasks through the HTTP API.", no_args_is_help=True
)

# Each long-poll holds this long at most, so progress is redrawn at least this often.
POLL_WAIT_S = 2
TERMINAL = {"succeeded", "failed", "canceled"}


class Status(enum.StrEnum):
    queued = "queued"
    running = "running"
    retrying = "retrying"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


TaskId = Annotated[uuid.UUID, typer.Argument(metavar="TASK_ID", help="The task's id.")]
TimeoutOption = Annotated[
    float, typer.Option(help="Give up following after this many seconds (exit 4).")
]

TASK_COLUMNS = (
    field("id"),
    field("type"),
    field("status"),
    Column("attempt", lambda task: f"{task['attempt']}/{task['max_attempts']}"),
    field("priority"),
    field("created", "created_at"),
    field("finished", "finished_at"),
)
EVENT_COLUMNS = (
    field("at"),
    field("kind"),
    Column("actor", lambda event: (event.get("actor") or {}).get("type")),
    field("data"),
    field("request id", "request_id"),
)


def _parse_input(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise typer.BadParameter("must be a JSON object")
    return value


def _follow(api: ApiClient, task: dict[str, Any], deadline: float) -> dict[str, Any]:
    """Long-poll the task until it ends or `deadline`, showing its status and progress live."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr_console(), transient=True) as progress:
        bar = progress.add_task(task["status"], total=1.0)
        while task["status"] not in TERMINAL and time.monotonic() < deadline:
            wait = max(1, min(POLL_WAIT_S, int(deadline - time.monotonic())))
            task = api.request(
                "GET", f"/v1/tasks/{task['id']}", params={"wait": wait}, timeout=wait + 30
            )
            message = task.get("progress_message") or ""
            attempt = f"attempt {task['attempt']}/{task['max_attempts']}"
            progress.update(
                bar,
                completed=task.get("progress") or 0.0,
                description=f"{task['type']} {task['status']} ({attempt}) {message}".rstrip(),
            )
    return task


def _outcome(task: dict[str, Any]) -> ExitCode:
    typer.echo(f"task {task['id']} {task['status']}", err=True)
    if task["status"] == "succeeded":
        return ExitCode.ok
    return ExitCode.api_error if task["status"] in TERMINAL else ExitCode.unfinished


@tasks.command("submit")
def submit(
    type_: Annotated[str, typer.Argument(metavar="TYPE", help="Task type, e.g. `echo`.")],
    input_: Annotated[
        str, typer.Option("--input", help="The task's input as a JSON object.")
    ] = "{}",
    priority: Annotated[str, typer.Option(help="high, default or low.")] = "default",
    idempotency_key: Annotated[str | None, typer.Option(help="Idempotency-Key header.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the task until it ends.")] = False,
    timeout: TimeoutOption = 3600,
    project: ProjectOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    profile: ProfileOption = None,
) -> None:
    """Submit a task; prints it as JSON. With --wait, show its status and progress live, print
    its result (or error) as JSON and exit 0 if it succeeded, 1 if it failed or was canceled,
    4 if it was still unfinished after --timeout."""
    body = {"type": type_, "input": _parse_input(input_), "priority": priority}
    with connect(url=url, api_key=api_key, profile=profile, project=project) as api:
        path = f"/v1/projects/{api.connection.require_project()}/tasks"
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        task = api.request("POST", path, json=body, headers=headers)
        typer.echo(f"task {task['id']} {task['status']}", err=True)
        if not wait:
            show_object(task, Output.json)
            return
        task = _follow(api, task, time.monotonic() + timeout)
    code = _outcome(task)
    if code is not ExitCode.unfinished:
        show_object(task["result"] if code is ExitCode.ok else task["error"], Output.json)
    raise typer.Exit(code)


@tasks.command("get")
def get(
    task_id: TaskId,
    output: OutputOption = Output.table,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    profile: ProfileOption = None,
) -> None:
    """Show a task: status, input, result or error, attempts and times."""
    with connect(url=url, api_key=api_key, profile=profile) as api:
        task = api.get(f"/v1/tasks/{task_id}")
    show_object(task, output)


@tasks.command("list")
def list_tasks(
    status: Annotated[Status | None, typer.Option(help="Only tasks in this status.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Only tasks of this type.")] = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    all_: AllOption = False,
    output: OutputOption = Output.table,
    project: ProjectOption = None,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    profile: ProfileOption = None,
) -> None:
    """List the project's tasks, newest first."""
    with connect(url=url, api_key=api_key, profile=profile, project=project) as api:
        page = api.page(
            f"/v1/projects/{api.connection.require_project()}/tasks",
            limit=limit,
            cursor=cursor,
            follow=all_,
            status=status,
            type=type_,
        )
    show_page(page, output, TASK_COLUMNS)


@tasks.command("cancel")
def cancel(
    task_id: TaskId,
    output: OutputOption = Output.table,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    profile: ProfileOption = None,
) -> None:
    """Cancel a task: at once if it is queued, at its next check if it is running (exit 1 if
    it has already finished)."""
    with connect(url=url, api_key=api_key, profile=profile) as api:
        task = api.post(f"/v1/tasks/{task_id}/cancel")
    show_object(task, output)


@tasks.command("wait")
def wait(
    task_id: TaskId,
    timeout: TimeoutOption = 3600,
    output: OutputOption = Output.table,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    profile: ProfileOption = None,
) -> None:
    """Follow a task until it ends and show it: exit 0 if it succeeded, 1 if it failed or was
    canceled, 4 if it was still unfinished after --timeout."""
    with connect(url=url, api_key=api_key, profile=profile) as api:
        task = _follow(api, api.get(f"/v1/tasks/{task_id}"), time.monotonic() + timeout)
    code = _outcome(task)
    show_object(task, output)
    raise typer.Exit(code)


@tasks.command("events")
def events(
    task_id: TaskId,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    all_: AllOption = False,
    output: OutputOption = Output.table,
    url: UrlOption = None,
    api_key: ApiKeyOption = None,
    profile: ProfileOption = None,
) -> None:
    """List a task's events (created, started, retried, finished …)."""
    with connect(url=url, api_key=api_key, profile=profile) as api:
        page = api.page(f"/v1/tasks/{task_id}/events", limit=limit, cursor=cursor, follow=all_)
    show_page(page, output, EVENT_COLUMNS)
